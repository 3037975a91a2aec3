"""Fine-tune a BiT model with the BiT-HyperRule.

  python -m bit_train.train --config transfer:dataset=cifar10 --workdir W

The story of a run: config -> specs (bit_train/specs.py) -> dataset facts -> plan ->
(model, data, loop, export).
`--dry_run` stops after the plan: it checks the dataset, extra_evals and a local
model_path (without loading the weights), prints the plan, writes it to the workdir (not over
the plan of a run whose checkpoints are there), exits 0.
"""

from bit_train import console

# What a Ctrl-C or SIGTERM stops before the training loop takes them over (then
# trainer.py's line names the step and the last checkpoint).
NOT_STARTED = "the run"
# Before TensorFlow is imported: its C++ lines stay out of this run (console.py).
console.quiet_native_logs(script=__name__ == "__main__", before=NOT_STARTED)

from absl import flags  # pylint: disable=wrong-import-position
from absl import logging  # pylint: disable=wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from bit_train import cli  # pylint: disable=wrong-import-position
from bit_train import distribute  # pylint: disable=wrong-import-position
from bit_train import evaluators  # pylint: disable=wrong-import-position
from bit_train import files  # pylint: disable=wrong-import-position
from bit_train.models import factory  # pylint: disable=wrong-import-position
from bit_train import report  # pylint: disable=wrong-import-position
from bit_train import specs  # pylint: disable=wrong-import-position
from bit_train import trainer  # pylint: disable=wrong-import-position
from bit_train import workdir as wd  # pylint: disable=wrong-import-position
from bit_train.data import sources  # pylint: disable=wrong-import-position
from bit_train.data.sources import folder  # pylint: disable=wrong-import-position
from bit_train.data.sources import scan_cache  # pylint: disable=wrong-import-position
from bit_train.errors import UserError  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config name or file, and fields: e.g. transfer:dataset=cifar10.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for the plan, checkpoints, "
                               "logs and exports; a run started again resumes there.")
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Resolve the dataset and the plan, print "
                             "and save them, and exit without training.")
_FORCE = flags.DEFINE_bool("force", False, "Resume a workdir even though its saved "
                           "config or plan differs from this run's.")


def describe_model(model, num_classes):
  """The architecture a ModelSpec builds and where its weights come from."""
  location = factory.model_location(model, num_classes) or "random init"
  return {"name": factory.model_name(model), "source": model.source,
          "location": location}


