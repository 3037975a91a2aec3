"""Measure a BiT classifier: ILSVRC-2012 validation, ReaL, ImageNet-V2, any split.

  python -m bit_train.eval --config imagenet_eval:model=BiT-S-R101x3 --workdir W

The story of a run: config -> specs (bit_train/specs.py) -> strategy -> evaluators
(bit_train/evaluators: the config's dataset, config.evals, extra_evals) -> a trainer
export's facts (when model_path is one) -> resolution -> model (its own head;
head=new: pre-logits for few-shot evaluation only) -> each evaluator -> files. Every example is counted (the
final partial batch included). Writes W/eval/metrics.json and one per-class accuracy
file per single-label classification.
"""

from bit_train import console

# Before TensorFlow is imported: its C++ lines stay out of this run (console.py).
console.quiet_native_logs(script=__name__ == "__main__")

import dataclasses  # pylint: disable=wrong-import-position
import os  # pylint: disable=wrong-import-position

from absl import flags  # pylint: disable=wrong-import-position
from absl import logging  # pylint: disable=wrong-import-position
from ml_collections import config_flags  # pylint: disable=wrong-import-position

from bit_train import cli  # pylint: disable=wrong-import-position
from bit_train import distribute  # pylint: disable=wrong-import-position
from bit_train import evaluators  # pylint: disable=wrong-import-position
from bit_train import export  # pylint: disable=wrong-import-position
from bit_train import files  # pylint: disable=wrong-import-position
from bit_train import hyperrule  # pylint: disable=wrong-import-position
from bit_train import labels  # pylint: disable=wrong-import-position
from bit_train.models import factory  # pylint: disable=wrong-import-position
from bit_train import report  # pylint: disable=wrong-import-position
from bit_train import specs  # pylint: disable=wrong-import-position
from bit_train import trained_on  # pylint: disable=wrong-import-position
from bit_train import workdir as wd  # pylint: disable=wrong-import-position
from bit_train.errors import UserError  # pylint: disable=wrong-import-position
from bit_train.models import registry  # pylint: disable=wrong-import-position

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config name or file, and fields: e.g. "
    "imagenet_eval:model=BiT-S-R101x3.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics.json and the "
                               "per-class accuracy files (under W/eval/).")


def eval_crop(recipe, image_size, facts):
  """(crop, where it came from): the recipe's `crop`, else a trainer export's (the
  run's), else the HyperRule's for the image size `image_size()` gives ((height,
  width), origin), which is measured only then. Eval images are resized straight
  to it."""
  if recipe.crop:
    return recipe.crop, "crop"
  if facts is not None and facts.crop:
    return facts.crop, facts.origin
  image_size, _ = image_size() if image_size else (None, None)
  if image_size is None:
    raise UserError("the image size of the dataset is unknown: set image_size=HxW "
                    "or crop=<pixels>.")
  return (hyperrule.get_resolution(image_size, recipe.resolution_rule)[1],
          f"the HyperRule for {image_size[0]}x{image_size[1]} images")


def model_class_names(class_map, facts):
  """(names of the model's outputs in order, where they came from), or (None, None).

  From the class_map file, else a trainer export's class names.
  """
  if class_map:
    return labels.read_names(class_map), class_map
  if facts is not None and facts.class_names:
    return facts.class_names, facts.origin
  return None, None


def export_model(model, facts):
  """For a trainer export (W/export, its serving or hub_module folder): the
  ModelSpec at its hub module, which bit-eval measures."""
  if facts.hub_module is None:
    raise UserError(f"model_path={model.path} is a serving SavedModel, which "
                    "bit-eval cannot measure: set model_path to the hub_module folder "
                    "of its export (W/export/hub_module).")
  if model.source != "hub":
    raise UserError(f"model_path={model.path} is a trainer export, a TF Hub "
                    "module: set model_source=hub.")
  return dataclasses.replace(model, path=facts.hub_module)


def create_classifier(model):
  """The model with its own head; an .npz without one is bit-eval's one line."""
  try:
    return factory.create_model(model, None)
  except registry.NoHead as e:
    raise UserError(f"{e.problem}: bit-eval measures a classifier with its own "
                    "head; give a file that has one (e.g. BiT-S-R50x1.npz).") from None


