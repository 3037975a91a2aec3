"""A run's config and HyperRule plan, computed in this process with the trainer's own
functions (cli.load_config, bit_train.specs, bit_train.data.sources.describe,
hyperrule.Recipe.plan): what `bit-train --dry_run` prints, for a whole suite at once
and without data for the datasets the trainer's table knows (their sizes come from
it)."""

import functools
import json
import os

from bit_train import cli
from bit_train import config as bit_config
from bit_train import configs
from bit_train import specs
from bit_train.data import sources
from bit_train.errors import UserError
from experiments import runs as runs_lib
from experiments.runs import REPO, TRAINER


def load_config(config, flags=()):
  """The validated ConfigDict of `NAME:ARGS` (a packaged config) or `FILE.py:ARGS`
  (FILE relative to the repository) plus `--config.field=value` flags, loaded as
  bit-train loads it."""
  resolved = configs.resolve(config)
  if resolved == config:  # a path
    resolved = os.path.join(REPO, config)
  return cli.load_config(resolved, flags)


def run_specs(run):
  """The specs.Specs of a run's config (a suite's check and its dry run ask twice)."""
  return _specs(run.config, tuple(run.flags))


@functools.lru_cache(maxsize=None)
def _specs(config, flags):
  return specs.from_config(load_config(config, flags))


def hyperrule_plan(run):
  """(DatasetFacts, Plan) of a trainer run, or (None, None) for other programs."""
  if run.program != TRAINER:
    return None, None
  found = run_specs(run)
  facts = _describe(found.data)
  return facts, found.recipe.plan(facts.num_examples, facts.image_size, facts.name)


@functools.lru_cache(maxsize=None)
def _describe(data):
  """sources.describe, once per DataSpec: a suite's variants share their data."""
  return sources.describe(data)


def check_loads(run):
  """Fails with the run's name when its config does not load (a suite bug)."""
  try:
    run_specs(run)
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


def identity_difference(record, run):
  """'field=saved (this run: value)' for each field that says which run a workdir
  holds, where its saved plan.json `record` describes another run than `run` (a
  folder copied or linked from another run's); [] when they agree or the record has
  no config. The fields: the identity fields of the run's config argument (what the
  runner wrote for this run) and examples_per_class (the shots of its name; the
  argument leaves out an unset one). Fields set by the runner's flags for every run
  (scaling, --set) are not the run's own."""
  saved = (record or {}).get("config")
  if not isinstance(saved, dict):
    return []
  expected = _run_config(run.config)
  flagged = {flag.removeprefix("--config.").partition("=")[0] for flag in run.flags}
  named = [item.partition("=")[0].strip()
           for item in run.config.partition(":")[2].split(",") if item.strip()]
  fields = [f for f in dict.fromkeys(named + ["examples_per_class"])
            if bit_config.kind(f) == bit_config.IDENTITY and f not in flagged]
  return [f"{field}={_text(saved.get(field))} (this run: {_text(expected[field])})"
          for field in fields if field in saved and saved[field] != expected[field]]


@functools.lru_cache(maxsize=None)
def _run_config(config):
  """The run's config as plan.json keeps it."""
  return specs.config_record(load_config(config))


def _text(value):
  return "/".join(map(str, value)) if isinstance(value, list) else str(value)
