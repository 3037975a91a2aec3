"""Measure a BiT classifier: ILSVRC-2012 validation, ReaL, ImageNet-V2, any split.

  python -m bit_train.eval --config configs/imagenet_eval.py:model=BiT-S-R101x3 --workdir W

The story of a run: config -> strategy -> datasets -> a trainer export's facts (when
model_path is one) -> resolution -> model (its own head) -> class order check -> one
evaluation per dataset -> files. Every example is counted (the final partial batch
included). Writes W/eval/metrics.json and one per-class accuracy file per
single-label dataset.
"""

import os

from absl import flags
from absl import logging
import numpy as np
from ml_collections import config_flags
import tensorflow as tf

from bit_train import cli
from bit_train import distribute
from bit_train import evaluation
from bit_train import export
from bit_train import files
from bit_train import hyperrule
from bit_train import labels
from bit_train import models
from bit_train import workdir as wd
from bit_train.data import eval_sets
from bit_train.data import pipeline
from bit_train.errors import UserError
from bit_train.models import registry
from bit_train.models import npz

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file and arguments, e.g. "
    "configs/imagenet_eval.py:model=BiT-S-R101x3.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for metrics.json and the "
                               "per-class accuracy files (under W/eval/).")


def eval_crop(config, image_size, facts):
  """(crop, where it came from): `crop`, else a trainer export's (the run's), else
  the HyperRule's for the dataset's image size. Eval images are resized straight
  to it."""
  if config.crop:
    return config.crop, "crop"
  if facts is not None and facts.crop:
    return facts.crop, facts.origin
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
  except npz.NoHead as e:
    raise UserError(f"{e.problem}: bit-eval measures a classifier with its own "
                    "head; give a file that has one (e.g. BiT-S-R50x1.npz).") from None


def classifier_config(config, num_classes):
  """The config with model_path set to the registry's classifier for this many
  classes (BiT-M: its ILSVRC-2012 one for 1000, ImageNet-21k for 21843), so that
  the model's own class count can be checked against the dataset's."""
  if config.model_path or config.model_source == "native":
    return config
  config = config.copy_and_resolve_references()
  config.model_path = registry.model_location(config, num_classes)
  return config


def per_class_text(metrics, class_names):
  """TSV: index, class, images, top-1 correct, top-1 accuracy."""
  rows = ["index\tclass\timages\tcorrect\taccuracy"]
  accuracy = metrics.per_class_accuracy()
  for i, name in enumerate(class_names):
    count = int(round(metrics.per_class_count[i]))
    value = "" if np.isnan(accuracy[i]) else f"{accuracy[i]:.6f}"
    rows.append(f"{i}\t{name}\t{count}\t{int(round(metrics.per_class_correct[i]))}"
                f"\t{value}")
  return "\n".join(rows) + "\n"


def run_one(evaluated, model, strategy, plan, batch, model_names, names_origin):
  """Metrics of the model on one EvalSet; class counts and order checked first."""
  if model.num_classes != evaluated.num_classes:
    raise UserError(f"the model outputs {model.num_classes} classes but "
                    f"{evaluated.name} has {evaluated.num_classes}: evaluate a "
                    "classifier of this dataset's classes (check model, model_path).")
  order = None
  if model_names is not None:
    order = labels.class_order(model_names, evaluated.class_names,
                               f"the label file {names_origin}")
  step = evaluation.make_eval_step(model, strategy, evaluated.num_classes, order,
                                   evaluated.multilabel)
  dataset = strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.eval_dataset(evaluated.source, plan, batch, ctx))
  try:
    return evaluation.evaluate(step, dataset), order
  except ValueError as e:
    raise UserError(f"{evaluated.name}: {e} (for ReaL: no image has a ReaL "
                    "label).") from None


def main(argv):
  cli.reject_arguments(argv)
  config = cli.load_config(_CONFIG)
  if not _WORKDIR.value:
    raise UserError("--workdir is required: the directory for the metrics.")
  if config.head != "keep":
    raise UserError("bit-eval measures a classifier with its own head: set head=keep.")
  # The strategy comes first: multi-worker set-up and CPU device splitting must
  # happen before TensorFlow runs anything.
  strategy = distribute.create_strategy(config)
  sets = [eval_sets.main_set(config)] + eval_sets.extra_sets(config)
  facts = export.find(config.model_path)
  if facts is not None:
    config = export_config(config, facts)
  crop, crop_from = eval_crop(config, sets[0].image_size, facts)
  # Only the crop matters for evaluation; the rest of the plan is a stand-in.
  plan = hyperrule.plan(1, (crop, crop), precrop=crop, crop=crop)
  batch = evaluation.eval_batch_size(config, strategy)
  model_names, names_origin = model_class_names(config, facts)
  config = classifier_config(config, sets[0].num_classes)
  with strategy.scope():
    model = create_classifier(config)
  name = facts.model if facts else models.model_name(config, model)
  logging.info("Evaluating %s (%d classes) at %dx%d (from %s), batch %d, on %s.", name,
               model.num_classes, crop, crop, crop_from, batch,
               ", ".join(s.name for s in sets))
  chief = distribute.is_chief(strategy)
  out = wd.path(_WORKDIR.value, wd.EVAL)
  if chief:
    files.make_dirs(out)
  record = {"model": name, "model_source": config.model_source,
            "model_path": config.model_path, "crop": crop, "crop_from": crop_from,
            "batch": batch, "class_names_from": names_origin or "the dataset's order",
            "results": {}}
  for evaluated in sets:
    metrics, order = run_one(evaluated, model, strategy, plan, batch, model_names,
                             names_origin)
    result = dict(metrics.to_dict(), scoring="ReaL (any label)" if evaluated.multilabel
                  else "single label", reordered_classes=order is not None)
    if metrics.per_class_count is not None:
      result["per_class_file"] = wd.per_class_file(evaluated.name)
      if chief:
        files.write_text_atomic(os.path.join(out, result["per_class_file"]),
                                per_class_text(metrics, evaluated.class_names))
    record["results"][evaluated.name] = result
    loss = "" if metrics.loss is None else f", loss {metrics.loss:.4f}"
    print(f"{evaluated.name}: top-1 {metrics.top1:.4f}, top-5 {metrics.top5:.4f}{loss}"
          f" on {metrics.count} images ({metrics.images_per_second:.1f} img/s)",
          flush=True)
  record["config"] = config.to_dict()
  if chief:
    files.write_json_atomic(os.path.join(out, wd.METRICS), record)
  print(files.json_text(record["results"]))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
