"""A run's settings as small immutable records, made once from the validated config.

The entry points (bit-train, bit-eval, bit-predict, the experiments runner) load the
config (cli.load_config) and turn it into these records here; every module below
them takes the records, never the ConfigDict:

  DataSpec         what data: the dataset, where it is, its splits, labels, few-shot
                   selection and the facts given by hand
  ModelSpec        what model: its name (resolved in the registry once, here), where
                   its weights come from, its head, architecture overrides
  hyperrule.Recipe the recipe fields the user set; `Recipe.plan` makes the Plan once
                   the dataset's facts are known
  RunSpec          how the run executes and reports
  EvalSpec         one more evaluation: a DataSpec, an evaluator type and its options

Most fields' ranges are config.validate's checks; the records check the model name
against the registry, holdout_fraction and the batch split (hyperrule.Recipe), once,
when they are made.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import os

from bit_train import hyperrule
from bit_train.errors import UserError
from bit_train.models import registry


@dataclasses.dataclass(frozen=True)
class DataSpec:
  """One dataset as a run reads it (see bit_train/data/sources)."""
  dataset: str  # a TFDS name, or a kind of sources.KINDS (image_folder, csv)
  data_dir: str | None = None
  manual_dir: str | None = None
  train_split: str | None = None  # None: the dataset's own rule
  eval_split: str | None = None
  label_key: str | None = None  # None: the dataset's label feature
  examples_per_class: int | None = None  # few-shot k; None: every example
  few_shot_seed: int = 0
  holdout_fraction: float = 0.1  # image folders without an eval split
  # Facts given by hand, on top of what the source finds.
  num_examples: int | None = None
  num_classes: int | None = None
  image_size: tuple | None = None  # typical (height, width)
  seed: int = 0  # draws the images measured for a TFDS dataset's typical size

  def __post_init__(self):
    if not 0 <= self.holdout_fraction < 1:
      raise UserError(f"config field holdout_fraction={self.holdout_fraction} must be "
                      "in [0, 1): the share of every class held out for evaluation.")
    if self.image_size is not None:
      object.__setattr__(self, "image_size", tuple(self.image_size))

  def other(self, dataset=None, data_dir=None, label_key=None):
    """The data an evaluation names: this dataset with another label feature, or
    another dataset (its splits, facts and few-shot selection its own)."""
    if dataset is None and data_dir is None and label_key is None:
      return self
    other = dataclasses.replace(
        self, label_key=label_key if label_key is not None else self.label_key)
    if dataset is None and data_dir is None:
      return other
    return dataclasses.replace(
        other, dataset=dataset or self.dataset, data_dir=data_dir or self.data_dir,
        train_split=None, eval_split=None, examples_per_class=None, num_examples=None,
        num_classes=None, image_size=None)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """The model a run builds or loads (see models.factory)."""
  name: str  # a registered name (BiT-M-R50x1), or the name given to a model_path
  source: str = "hub"  # hub | npz | native
  path: str | None = None  # where the weights are, when not the registry's
  head: str = "new"  # new: a zero head for the dataset | keep: the model's own
  arch_overrides: tuple = ()  # ((family field, value), ...): num_units, width
  seed: int = 0
  precision: str = "float32"
  # The registry's entry for `name`; None when `path` names weights of a model the
  # registry does not know.
  named: registry.NamedModel | None = None

  @classmethod
  def of(cls, name, path=None, **fields):
    """The spec of `name`, resolved in the registry: an unknown name is a UserError
    unless `path` says where the weights are."""
    try:
      named = registry.lookup(name)
    except UserError:
      if not path:
        raise
      named = None
    return cls(name=name, path=path, named=named, **fields)

  @property
  def family(self):
    return registry.family(self.named)

  def overrides(self):
    """{family architecture field: value or None}."""
    return {field: dict(self.arch_overrides).get(field)
            for field in self.family.arch_fields}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """How a run executes and reports (none of it changes the numbers computed but
  precision, seed, clip_grad_norm and deterministic)."""
  strategy: str = "auto"  # auto | cpu | mirrored | multi_worker | tpu
  precision: str = "float32"
  jit_compile: bool = False
  cpu_devices: int = 1
  tpu: str = ""
  startup_timeout: float = 600.0
  deterministic: bool = False
  seed: int = 0
  clip_grad_norm: float | None = None
  log_every: int = 10
  eval_every: int = 0
  checkpoint_every: int = 500
  keep_checkpoints: int = 3
  eval_batch_size: int | None = None  # None: the training micro-batch

  def __post_init__(self):
    if self.deterministic and self.jit_compile:
      raise UserError("deterministic=True with jit_compile=True cannot run: XLA has no "
                      "deterministic gradient of max pooling; set one of them False.")


@dataclasses.dataclass(frozen=True)
class EvalSpec:
  """One evaluation of a run besides its own eval split (config.evals, extra_evals)."""
  name: str | None  # None: the evaluated split's name (dataset@split)
  # evaluators.TYPES' name; None: real when the dataset has ReaL labels, else
  # classification
  type: str | None
  data: DataSpec
  split: str | None = None  # None: the dataset's eval split
  label_key: str | None = None  # the entry's own; None: the dataset's rule
  options: dict = dataclasses.field(default_factory=dict)


def data_spec(config):
  return DataSpec(
      dataset=config.dataset, data_dir=config.data_dir, manual_dir=config.manual_dir,
      train_split=config.train_split, eval_split=config.eval_split,
      label_key=config.get("label_key"), examples_per_class=config.examples_per_class,
      few_shot_seed=config.few_shot_seed, holdout_fraction=config.holdout_fraction,
      num_examples=config.num_examples, num_classes=config.num_classes,
      image_size=config.image_size, seed=config.seed)


def model_spec(config):
  spec = ModelSpec.of(config.model, config.model_path, source=config.model_source,
                      head=config.head, seed=config.seed,
                      precision=config.get("precision", "float32"))
  overrides = tuple((field, config.get(field)) for field in spec.family.arch_fields
                    if config.get(field) is not None)
  return dataclasses.replace(spec, arch_overrides=overrides)


def recipe(config):
  return hyperrule.Recipe(
      batch_size=config.batch_size, batch_split=config.batch_split,
      base_lr=config.base_lr, resolution_rule=config.resolution_rule,
      lr_scaling=config.lr_scaling, precrop=config.precrop, crop=config.crop,
      mixup_alpha=config.mixup_alpha, supports=config.supports,
      flip=config.get("flip"))


def run_spec(config):
  return RunSpec(**{field.name: config[field.name]
                    for field in dataclasses.fields(RunSpec)})


# The fields of a config.evals entry that say what data it measures; the rest are
# the evaluator type's options.
EVAL_DATA_FIELDS = ("dataset", "data_dir", "label_key")


def eval_specs(config, data):
  """config.evals, then the extra_evals shorthand, as EvalSpecs of the run's `data`.

  Each config.evals entry is a name -> {type, dataset, data_dir, split, label_key,
  options of the type}; unset fields are the run's. An extra_evals item
  (`name[@split]` or a folder) is a TFDS dataset or an image folder, scored like the
  run's own eval split.
  """
  found = []
  for name, fields in (config.get("evals") or {}).items():
    if not (hasattr(fields, "to_dict") or isinstance(fields, collections.abc.Mapping)):
      raise UserError(f"evals entry {name!r} is {fields!r}, not a dict: write "
                      f"{name!r}: dict(type=classification|real|fewshot, dataset=..., "
                      "data_dir=..., split=..., options of the type).")
    fields = fields.to_dict() if hasattr(fields, "to_dict") else dict(fields)
    kind = fields.pop("type", None)
    where = {key: fields.pop(key, None) for key in EVAL_DATA_FIELDS}
    split = fields.pop("split", None)
    spec = EvalSpec(name=name, type=kind, data=data.other(**where), split=split,
                    label_key=where["label_key"], options=fields)
    found.append(spec)
  found += [_shorthand(text, data) for text in parse_extra(config.extra_evals)]
  return tuple(found)


def parse_extra(text):
  """`a;b@split; /some/folder` -> ["a", "b@split", "/some/folder"]."""
  return [entry.strip() for entry in (text or "").split(";") if entry.strip()]


def _shorthand(text, data):
  """The EvalSpec an extra_evals item stands for."""
  from bit_train.data import sources  # pylint: disable=g-import-not-at-top
  from bit_train.data.sources import tfds  # pylint: disable=g-import-not-at-top
  if os.path.isdir(text):
    return EvalSpec(name=None, type=None,
                    data=data.other(dataset=sources.folder.KIND, data_dir=text))
  name, _, split = text.partition("@")
  name = name.strip()
  if not tfds.is_tfds_name(name):
    raise UserError(f"extra_evals entry {text!r} is neither an existing folder nor "
                    f"a TFDS name: check the path or the name.{tfds.did_you_mean(name)}")
  return EvalSpec(name=None, type=None, data=data.other(dataset=name),
                  split=split.strip() or None)


def config_record(config):
  """The config as plain JSON data (tuples as lists): what plan.json keeps, and
  what a resumed run is compared with."""
  return json.loads(json.dumps(config.to_dict()))


@dataclasses.dataclass(frozen=True)
class Specs:
  """Every record of one run, and the config as plain data for plan.json."""
  data: DataSpec
  model: ModelSpec
  recipe: hyperrule.Recipe
  run: RunSpec
  config: dict  # config_record(config)
  evals: tuple = ()  # EvalSpecs besides the run's own eval split

  def identity(self, plan, source=None):
    """What a resumed run must share with the run in its workdir (plan.json); with
    the open DataSource, what its data is (class names in order, a fingerprint)."""
    record = {"config": self.config, "plan": plan.to_dict()}
    if source is not None:
      record["data"] = source.identity()
    return record


def from_config(config, evals=False):
  """The Specs of a validated config; `evals` also resolves config.evals and
  extra_evals (which may read TFDS's list of datasets)."""
  data = data_spec(config)
  return Specs(data=data, model=model_spec(config), recipe=recipe(config),
               run=run_spec(config), config=config_record(config),
               evals=eval_specs(config, data) if evals else ())