def classifier_model(model, num_classes):
  """The ModelSpec at the registry's classifier for this many classes (BiT-M: its
  ILSVRC-2012 one for 1000, ImageNet-21k for 21843), so that the model's own class
  count can be checked against the dataset's."""
  if model.path or model.source == "native":
    return model
  return dataclasses.replace(model, path=factory.model_location(model, num_classes))


def main(argv):
  cli.reject_arguments(argv)
  config = cli.load_config(_CONFIG, command="bit-eval")
  cli.require_workdir("bit-eval", _WORKDIR.value)
  run_specs = specs.from_config(config, evals=True)
  evaluators.check_options(run_specs.evals)
  # The strategy comes first: multi-worker set-up and CPU device splitting must
  # happen before TensorFlow runs anything.
  strategy = distribute.create_strategy(run_specs.run)
  # head=keep: the model's classifier on the config's dataset, then config.evals and
  # extra_evals; head=new: pre-logits only (config.evals of type fewshot).
  model_spec = run_specs.model
  own_head = model_spec.head == "keep"
  evals = evaluators.build(run_specs.data, run_specs.evals, main=own_head)
  if not own_head and (not evals or any(e.NEEDS_HEAD for e in evals)):
    raise UserError("bit-eval with head=new measures the model's pre-logits only: give "
                    "evals entries of type fewshot (the fewshot config), or set "
                    "head=keep to measure the model's own classifier.")
  facts = export.find(model_spec.path)
  if facts is not None:
    model_spec = export_model(model_spec, facts)
  if facts is not None and own_head:  # only the images the model never trained on
    for evaluator in evals:  # extra_evals and evals entries too
      if hasattr(evaluator, "examples"):
        evaluator.examples = trained_on.unseen(evaluator.examples, facts.root,
                                               evaluator.entry.data.data_dir)
  crop, crop_from = eval_crop(run_specs.recipe, evals[0].examples.image_size, facts)
  batch = evaluators.eval_batch_size(run_specs.run.eval_batch_size,
                                     run_specs.recipe.micro_batch_size, strategy)
  model_names, names_origin = model_class_names(config.class_map, facts)
  num_classes = evals[0].examples.num_classes
  if own_head:
    model_spec = classifier_model(model_spec, num_classes)
  with strategy.scope():
    if own_head:
      model = create_classifier(model_spec)
    else:  # a zero head of any size: only the pre-logits are measured
      model = factory.create_model(model_spec, num_classes)
  name = facts.model if facts else factory.model_name(model_spec, model)
  logging.info("Evaluating %s (%d classes) at %dx%d (from %s), batch %d: %s.", name,
               model.num_classes, crop, crop, crop_from, batch,
               ", ".join(e.name for e in evals))
  chief = distribute.is_chief(strategy)
  out = wd.path(_WORKDIR.value, wd.EVAL)
  if chief:
    files.make_dirs(out)
  record = {"model": name, "model_source": model_spec.source,
            "model_path": model_spec.path, "crop": crop, "crop_from": crop_from,
            "batch": batch, "class_names_from": names_origin or "the dataset's order",
            "results": {}}
  context = evaluators.Context(strategy, crop, batch, model_names, names_origin)
  for evaluator in evals:
    result = evaluator.run(model, context)
    record["results"][result.name] = dict(result.record)
    for key, (file_name, text) in result.files.items():
      if chief:
        files.write_text_atomic(os.path.join(out, file_name), text)
      record["results"][result.name][key] = file_name
    print(result.line, flush=True)
  # The config as run: model_path at the model measured.
  record["config"] = dict(run_specs.config, model_path=model_spec.path)
  if chief:
    files.write_json_atomic(os.path.join(out, wd.METRICS), record)
  written = report.write_report(out, model, evals[0].examples, crop,
                                model_class_names=model_names, enabled=chief and own_head)
  if chief:
    outputs = [("Metrics", os.path.join(out, wd.METRICS))]
    if written:
      outputs.append(("Report", written))
    outputs.append(("Per class", f"{out}/*.per_class.tsv"))
    commands = []
    if facts is not None:
      commands.append(console.command("bit-predict", "--model", facts.root, "--top", "3",
                                      "IMAGES"))
    print(console.outputs_and_next(f"Evaluated {name}: {len(evals)} result(s), one line "
                                   "each above.", outputs, commands))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
