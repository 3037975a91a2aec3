"""Measure a BiT classifier: ILSVRC-2012 validation, ReaL, ImageNet-V2, any split.

  python -m bit_train.eval --config configs/imagenet_eval.py:model=BiT-S-R101x3 --workdir W

The story of a run: config -> strategy -> evaluators (bit_train/evaluators: the
config's dataset, config.evals, extra_evals) -> a trainer export's facts (when
model_path is one) -> resolution -> model (its own head; head=new: pre-logits for
few-shot evaluation only) -> each evaluator -> files. Every example is counted (the
final partial batch included). Writes W/eval/metrics.json and one per-class accuracy
file per single-label classification.
"""

import os

from absl import flags
from absl import logging
from ml_collections import config_flags

from bit_train import cli
from bit_train import distribute
from bit_train import evaluation
from bit_train import evaluators
from bit_train import export
from bit_train import files
from bit_train import hyperrule
from bit_train import labels
from bit_train import models
from bit_train import report
from bit_train import workdir as wd
from bit_train.errors import UserError
from bit_train.models import registry

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and arguments, e.g. "
    "configs/imagenet_eval.py:model=BiT-S-R101x3.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics.json and the "
                               "per-class accuracy files (under W/eval/).")


def eval_crop(config, image_size, facts):
  """(crop, where it came from): `crop`, else a trainer export's (the run's), else
  the HyperRule's for the image size `image_size()` gives ((height, width), origin),
  which is measured only then. Eval images are resized straight to it."""
  if config.crop:
    return config.crop, "crop"
  if facts is not None and facts.crop:
    return facts.crop, facts.origin
  image_size, _ = image_size() if image_size else (None, None)
  if image_size is None:
    raise UserError("the image size of the dataset is unknown: set image_size=HxW "
                    "or crop=<pixels>.")
  return (hyperrule.get_resolution(image_size, config.resolution_rule)[1],
          f"the HyperRule for {image_size[0]}x{image_size[1]} images")


def model_class_names(config, facts):
  """(names of the model's outputs in order, where they came from), or (None, None).

  From config.class_map, else a trainer export's class names.
  """
  if config.class_map:
    return labels.read_names(config.class_map), config.class_map
  if facts is not None and facts.class_names:
    return facts.class_names, facts.origin
  return None, None


def export_config(config, facts):
  """For a trainer export (W/export, its serving or hub_module folder): the config
  with model_path at its hub module, which bit-eval measures."""
  if facts.hub_module is None:
    raise UserError(f"model_path={config.model_path} is a serving SavedModel, which "
                    "bit-eval cannot measure: set model_path to the hub_module folder "
                    "of its export (W/export/hub_module).")
  if config.model_source != "hub":
    raise UserError(f"model_path={config.model_path} is a trainer export, a TF Hub "
                    "module: set model_source=hub.")
  config = config.copy_and_resolve_references()
  config.model_path = facts.hub_module
  return config


def create_classifier(config):
  """The model with its own head; an .npz without one is bit-eval's one line."""
  try:
    return models.create_model(config, None)
  except registry.NoHead as e:
    raise UserError(f"{e.problem}: bit-eval measures a classifier with its own "
                    "head; give a file that has one (e.g. BiT-S-R50x1.npz).") from None


def classifier_config(config, num_classes):
  """The config with model_path set to the registry's classifier for this many
  classes (BiT-M: its ILSVRC-2012 one for 1000, ImageNet-21k for 21843), so that
  the model's own class count can be checked against the dataset's."""
  if config.model_path or config.model_source == "native":
    return config
  config = config.copy_and_resolve_references()
  config.model_path = models.model_location(config, num_classes)
  return config


def main(argv):
  cli.reject_arguments(argv)
  config = cli.load_config(_CONFIG)
  if not _WORKDIR.value:
    raise UserError("--workdir is required: the directory for the metrics.")
  # The strategy comes first: multi-worker set-up and CPU device splitting must
  # happen before TensorFlow runs anything.
  strategy = distribute.create_strategy(config)
  # head=keep: the model's classifier on the config's dataset, then config.evals and
  # extra_evals; head=new: pre-logits only (config.evals of type fewshot).
  own_head = config.head == "keep"
  evals = evaluators.build(config, main=own_head)
  if not own_head and (not evals or any(e.NEEDS_HEAD for e in evals)):
    raise UserError("bit-eval with head=new measures the model's pre-logits only: give "
                    "evals entries of type fewshot (configs/fewshot.py), or set "
                    "head=keep to measure the model's own classifier.")
  facts = export.find(config.model_path)
  if facts is not None:
    config = export_config(config, facts)
  crop, crop_from = eval_crop(config, evals[0].examples.image_size, facts)
  batch = evaluation.eval_batch_size(config, strategy)
  model_names, names_origin = model_class_names(config, facts)
  num_classes = evals[0].examples.num_classes
  if own_head:
    config = classifier_config(config, num_classes)
  with strategy.scope():
    if own_head:
      model = create_classifier(config)
    else:  # a zero head of any size: only the pre-logits are measured
      model = models.create_model(config, num_classes)
  name = facts.model if facts else models.model_name(config, model)
  logging.info("Evaluating %s (%d classes) at %dx%d (from %s), batch %d: %s.", name,
               model.num_classes, crop, crop, crop_from, batch,
               ", ".join(e.name for e in evals))
  chief = distribute.is_chief(strategy)
  out = wd.path(_WORKDIR.value, wd.EVAL)
  if chief:
    files.make_dirs(out)
  record = {"model": name, "model_source": config.model_source,
            "model_path": config.model_path, "crop": crop, "crop_from": crop_from,
            "batch": batch, "class_names_from": names_origin or "the dataset's order",
            "results": {}}
  context = evaluators.Context(strategy, crop, batch, model_names, names_origin)
  for evaluator in evals:
    result = evaluator.run(model, context)
    record["results"][result.name] = result.record
    if chief:
      for file_name, text in result.files.items():
        files.write_text_atomic(os.path.join(out, file_name), text)
    print(result.line, flush=True)
  record["config"] = config.to_dict()
  if chief:
    files.write_json_atomic(os.path.join(out, wd.METRICS), record)
  report.write_report(out, model, evals[0].examples, crop, model_class_names=model_names,
                      enabled=chief and own_head)
  print(files.json_text(record["results"]))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
