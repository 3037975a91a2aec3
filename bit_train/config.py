"""Config fields, their defaults, the `file.py:key=val,flag` argument, validation.

Every field lives here once; `configs/*.py` start from `base_config()` and change
what their experiment family needs. Unset (None) recipe fields are decided by the
HyperRule. The README's config table documents the same fields.

Every field is declared with its kind (`kind`): IDENTITY fields say what a run
computes, so a resumed run must keep them; RUN_ONLY fields say where the inputs are
and how the run executes and reports, so they may change when it resumes.
"""

import contextlib
import difflib

import ml_collections
from ml_collections import config_dict

from bit_train.errors import UserError

STRATEGIES = ("auto", "cpu", "mirrored", "multi_worker", "tpu")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
MODEL_SOURCES = ("hub", "npz", "native")
HEADS = ("new", "keep")


# The kinds of fields (see the module docstring).
IDENTITY = "identity"
RUN_ONLY = "run-only"
_KINDS = {}  # field -> kind, filled by base_config


@contextlib.contextmanager
def _fields(config, of_kind):
  """The fields a block adds to `config` are of kind `of_kind`."""
  before = set(config.keys())
  yield
  _KINDS.update(dict.fromkeys(set(config.keys()) - before, of_kind))


def kind(field):
  """IDENTITY or RUN_ONLY; None for a field that base_config does not define."""
  if not _KINDS:
    base_config()
  return _KINDS.get(field)


def base_config():
  """All fields with their defaults. Placeholders carry a type but no value."""
  c = ml_collections.ConfigDict()
  # Data.
  with _fields(c, IDENTITY):
    c.dataset = "cifar10"  # a TFDS name, or "image_folder" (then data_dir is the root)
    c.train_split = config_dict.placeholder(str)  # None: the authors' split
    c.eval_split = config_dict.placeholder(str)
    c.examples_per_class = config_dict.placeholder(int)  # few-shot k; None: all
    c.few_shot_seed = 0
    c.holdout_fraction = 0.1  # image folders without an eval split: share held out
    c.label_key = config_dict.placeholder(str)  # TFDS label feature; None: `label`
    # Dataset facts, when no table knows them or to describe a dataset by hand.
    c.num_examples = config_dict.placeholder(int)
    c.num_classes = config_dict.placeholder(int)
    c.image_size = config_dict.placeholder(tuple)  # typical (height, width)
  with _fields(c, RUN_ONLY):  # where the data are: they may move
    c.data_dir = config_dict.placeholder(str)  # TFDS data_dir, or the image folder
    c.manual_dir = config_dict.placeholder(str)  # TFDS manual_dir (imagenet2012)
  # Model.
  with _fields(c, IDENTITY):
    c.model = "BiT-M-R50x1"
    c.model_source = "hub"  # hub | npz | native
    c.head = "new"  # new: zero-initialised head for this dataset | keep: the model's own
    c.num_units = config_dict.placeholder(tuple)  # native arch override, e.g. 1/1/1/1
    c.width = config_dict.placeholder(float)  # native width factor override, e.g. 0.5
  with _fields(c, RUN_ONLY):  # where the weights are: they may move
    c.model_path = config_dict.placeholder(str)  # local/remote, not the registry's
  # Recipe: unset fields are decided by the HyperRule.
  with _fields(c, IDENTITY):
    c.batch_size = 512  # global batch per update
    c.batch_split = 1  # micro-batches per update (gradient accumulation)
    c.base_lr = 0.003  # at batch 512; scaled by batch/512 when lr_scaling="linear"
    c.lr_scaling = "linear"  # linear | none
    c.resolution_rule = "code"  # code (512/480) | paper (448/384)
    c.precrop = config_dict.placeholder(int)
    c.crop = config_dict.placeholder(int)
    c.mixup_alpha = config_dict.placeholder(float)
    c.flip = config_dict.placeholder(bool)  # None: the rule's random left-right flip
    c.supports = config_dict.placeholder(tuple)  # (warmup, *decays, total) steps
  # Run.
  with _fields(c, IDENTITY):  # they change the numbers computed
    c.precision = "float32"  # float32 | mixed_bfloat16 | mixed_float16
    c.clip_grad_norm = config_dict.placeholder(float)  # None: no clipping (the recipe)
    c.seed = 0
  with _fields(c, RUN_ONLY):
    c.strategy = "auto"  # auto | cpu | mirrored | multi_worker | tpu
    c.jit_compile = False
    c.eval_batch_size = config_dict.placeholder(int)  # None: the micro-batch size
    c.cpu_devices = 1  # split the CPU into this many logical devices (testing mirrored)
    c.tpu = ""  # TPU name or address for strategy=tpu; "" on a Cloud TPU VM
    c.startup_timeout = 600.0  # multi_worker: seconds to wait for every worker to start
    c.deterministic = False  # TF op determinism: same seed, same weights (slower)
    c.log_every = 10
    c.eval_every = 0  # steps between evaluations; 0: only at the end
    c.checkpoint_every = 500
    c.keep_checkpoints = 3
  # Evaluation: what is measured, not what is trained.
  with _fields(c, RUN_ONLY):
    c.class_map = config_dict.placeholder(str)  # label file: line i names model output i
    c.extra_evals = config_dict.placeholder(str)  # "name[@split];folder;...", same run
    # More evaluations (bit-train and bit-eval): name -> dict(type=classification |
    # real | fewshot, dataset=, data_dir=, split=, label_key=, options of the type).
    c.evals = ml_collections.ConfigDict()
  return c


def _convert(key, text, current):
  """Turns the text of `key=text` into the type of the field it sets."""
  field_type = current.get_type() if isinstance(
      current, config_dict.FieldReference) else type(current)
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
      hint = _did_you_mean(key, config)
      if previous and not has_value:
        hint += (f" (commas separate fields: for a value holding a comma use "
                 f"--config.{previous}=...)")
      raise UserError(f"unknown config field {key!r} in {arg!r}{hint}.")
    config[key] = _convert(key, text.strip(), _field(config, key)) if has_value else True
    previous = key if has_value else None
  return config


def _field(config, key):
  """The field's FieldReference when it is a placeholder, else its value."""
  try:
    ref = config.get_ref(key)
  except (AttributeError, KeyError, TypeError):
    return config[key]
  return ref if ref.get() is None else ref.get()


def _did_you_mean(key, config):
  close = difflib.get_close_matches(key, list(config.keys()), n=1)
  return f" (did you mean {close[0]!r}?)" if close else ""


def _one_of(config, key, allowed):
  if config[key] not in allowed:
    raise UserError(f"config field {key}={config[key]!r} is not known: use one of "
                    f"{', '.join(allowed)}.")


def _positive(config, *keys):
  for key in keys:
    if config[key] is not None and config[key] <= 0:
      raise UserError(f"config field {key}={config[key]} must be positive.")


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


def validate(config):
  """Checks values a user can get wrong; raises UserError naming field and fix.

  holdout_fraction, the batch split and the model name are checked once, when the
  run's records are made from the config (bit_train/specs.py).
  """
  _normalise_tuples(config)
  _one_of(config, "strategy", STRATEGIES)
  _one_of(config, "precision", PRECISIONS)
  _one_of(config, "model_source", MODEL_SOURCES)
  _one_of(config, "head", HEADS)
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
