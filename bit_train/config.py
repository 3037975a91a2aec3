"""Config fields, their defaults, the `name:key=val,flag` argument, validation.

Every field is declared once in FIELDS: its type, default, group, kind and a one-line
meaning. base_config() builds the ConfigDict from them, the commands' --help lists
them (bit_train/helptext.py) and docs/configuration.md is generated from them
(`python -m bit_train.helptext --markdown`). The packaged configs (bit_train/configs)
start from base_config() and change what their experiment family needs. Unset (None)
recipe fields are decided by the HyperRule.

Every field has a kind: IDENTITY fields say what a run computes, so a resumed run
must keep them; RUN_ONLY fields say where the inputs are and how the run executes
and reports, so they may change when it resumes.
"""

import dataclasses
import difflib
import math

import ml_collections
from ml_collections import config_dict

from bit_train import files
from bit_train.errors import UserError

STRATEGIES = ("auto", "cpu", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
MODEL_SOURCES = ("hub", "npz", "native")
HEADS = ("new", "keep")

# The kinds of fields (see the module docstring).
IDENTITY = "identity"
RUN_ONLY = "run-only"

# The groups fields are listed in, in order, with what each holds.
GROUPS = {
    "data": "what the model is trained and measured on",
    "model": "the architecture and its weights",
    "recipe": "unset (None) fields are decided by the BiT-HyperRule",
    "run": "how and where the run executes and reports",
    "evaluation": "what is measured beyond the dataset's eval split",
}
TRAIN = "bit-train"
EVAL = "bit-eval"


@dataclasses.dataclass(frozen=True)
class Field:
  """One config field. default None: a placeholder of `type` (unset);
  commands: the entry points that read it."""
  name: str
  type: type
  default: object
  group: str
  kind: str
  meaning: str
  commands: tuple = (TRAIN, EVAL)


def _group(group, kind, *rows):
  """Fields from rows (name, type, default, meaning[, commands])."""
  return tuple(Field(*row[:2], row[2], group, kind, *row[3:]) for row in rows)


_T = (TRAIN,)  # read by bit-train only: how it trains, not what a model computes
FIELDS = (
    _group("data", IDENTITY,
           ("dataset", str, "cifar10",
            "a TFDS name, or image_folder (then data_dir is the folder root)"),
           ("train_split", str, None, "TFDS split to train on; None: the authors' split"),
           ("eval_split", str, None, "TFDS split to evaluate on; None: the authors' split"),
           ("examples_per_class", int, None,
            "few-shot k: train on k examples per class; None: all"),
           ("few_shot_seed", int, 0, "seed that picks the few-shot examples"),
           ("holdout_fraction", float, 0.1,
            "image folders without an eval split folder: share of every class held "
            "out for evaluation; 0: none"),
           ("label_key", str, None,
            "TFDS label feature; None: label, else the dataset's only class label"),
           ("num_examples", int, None,
            "dataset fact: training examples (instead of what is tabled or read)"),
           ("num_classes", int, None, "dataset fact: classes"),
           ("image_size", tuple, None, "dataset fact: typical image size, e.g. 300x400")) +
    _group("data", RUN_ONLY,  # where the data are: they may move
           ("data_dir", str, None, "TFDS data directory, or the image folder root"),
           ("manual_dir", str, None, "TFDS manual directory (imagenet2012 tars)")) +
    _group("model", IDENTITY,
           ("model", str, "BiT-M-R50x1",
            "BiT-{S,M}-R{50x1,50x3,101x1,101x3,152x2,152x4}, or a bundled model"),
           ("model_source", str, "hub",
            "hub (TF Hub module) | npz (official weights) | native (random init)"),
           ("head", str, "new",
            "new: zero-initialised head for the dataset | keep: the model's own"),
           ("num_units", tuple, None, "native architecture: units per block, e.g. 3/4/6/3"),
           ("width", float, None, "native architecture: width factor, e.g. 0.5")) +
    _group("model", RUN_ONLY,  # where the weights are: they may move
           ("model_path", str, None,
            "a SavedModel folder, .npz file or URL instead of the registry's")) +
    _group("recipe", IDENTITY,
           ("batch_size", int, 512, "global batch per update"),
           ("batch_split", int, 1,
            "micro-batches per update (gradient accumulation); divides batch_size"),
           ("base_lr", float, 0.003,
            "learning rate at batch 512; scaled by batch/512 when lr_scaling=linear", _T),
           ("lr_scaling", str, "linear", "linear | none (use base_lr as is)", _T),
           ("resolution_rule", str, "code", "code (512/480) | paper (448/384)"),
           ("precrop", int, None, "training images are resized to this, then cropped", _T),
           ("crop", int, None, "the resolution the model sees"),
           ("mixup_alpha", float, None, "MixUp's alpha; 0: no MixUp", _T),
           ("flip", bool, None, "random left-right flips; false for digits or text", _T),
           ("supports", tuple, None,
            "schedule in steps: warmup/decays.../total, e.g. 500/3000/6000/9000/10000",
            _T)) +
    _group("run", IDENTITY,  # they change the numbers computed
           ("precision", str, "float32", "float32 | mixed_bfloat16 | mixed_float16"),
           ("clip_grad_norm", float, None,
            "clip gradients to this global norm; None: no clipping (the recipe)", _T),
           ("seed", int, 0, "training seed (shuffling, MixUp, crops)")) +
    _group("run", RUN_ONLY,
           ("strategy", str, "auto", "auto | cpu | mirrored | multi_worker | tpu"),
           ("jit_compile", bool, False, "compile the train step with XLA", _T),
           ("eval_batch_size", int, None,
            "eval batch (global, a multiple of the replicas); None: the micro-batch"),
           ("cpu_devices", int, 1,
            "split the CPU into this many logical devices (try mirrored without GPUs)"),
           ("tpu", str, "", "TPU name or address for strategy=tpu; empty on a Cloud TPU VM"),
           ("startup_timeout", float, 600.0,
            "multi_worker: seconds to wait for every worker to start"),
           ("deterministic", bool, False,
            "TF op determinism: same seed, same weights (slower)"),
           ("log_every", int, 10, "steps between progress lines", _T),
           ("eval_every", int, 0, "steps between evaluations; 0: only at the end", _T),
           ("checkpoint_every", int, 500, "steps between checkpoints", _T),
           ("keep_checkpoints", int, 3, "checkpoints kept", _T)) +
    _group("evaluation", RUN_ONLY,  # what is measured, not what is trained
           ("class_map", str, None,
            "bit-eval: label file naming the model's outputs (line i: output i); "
            "bit-train refuses it, its outputs being the dataset's classes"),
           ("extra_evals", str, None,
            "more evaluations in the same run: name[@split];folder;..."),
           ("evals", dict, {},
            "more evaluations: name -> dict(type=classification|real|fewshot, "
            "dataset=, data_dir=, split=, label_key=, options of the type)")))
_BY_NAME = {f.name: f for f in FIELDS}


def kind(field):
  """IDENTITY or RUN_ONLY; None for a field that base_config does not define."""
  declared = _BY_NAME.get(field)
  return declared and declared.kind


def base_config():
  """All fields with their defaults. Placeholders carry a type but no value."""
  c = ml_collections.ConfigDict()
  for f in FIELDS:
    if f.type is dict:  # a section of named entries, empty by default
      c[f.name] = ml_collections.ConfigDict()
    elif f.default is None:
      c[f.name] = config_dict.placeholder(f.type)
    else:
      c[f.name] = f.default
  return c


def _type_of(current):
  return current.get_type() if isinstance(
      current, config_dict.FieldReference) else type(current)


def _convert(key, text, current):
  """Turns the text of `key=text` into the type of the field it sets."""
  field_type = _type_of(current)
  try:
    if field_type is bool:
      if text.lower() not in ("true", "false", "1", "0"):
        raise ValueError
      return text.lower() in ("true", "1")
    if field_type is tuple:
      parts = text.replace("x", " ").replace("/", " ").replace(",", " ").split()
      return tuple(int(p) for p in parts)
    return field_type(text)
  except ValueError:
    raise UserError(f"config field {key}={text!r} is not a valid "
                    f"{field_type.__name__}.") from None


def apply_arg(config, arg):
  """Applies a `key=val,flag` string (the part after `file.py:`) to `config`.

  Tuples are written with x or / between numbers (`image_size=300x400`,
  `supports=100/200/300`), since commas separate fields. A bare `flag` sets True.
  """
  previous = None  # the last key=value, whose value a stray comma may have split
  for item in filter(None, (arg or "").split(",")):
    key, has_value, text = item.partition("=")
    key = key.strip()
    if key not in config:
      hint = _did_you_mean(key, config.keys())
      if previous and not has_value:
        hint += (f" (commas separate fields: for a value holding a comma use "
                 f"--config.{previous}=...)")
      raise UserError(f"unknown config field {key!r} in {arg!r}{hint}.")
    current = _field(config, key)
    if not has_value and _type_of(current) is not bool:  # True would be 1 to an int
      raise UserError(f"config field {key} needs a value: write "
                      f"{key}=<{_type_of(current).__name__}>.")
    config[key] = _convert(key, text.strip(), current) if has_value else True
    previous = key if has_value else None
  return config


def _field(config, key):
  """The field's FieldReference when it is a placeholder, else its value."""
  value = config[key]
  if value is not None:
    return value
  try:  # get_ref walks the whole config: only a None value can be a placeholder
    return config.get_ref(key)
  except (AttributeError, KeyError, TypeError):
    return value


def _did_you_mean(key, names):
  close = difflib.get_close_matches(key, list(names), n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(config, key, allowed):
  if config[key] not in allowed:
    raise UserError(f"config field {key}={config[key]!r} is not known: use one of "
                    f"{', '.join(allowed)}.")


def _positive(config, *keys):
  for key in keys:
    if config[key] is not None and config[key] <= 0:
      raise UserError(f"config field {key}={config[key]} must be positive.")


def _finite(config):
  """NaN passes every comparison below, and an infinite number is no setting."""
  for f in FIELDS:
    value = config.get(f.name)
    if f.type is float and value is not None and not math.isfinite(value):
      raise UserError(f"config field {f.name}={value} must be a finite number.")


def _not_negative(config, **notes):
  """Fields where 0 means something (the note says what) but below 0 nothing does."""
  for key, note in notes.items():
    if config[key] is not None and config[key] < 0:
      raise UserError(f"config field {key}={config[key]} must be >= 0 ({note}).")


def _normalise_tuples(config):
  """--config.image_size=300x400 arrives as ('300x400',): parse it like `:image_size=`."""
  for key in ("image_size", "supports", "num_units"):
    value = config[key]
    if value is not None and any(isinstance(v, str) for v in value):
      config[key] = _convert(key, " ".join(map(str, value)), tuple())


# Fields holding one local path (a leading ~ is expanded).
PATHS = ("data_dir", "manual_dir", "model_path", "class_map")


def validate(config):
  """Checks values a user can get wrong; raises UserError naming field and fix.

  holdout_fraction, the batch split and the model name are checked once, when the
  run's records are made from the config (bit_train/specs.py).
  """
  missing = [f.name for f in FIELDS if f.name not in config]
  if not isinstance(config, ml_collections.ConfigDict):
    missing.insert(0, f"it is a {type(config).__name__}, not a ConfigDict")
  if missing:
    raise UserError(f"the config lacks fields every run needs ({', '.join(missing[:5])}"
                    f"{', ...' if len(missing) > 5 else ''}): start get_config from "
                    "bit_train.config.base_config() and change what your run needs.")
  names = [f.name for f in FIELDS]
  unknown = [key for key in config.keys() if key not in names]
  if unknown:  # a typo in a config file (config.batchsize = 16) is read by no one
    raise UserError("the config sets fields no run reads: " + ", ".join(
        f"{key!r}{_did_you_mean(key, names)}" for key in unknown) + ": rename or remove "
        "them (bit-train --help lists every field).")
  for key in PATHS:
    config[key] = files.home_expanded(config[key])
  _normalise_tuples(config)
  _one_of(config, "strategy", STRATEGIES)
  _one_of(config, "precision", PRECISIONS)
  _one_of(config, "model_source", MODEL_SOURCES)
  _one_of(config, "head", HEADS)
  _finite(config)
  _positive(config, "batch_size", "batch_split", "base_lr", "log_every",
            "checkpoint_every", "keep_checkpoints", "examples_per_class",
            "num_examples", "num_classes", "precrop", "crop", "clip_grad_norm",
            "eval_batch_size", "cpu_devices", "width", "startup_timeout")
  _not_negative(config, eval_every="0: evaluate only at the end",
                mixup_alpha="0: no MixUp", seed="a seed", few_shot_seed="a seed")
  if config.num_units is not None and (
      len(config.num_units) != 4 or min(config.num_units) <= 0):
    raise UserError(f"config field num_units={config.num_units} must be four positive "
                    "numbers (units per block), e.g. num_units=3/4/6/3.")
  if config.image_size is not None and (
      len(config.image_size) != 2 or min(config.image_size) <= 0):
    raise UserError(f"config field image_size={config.image_size} must be two "
                    "positive numbers (height, width), e.g. image_size=300x400.")
  if config.supports is not None and any(s <= 0 for s in config.supports[1:]):
    raise UserError(f"config field supports={config.supports}: steps must be positive.")
  return config

