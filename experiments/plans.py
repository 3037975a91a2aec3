"""A run's config and HyperRule plan, computed in this process with the trainer's own
functions (bit_train.data.sources.describe, bit_train.hyperrule): what `bit-train
--dry_run` prints, for a whole suite at once and without data for the datasets the
trainer's table knows (their sizes come from it)."""

import importlib.util
import os

from bit_train import config as bit_config
from bit_train import configs
from bit_train import hyperrule
from bit_train.data import sources
from bit_train.errors import UserError
from experiments.runs import REPO, TRAINER

_MODULES = {}


def load_config(config, flags=()):
  """The validated ConfigDict of `NAME:ARGS` or `FILE.py:ARGS` plus
  `--config.field=value` flags."""
  path, _, arg = configs.resolve(config).partition(":")
  full = os.path.join(REPO, path)
  if full not in _MODULES:
    spec = importlib.util.spec_from_file_location(
        f"_experiment_config_{len(_MODULES)}", full)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _MODULES[full] = module
  result = _MODULES[full].get_config(arg or None)
  for flag in flags:
    field, _, value = flag.removeprefix("--config.").partition("=")
    bit_config.apply_arg(result, f"{field}={value}")
  return bit_config.validate(result)


def hyperrule_plan(run):
  """(DatasetFacts, Plan) of a trainer run, or (None, None) for other programs."""
  if run.program != TRAINER:
    return None, None
  config = load_config(run.config, run.flags)
  facts = sources.describe(config)
  plan = hyperrule.plan_from_config(config, facts.num_examples, facts.image_size,
                                    dataset=facts.name)
  return facts, plan


def check_loads(run):
  """Fails with the run's name when its config does not load (a suite bug)."""
  try:
    load_config(run.config, run.flags)
  except UserError as e:
    raise UserError(f"{run.suite}/{run.name}: {e}") from None