def dry_run_plan(config_record, facts, model, plan):
  """(text, record) of a dry run: what it prints and writes to plan.txt/plan.json."""
  record = {"config": config_record, "dataset": {
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
  cli.require_workdir("bit-train", _WORKDIR.value)
  if config.class_map:  # bit-eval's field (config.py): no file names these outputs
    raise UserError(f"class_map={config.class_map}: bit-train names its model's "
                    "outputs after the dataset's classes (the export's class_names.txt), "
                    "so it reads no label file of outputs: remove class_map (bit-eval "
                    "reads it, for a model whose outputs are in another order).")
  # Made once, here: an unknown model name or extra_evals entry fails before
  # anything is read, in a dry run too.
  run_specs = specs.from_config(config, evals=True)
  evaluators.check_options(run_specs.evals)
  if run_specs.data.dataset == folder.KIND:
    wd.check_outside(_WORKDIR.value, run_specs.data.data_dir)
  if _DRY_RUN.value:
    # The cache is not written into a workdir that holds a run: a dry run on it
    # changes nothing there.
    with scan_cache.kept_in(_WORKDIR.value, save=not wd.holds_run(_WORKDIR.value)):
      source = sources.for_plan(run_specs.data)
      facts = source.facts
    factory.check_weights(run_specs.model, facts.num_classes)
    model = describe_model(run_specs.model, facts.num_classes)
    plan = run_specs.recipe.plan(facts.num_examples, facts.image_size, facts.name)
    # Before anything is written: they read the eval split, which may be missing.
    warnings = warnings_of(plan, source)
    with wd.claim(_WORKDIR.value):
      # On a workdir with checkpoints: the check a real run makes, and its plan.json
      # kept (resume compares the next run's config with it).
      if not _FORCE.value:
        wd.check_same_run(_WORKDIR.value, run_specs.identity(plan))
      text, record = dry_run_plan(run_specs.config, facts, model, plan)
      kept = wd.holds_run(_WORKDIR.value)
      if not kept:
        files.write_json_atomic(wd.path(_WORKDIR.value, wd.PLAN), record)
        files.write_text_atomic(wd.path(_WORKDIR.value, wd.PLAN_TEXT), text + "\n")
    print(text)
    print(files.json_text(record["plan"]))
    for warning in warnings:
      print(f"warning: {warning}")
    if kept:
      print(f"{_WORKDIR.value} holds a run's checkpoints: its {wd.PLAN} is kept, "
            "not rewritten.")
    return
  # The strategy comes first: multi-worker set-up and CPU device splitting must
  # happen before TensorFlow runs anything.
  strategy = distribute.create_strategy(run_specs.run)
  # Held to the end: a second bit-train on this workdir is refused at once. What the
  # folder scan learned is kept unless the run is refused.
  with wd.claim(_WORKDIR.value, strategy), scan_cache.kept_in(_WORKDIR.value):
    source = sources.for_training(run_specs.data)
    facts = source.facts
    plan = run_specs.recipe.plan(facts.num_examples, facts.image_size, facts.name)
    wd.check_room(_WORKDIR.value, plan.total_steps, distribute.worker_count(strategy))
    model = describe_model(run_specs.model, facts.num_classes)
    logging.info("%s\nModel %s from %s: %s\n%s", facts.describe(), model["name"],
                 model["source"], model["location"], plan.describe())
    warnings = warnings_of(plan, source)
    for warning in warnings:
      logging.warning("%s", warning)
    record = trainer.train(run_specs, plan, source, _WORKDIR.value, strategy,
                           _FORCE.value)
  if distribute.is_chief(strategy):
    print(finished_text(_WORKDIR.value, record, run_specs.config,
                        source.trained_eval_warning()))


def warnings_of(plan, source):
  """What may waste the run or mislead its reader, printed after the plan."""
  return plan.warnings() + [w for w in [source.trained_eval_warning()] if w]


def finished_text(workdir, record, config, trained_eval=None):
  """What ends a bit-train run: its result (and `trained_eval`, the warning that
  its evaluation images were trained on), its outputs, the commands to go on."""
  w = workdir
  export = wd.path(w, wd.EXPORT)
  data = f"dataset={config.get('dataset') or record['dataset']}"
  if config.get("data_dir"):  # an image folder's or CSV files' folder
    data += f",data_dir={config['data_dir']}"
  images = config.get("data_dir") or "IMAGES"
  return console.outputs_and_next(
      f"Done: top-1 {record['top1']:.4f} on {record['count']} images of "
      f"{record['dataset']} ({record['eval_split']}) at step {record['step']}."
      + (f"\n  warning: {trained_eval}" if trained_eval else ""),
      [("Workdir", f"{w}   (the same command resumes or extends the run)"),
       ("Metrics", wd.path(w, wd.METRICS)),
       ("Report", wd.path(w, report.REPORT)),
       ("Curves", f"{wd.path(w, wd.CURVES)}   ("
                  f"{console.command('tensorboard', '--logdir', wd.path(w, wd.TENSORBOARD))})"),
       ("Export", f"{export}   (serving/: uint8 images in; hub_module/: TF Hub)")],
      [console.command("bit-predict", "--model", export, "--top", "3", images),
       console.command("bit-eval", "--config", f"imagenet_eval:{data},model_path={export}",
                       "--workdir", f"{w}_eval")])


def run():
  cli.run(main, before=NOT_STARTED)


if __name__ == "__main__":
  run()
