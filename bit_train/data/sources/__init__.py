"""Datasets behind one interface (base.DataSource), one module per kind, one lookup.

  source = sources.open_source(data)         # the kind a specs.DataSpec names
  source.facts                               # what the plan needs, and from where
  source.train_examples(), source.eval_examples(split)   # base.Examples

Kinds: `image_folder` (folder.py), `csv` (csv_files.py: a CSV of image paths and
labels), and every other name is a TFDS dataset (tfds.py). A new kind is a module
with a DataSource subclass and a line in KINDS.
"""

from bit_train.data.sources import csv_files
from bit_train.data.sources import folder
from bit_train.data.sources import tfds
from bit_train.data.sources.base import DataSource  # noqa: F401 (the interface)
from bit_train.data.sources.base import DatasetFacts  # noqa: F401
from bit_train.data.sources.base import Examples  # noqa: F401
from bit_train.data.sources.base import few_shot_indices  # noqa: F401

# DataSpec.dataset -> the DataSource that reads it; any other name is a TFDS dataset.
KINDS = {
    folder.KIND: folder.FolderSource,
    csv_files.KIND: csv_files.CsvSource,
}


def kind(dataset):
  """The DataSource class for a dataset name: the one lookup."""
  return KINDS.get(dataset, tfds.TfdsSource)


def open_source(data, read=True):
  """The DataSource of a specs.DataSpec. `read=False` (the dry run) reads no data
  where metadata or a table gives the facts."""
  return kind(data.dataset)(data, read)


def for_training(data):
  """The source a training run reads: its splits are checked now (a split that
  does not exist fails here, not when evaluation starts)."""
  source = open_source(data)
  source.train_examples()
  source.eval_examples()
  return source


def describe(data):
  """DatasetFacts of a DataSpec's dataset, reading as little data as possible."""
  return for_plan(data).facts


def for_plan(data):
  """The source a dry run plans from: opened without reading data where metadata or
  a table knows the facts. The kinds in KINDS list their files, so their labels are
  known without reading an image: the few-shot subset is then drawn, so a class
  smaller than examples_per_class is the error the run would stop on."""
  source = open_source(data, read=False)
  if data.examples_per_class is not None and data.dataset in KINDS:
    source.train_examples()
  return source
