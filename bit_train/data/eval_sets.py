"""The datasets one `bit-eval` run measures: the config's dataset plus `extra_evals`.

Each is an `EvalSet` whose source streams (encoded image, label) through
pipeline.eval_dataset like the trainer's eval split. Sets come from

  * a TFDS dataset and split: `imagenet2012` (its eval split), `imagenet_v2`,
    `imagenet2012@validation[:1000]`, `cifar10@test`; prepared from data_dir, or
    built from manual_dir when not prepared yet;
  * `imagenet2012_real` or any dataset whose `real_label` is a list of labels:
    scored multi-label (ReaL), images without a label left out;
  * an image folder: its eval split folder, or every image when it has none.

`extra_evals` separates entries with `;`; an entry naming an existing folder is
an image folder, else it must be a TFDS name.
"""

import dataclasses
import os

import tensorflow as tf

from bit_train.data import catalog
from bit_train.data import folders
from bit_train.data import sources
from bit_train.errors import UserError

MULTI_LABEL_KEY = "real_label"  # imagenet2012_real's ReaL labels


@dataclasses.dataclass(frozen=True)
class EvalSet:
  name: str  # e.g. "imagenet2012@validation"
  class_names: tuple
  multilabel: bool  # labels are multi-hot rows (ReaL)
  image_size: tuple | None  # typical (height, width), when known without reading
  source: sources.Source  # eval_examples() -> (encoded, label)

  @property
  def num_classes(self):
    return len(self.class_names)


def _source(name, split, class_names, image_size, read):
  facts = catalog.DatasetFacts(
      name=name, num_examples=0, num_classes=len(class_names), image_size=image_size,
      train_split="", eval_split=split, sources={}, class_names=tuple(class_names))
  return sources.Source(facts, None, read)


def _default_split(name, builder):
  known = catalog.KNOWN.get(name)
  if known:
    return known.eval_split
  splits = list(builder.info.splits)
  for split in ("test", "validation"):
    if split in splits:
      return split
  if len(splits) == 1:
    return splits[0]
  raise UserError(f"dataset {name!r} has splits {', '.join(sorted(splits))}: choose "
                  f"one as {name}@<split>.")


def _class_names(feature, name):
  names = getattr(getattr(feature, "feature", feature), "names", None)
  if not names:
    raise UserError(f"dataset {name!r} has no class names to check the model's "
                    "outputs against.")
  return tuple(names)


def tfds_set(config, name, split=None):
  """An EvalSet of a TFDS dataset's split (None: its eval split)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = config.copy_and_resolve_references()
  config.dataset = name
  builder = sources.prepared_tfds(config)
  multilabel = MULTI_LABEL_KEY in builder.info.features
  split = split or _default_split(name, builder)
  label_key = MULTI_LABEL_KEY if multilabel else None

  def examples():
    return sources.tfds_split(builder, split, label_key)
  examples()  # a split TFDS rejects fails now, not when evaluation starts
  features = builder.info.features
  labels = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
  label_key = label_key or ("label" if "label" in labels else labels[0])
  class_names = _class_names(features[label_key], name)
  image_size = catalog.KNOWN[name].image_size if name in catalog.KNOWN else None
  shape = getattr(features["image"], "shape", None) if "image" in features else None
  if image_size is None and shape and None not in shape[:2]:
    image_size = tuple(shape[:2])
  if multilabel:
    num_classes = len(class_names)

    def read():
      return examples().filter(lambda image, labels: tf.size(labels) > 0).map(
          lambda image, labels: (image, tf.reduce_max(
              tf.one_hot(labels, num_classes, dtype=tf.int32), axis=0)))
  else:
    read = examples
  return EvalSet(f"{name}@{split}", class_names, multilabel, image_size,
                 _source(name, split, class_names, image_size, read)), builder


def folder_set(root, eval_split=None):
  """An EvalSet of an image folder (its eval split folder or every image)."""
  class_names, split, split_name = folders.scan_eval(root, eval_split)
  size = sources.typical_size(split.sizes)
  return EvalSet(f"{root}@{split_name}", class_names, False, size,
                 _source(root, split_name, class_names, size,
                         lambda: sources.file_examples(split)))


def main_set(config):
  """The config's own dataset: dataset (TFDS or image_folder) and eval_split."""
  if config.dataset == catalog.IMAGE_FOLDER:
    if not config.data_dir:
      raise UserError("dataset=image_folder needs data_dir=<folder>.")
    evaluated = folder_set(config.data_dir, config.eval_split)
  else:
    evaluated, builder = tfds_set(config, config.dataset, config.eval_split)
    if evaluated.image_size is None and config.image_size is None:
      size, _ = sources.measure_tfds_image_size(builder, evaluated.source.facts.eval_split)
      evaluated = dataclasses.replace(evaluated, image_size=size)
  if config.image_size is not None:
    evaluated = dataclasses.replace(evaluated, image_size=tuple(config.image_size))
  return evaluated


def parse_extra(text):
  """`a;b@split; /some/folder` -> ["a", "b@split", "/some/folder"]."""
  return [entry.strip() for entry in (text or "").split(";") if entry.strip()]


def extra_sets(config):
  """The EvalSets named by config.extra_evals, in order."""
  found = []
  for entry in parse_extra(config.extra_evals):
    if os.path.isdir(entry):
      found.append(folder_set(entry))
      continue
    name, _, split = entry.partition("@")
    if not catalog.is_tfds_name(name.strip()):
      raise UserError(f"extra_evals entry {entry!r} is neither an existing folder nor "
                      f"a TFDS name: check the path or the name."
                      f"{catalog.did_you_mean(name.strip())}")
    found.append(tfds_set(config, name.strip(), split.strip() or None)[0])
  return found
