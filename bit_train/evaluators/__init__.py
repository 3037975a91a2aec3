"""Evaluators built from config entries, run the same way by bit-train and bit-eval.

  evals = evaluators.build(config, source)            # the run's evaluators, in order
  results = [e.run(model, context) for e in evals]   # base.Result each

A run evaluates, in this order:
  1. the config's own dataset and eval split with the model's head (bit-train
     always; bit-eval with head=keep): type classification, or real when the
     dataset has ReaL labels;
  2. each entry of `config.evals`, a name -> {type, dataset, data_dir, split,
     label_key, options of the type}; unset fields are the run's;
  3. each entry of `extra_evals`, the shorthand `name[@split];folder;...`: a TFDS
     dataset (and split) or an image folder, scored like 1.

Types (TYPES, the one lookup): classification (classification.py), real (real.py),
fewshot (fewshot.py). A new type is a module with a base.Evaluator subclass and a
line in TYPES.
"""

import dataclasses
import os

from bit_train.data import sources
from bit_train.data.sources import tfds as tfds_source
from bit_train.errors import UserError
from bit_train.evaluators import classification
from bit_train.evaluators import fewshot
from bit_train.evaluators import real
from bit_train.evaluators.base import Context  # noqa: F401
from bit_train.evaluators.base import Entry
from bit_train.evaluators.base import Result  # noqa: F401

TYPES = {
    "classification": classification.Classification,
    "real": real.Real,
    "fewshot": fewshot.FewShot,
}
ENTRY_FIELDS = ("type", "dataset", "data_dir", "split", "label_key")


def parse_extra(text):
  """`a;b@split; /some/folder` -> ["a", "b@split", "/some/folder"]."""
  return [entry.strip() for entry in (text or "").split(";") if entry.strip()]


def _shorthand(text):
  """The Entry an extra_evals item stands for."""
  if os.path.isdir(text):
    return Entry(name=None, type=None, dataset=sources.folder.KIND, data_dir=text)
  name, _, split = text.partition("@")
  name = name.strip()
  if not tfds_source.is_tfds_name(name):
    raise UserError(f"extra_evals entry {text!r} is neither an existing folder nor "
                    f"a TFDS name: check the path or the name."
                    f"{tfds_source.did_you_mean(name)}")
  return Entry(name=None, type=None, dataset=name, split=split.strip() or None)


def _configured(name, fields):
  """The Entry of config.evals[name]."""
  fields = fields.to_dict() if hasattr(fields, "to_dict") else dict(fields)
  if fields.get("type") not in TYPES:
    raise UserError(f"evals entry {name!r}: type={fields.get('type')!r} is not known: "
                    f"use one of {', '.join(TYPES)}.")
  known = {key: fields.pop(key, None) for key in ENTRY_FIELDS}
  return Entry(name=name, options=fields, **known)


def entries(config, main=True):
  """The run's Entries in order (see the module docstring)."""
  found = [Entry(name=None, type=None)] if main else []
  for name, fields in (config.get("evals") or {}).items():
    found.append(_configured(name, fields))
  found += [_shorthand(text) for text in parse_extra(config.extra_evals)]
  return found


def _entry_config(config, entry):
  """The config of the dataset an entry names: the run's, or another dataset's
  (its splits, facts and few-shot selection left to that dataset)."""
  if entry.dataset is None and entry.data_dir is None and entry.label_key is None:
    return config
  other = config.copy_and_resolve_references()
  other.label_key = entry.label_key if entry.label_key is not None else config.label_key
  if entry.dataset is not None or entry.data_dir is not None:
    other.dataset = entry.dataset or config.dataset
    other.data_dir = entry.data_dir or config.data_dir
    for field in ("train_split", "eval_split", "examples_per_class", "num_examples",
                  "num_classes", "image_size"):
      other[field] = None
  return other


def build(config, source=None, main=True):
  """The run's evaluators. `source` is the run's own DataSource when it is open
  (the trainer's); every other dataset is opened once."""
  opened = {}

  def open_for(entry):
    entry_config = _entry_config(config, entry)
    if entry_config is config and source is not None:
      return source
    key = (entry_config.dataset, entry_config.data_dir, entry_config.get("label_key"))
    if key not in opened:
      opened[key] = sources.open_source(entry_config)
    return opened[key]

  built = []
  for entry in entries(config, main):
    data = open_for(entry)
    if entry.type is None:
      entry = dataclasses.replace(
          entry, type="real" if data.multilabel_key else "classification")
    built.append(TYPES[entry.type](entry, data))
  names = [e.name for e in built]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise UserError(f"two evaluations are named {repeated[0]!r}: give the evals "
                    "entries names of their own.")
  return built
