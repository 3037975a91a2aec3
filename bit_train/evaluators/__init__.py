"""Evaluators of a run's specs.EvalSpecs, run the same way by bit-train and bit-eval.

  evals = evaluators.build(data, specs.evals, source)  # the run's evaluators, in order
  results = [e.run(model, context) for e in evals]   # base.Result each

A run evaluates, in this order:
  1. its own dataset (the DataSpec `data`) and eval split with the model's head
     (bit-train always; bit-eval with head=keep): type classification, or real
     when the dataset has ReaL labels;
  2. each EvalSpec (specs.eval_specs: config.evals, then extra_evals), on its own
     DataSpec.

Types (TYPES, the one lookup): classification (classification.py), real (real.py),
fewshot (fewshot.py). A new type is a module with a base.Evaluator subclass and a
line in TYPES.
"""

import dataclasses

from bit_train import specs
from bit_train.data import sources
from bit_train.errors import UserError
from bit_train.evaluators import classification
from bit_train.evaluators import fewshot
from bit_train.evaluators import real
from bit_train.evaluators.base import Context  # noqa: F401
from bit_train.evaluators.base import eval_batch_size  # noqa: F401
from bit_train.evaluators.base import Result  # noqa: F401

TYPES = {
    "classification": classification.Classification,
    "real": real.Real,
    "fewshot": fewshot.FewShot,
}


def check_options(evals):
  """Each EvalSpec's options against its type's declared kinds, before any data is
  read (the entry points call it once the specs are made); an unknown type is
  `build`'s to name."""
  for spec in evals:
    if spec.type in TYPES:
      TYPES[spec.type].check_options(spec)


def build(data, evals=(), source=None, main=True):
  """The evaluators of a run on `data` (its DataSpec) and its EvalSpecs `evals`;
  with `main`, the run's own eval split first. `source` is the run's own DataSource
  when it is open (the trainer's); every other dataset is opened once."""
  opened = {} if source is None else {data: source}
  built = []
  own = (specs.EvalSpec(name=None, type=None, data=data),) if main else ()
  for spec in evals:
    if spec.name is not None and spec.type not in TYPES:
      raise UserError(f"evals entry {spec.name!r}: type={spec.type!r} is not known: "
                      f"use one of {', '.join(TYPES)}.")
  for spec in own + tuple(evals):
    if spec.data not in opened:
      opened[spec.data] = sources.open_source(spec.data)
    found = opened[spec.data]
    if spec.type is None:
      spec = dataclasses.replace(
          spec, type="real" if found.multilabel_key else "classification")
    built.append(TYPES[spec.type](spec, found))
  names = [e.name for e in built]
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise UserError(f"two evaluations are named {repeated[0]!r}: give the evals "
                    "entries names of their own.")
  return built
