"""Fine-tune a BiT model with the BiT-HyperRule.

  python -m bit_train.train --config transfer:dataset=cifar10 --workdir W

The story of a run: config -> dataset facts -> plan -> (model, data, loop, export).
`--dry_run` stops after the plan: it prints it, writes it to the workdir (not over
the plan of a run whose checkpoints are there), exits 0.
"""

from absl import flags
from absl import logging
from ml_collections import config_flags

from bit_train import cli
from bit_train import distribute
from bit_train import files
from bit_train import hyperrule
from bit_train import models
from bit_train import trainer
from bit_train import workdir as wd
from bit_train.data import sources
from bit_train.errors import UserError
from bit_train.models import registry

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config name or file, and fields: e.g. transfer:dataset=cifar10.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the plan, checkpoints, "
                               "logs and exports; a run started again resumes there.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Resolve the dataset and the plan, print "
                             "and save them, and exit without training.")
_FORCE = flags.DEFINE_bool("force", False, "Resume a workdir even though its saved "
                           "config or plan differs from this run's.")


def describe_model(config, num_classes):
  """The architecture the config builds and where its weights come from."""
  location = registry.model_location(config, num_classes) or "random init"
  return {"name": models.model_name(config), "source": config.model_source,
          "location": location}


def dry_run_plan(config, facts, model, plan):
  """(text, record) of a dry run: what it prints and writes to plan.txt/plan.json."""
  record = {"config": config.to_dict(), "dataset": {
      "name": facts.name, "num_examples": facts.num_examples,
      "num_classes": facts.num_classes, "image_size": list(facts.image_size),
      "train_split": facts.train_split, "eval_split": facts.eval_split,
      "sources": facts.sources}, "model": model, "plan": plan.to_dict()}
  text = "\n".join([facts.describe(), f"Model {model['name']} from {model['source']}: "
                    f"{model['location']}", plan.describe()])
  return text, record


def main(argv):
  cli.reject_arguments(argv)
  config = cli.load_config(_CONFIG)
  if not _WORKDIR.value:
    raise UserError("--workdir is required: the directory for the plan, checkpoints "
                    "and exports.")
  if not config.model_path:
    registry.lookup(config.model)  # an unknown name fails before anything is read
  if _DRY_RUN.value:
    facts = sources.describe(config)
    model = describe_model(config, facts.num_classes)
    plan = hyperrule.plan_from_config(config, facts.num_examples, facts.image_size,
                                      dataset=facts.name)
    with wd.claim(_WORKDIR.value):
      # On a workdir with checkpoints: the check a real run makes, and its plan.json
      # kept (resume compares the next run's config with it).
      if not _FORCE.value:
        wd.check_same_run(_WORKDIR.value, config, plan)
      text, record = dry_run_plan(config, facts, model, plan)
      kept = wd.holds_run(_WORKDIR.value)
      if not kept:
        files.write_json_atomic(wd.path(_WORKDIR.value, wd.PLAN), record)
        files.write_text_atomic(wd.path(_WORKDIR.value, wd.PLAN_TEXT), text + "\n")
    print(text)
    print(files.json_text(record["plan"]))
    if kept:
      print(f"{_WORKDIR.value} holds a run's checkpoints: its {wd.PLAN} is kept, "
            "not rewritten.")
    return
  # The strategy comes first: multi-worker set-up and CPU device splitting must
  # happen before TensorFlow runs anything.
  strategy = distribute.create_strategy(config)
  # Held to the end: a second bit-train on this workdir is refused at once.
  with wd.claim(_WORKDIR.value, strategy):
    source = sources.from_config(config)
    plan = hyperrule.plan_from_config(config, source.facts.num_examples,
                                      source.facts.image_size, dataset=source.facts.name)
    model = describe_model(config, source.facts.num_classes)
    logging.info("%s\nModel %s from %s: %s\n%s", source.facts.describe(), model["name"],
                 model["source"], model["location"], plan.describe())
    record = trainer.train(config, plan, source, _WORKDIR.value, strategy, _FORCE.value)
  print(files.json_text(record))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
