"""What every evaluator shares: its EvalSpec, the run's context, its result.

An evaluator is built from one specs.EvalSpec (a name, a type, a DataSpec and split,
options) and the DataSource of that dataset, then `run(model, context)` measures a model and
returns a Result. The trainer (periodic and final evaluation) and `bit-eval` build
and run them the same way (evaluators.build).
"""

import dataclasses
import re

import numpy as np
import tensorflow as tf

from bit_train import distribute
from bit_train.data import pipeline
from bit_train.errors import UserError


def eval_batch_size(given, micro_batch_size, strategy):
  """The global eval batch: `given` (eval_batch_size), else the training
  micro-batch; it must split evenly over the replicas."""
  batch = micro_batch_size if given is None else given
  distribute.check_shared(batch, strategy, f"eval_batch_size={batch}", "make it")
  return batch


def slug(name):
  """An evaluation's name as it appears in file and summary names."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "eval"


@dataclasses.dataclass(frozen=True)
class Context:
  """How a run evaluates: under which strategy, at which crop, in which batches,
  and (bit-eval) the names of the model's outputs, to reorder them."""
  strategy: tf.distribute.Strategy
  crop: int
  batch_size: int  # global, a multiple of the replicas
  model_class_names: tuple | None = None
  names_origin: str | None = None


@dataclasses.dataclass
class Result:
  name: str
  record: dict  # what metrics.json keeps
  line: str  # one line for the log and the terminal
  scalars: dict  # name -> number, for TensorBoard and history.jsonl
  # The files bit-eval writes under W/eval/: record key -> (file name, text); it
  # names each file in its record under that key.
  files: dict = dataclasses.field(default_factory=dict)
  metrics: object = None  # metrics.Metrics of a classification


def _whole(value):
  return isinstance(value, int) and not isinstance(value, bool)


# What an option's value may be, by the words OPTION_KINDS use for it.
KINDS = {
    "a list of whole numbers >= 1": lambda v: isinstance(v, (list, tuple)) and bool(v)
                                    and all(_whole(x) and x >= 1 for x in v),
    "a list of whole numbers >= 0": lambda v: isinstance(v, (list, tuple)) and bool(v)
                                    and all(_whole(x) and x >= 0 for x in v),
    "a number > 0": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                    and v > 0,
    "a split string or None": lambda v: v is None or isinstance(v, str),
}


class Evaluator:
  """Base of every evaluator type.

  Subclasses set OPTIONS (option -> default), OPTION_KINDS (option -> one of
  KINDS) and NEEDS_HEAD (whether the model's logits are measured, rather than its
  pre-logits), and implement `run`.
  """
  OPTIONS = {}
  OPTION_KINDS = {}
  NEEDS_HEAD = True

  @classmethod
  def check_options(cls, entry):
    """UserError when an EvalSpec's options are unknown or of the wrong kind (run
    when the EvalSpec is built, before any data is read)."""
    unknown = sorted(set(entry.options) - set(cls.OPTIONS))
    if unknown:
      raise UserError(f"evals entry {entry.name!r} ({entry.type}): unknown option "
                      f"{', '.join(unknown)}; its options are "
                      f"{', '.join(sorted(cls.OPTIONS)) or 'none'}.")
    for option, value in entry.options.items():
      kind = cls.OPTION_KINDS.get(option)
      if kind is not None and not KINDS[kind](value):
        raise UserError(f"evals entry {entry.name!r} ({entry.type}): {option}="
                        f"{value!r} must be {kind}.")

  def __init__(self, entry, source):
    self.check_options(entry)
    self.entry, self.source = entry, source
    self.options = {**self.OPTIONS, **entry.options}

  @property
  def name(self):
    return self.entry.name or self.examples.name

  def run(self, model, context):
    raise NotImplementedError


def with_positions(examples):
  """The examples with each label replaced by the example's position."""
  read = examples.read
  return dataclasses.replace(examples, read=lambda: read().enumerate().map(
      lambda i, example: (example[0], tf.cast(i, tf.int32))), multilabel=False)


class PreLogits:
  """The model's pre-logits [N, D] of every example, in the examples' order.

  The eval stream (resized to the crop, padded, sharded over the replicas) gives
  each example's position in place of its label, so the order survives sharding.
  The step is traced once per model and strategy, not at every call: an evaluator
  measures its examples at every periodic evaluation.
  """

  def __init__(self):
    self._step = None  # (model, strategy, tf.function)

  def _step_for(self, model, strategy):
    if self._step is None or self._step[0] is not model or self._step[1] is not strategy:
      def replica_step(batch):
        images, positions, mask = batch
        return tf.cast(model.pre_logits(images), tf.float32), positions, mask

      @tf.function(autograph=False)  # models are traced without AutoGraph
      def step(batch):
        outputs = strategy.run(replica_step, args=(batch,))
        return tf.nest.map_structure(lambda t: strategy.gather(t, axis=0), outputs)
      self._step = (model, strategy, step)
    return self._step[2]

  def __call__(self, model, examples, context):
    strategy = context.strategy
    step = self._step_for(model, strategy)
    positioned = with_positions(examples)
    data = strategy.distribute_datasets_from_function(lambda ctx: pipeline.eval_dataset(
        positioned, context.crop, context.batch_size, ctx))
    features, positions = [], []
    for batch in data:
      batch_features, batch_positions, mask = (t.numpy() for t in step(batch))
      real = mask > 0
      features.append(batch_features[real])
      positions.append(batch_positions[real])
    if not features:
      raise UserError(f"{examples.name} has no examples.")
    features, positions = np.concatenate(features), np.concatenate(positions)
    ordered = np.empty_like(features)
    ordered[positions] = features
    return ordered
