"""A run's config and HyperRule plan, computed in this process with the trainer's own
functions (bit_train.data.sources.describe, bit_train.hyperrule): what `bit-train
--dry_run` prints, for a whole suite at once and without data for the datasets the
trainer's table knows (their sizes come from it)."""

import importlib.util
import json
import os

from bit_train import config as bit_config
from bit_train import hyperrule
from bit_train.errors import UserError
from experiments import runs as runs_lib
from experiments.runs import REPO, TRAINER

_MODULES = {}


def load_config(config, flags=()):
  """The validated ConfigDict of `FILE.py:ARGS` plus `--config.field=value` flags."""
  path, _, arg = config.partition(":")
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
  # The data sources import TensorFlow: only what plans a run's steps needs them.
  from bit_train.data import sources  # pylint: disable=g-import-not-at-top
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


def plan_difference(root, run):
  """'field saved -> now' for each field where the run's saved plan.json differs
  from the plan it would get now; [] when they agree or nothing is saved. Which
  fields the user set (`overridden`) is not a difference of the recipe."""
  record = runs_lib.plan_record(root, run)
  if record is None or run.program != TRAINER:
    return []
  _, plan = hyperrule_plan(run)
  now = json.loads(json.dumps(plan.to_dict()))  # tuples as the saved lists
  saved = record["plan"]
  return [f"{field} {saved[field]} -> {value}" for field, value in now.items()
          if field in saved and saved[field] != value and field != "overridden"]
