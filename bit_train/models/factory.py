"""config -> model: the one place that turns the model fields into a tf.Module.

Every model it returns takes float32 NHWC images in [0, 1] and has
`__call__(images, training=False)` -> float32 logits [B, num_classes],
`pre_logits(images)`, `trainable_variables`, `head_variables` and `num_classes`.
Call it inside a `tf.distribute` strategy scope to get distributed variables.

TF Hub modules load the same way for every family; native models and weight
files are the family's to build and read (see `registry.Family`).
"""

from absl import logging
import tensorflow as tf

from bit_train.errors import UserError
from bit_train.models import hub
from bit_train.models import registry

COMPUTE_DTYPES = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16,
                  "mixed_float16": tf.float16}


def model_name(config, model=None):
  """The architecture a config builds, named for logs, metrics.json and exports.

  The registry name (BiT-M-R50x1) unless the config's architecture fields, or the
  weight file at model_path, give another one: then the family's words, e.g.
  `ResNet-v2 R14x0.5 (units 1/1/1/1, width 0.5)`. `model`, when built, tells its
  own architecture. A TF Hub module keeps the config's name: its architecture is
  not read.
  """
  named = _named(config, required=False)
  if config.model_source == "hub":
    return named.name if named else config.model
  family = registry.family(named)
  arch = getattr(model, "arch", None)
  if arch is None:
    arch = _arch(family, config, named)
  if arch is None and config.model_path:
    arch = family.file_arch(config.model_path)
  if arch is None:
    return config.model
  if named is not None and arch == named.arch:
    return named.name
  return f"{family.name} {family.describe(arch)}"


def _arch(family, config, named):
  """The architecture the config's family fields (and the named model) ask for."""
  overrides = {field: config.get(field) for field in family.arch_fields}
  return family.arch(overrides, named, config.model)


def _named(config, required):
  """The registry entry for config.model; optional when model_path says where."""
  try:
    return registry.lookup(config.model)
  except UserError:
    if required:
      raise
    return None


def model_location(config, num_classes=None):
  """Where the config's model comes from: model_path, else the registry's module or
  file for model_source and head (see `registry.location`); None for model_source=native
  (random weights). A UserError when the registry has none."""
  if config.model_source == "native":
    return None
  if config.model_path:
    return config.model_path
  named = registry.lookup(config.model)
  found = registry.location(named, config.model_source, config.head, num_classes)
  if found is None:
    what = "classifier" if config.head == "keep" else "model"
    raise UserError(f"{named.name} has no {config.model_source} {what} in the registry: "
                    "set model_source or model_path.")
  return found


def create_model(config, num_classes):
  """The model the config names, with a head of `num_classes` classes.

  Args:
    config: a ConfigDict with model, model_source (hub | npz | native), model_path,
      head (new | keep), the family's architecture fields (ResNet-v2: num_units,
      width), seed and precision.
    num_classes: classes of the new head; with head="keep" None (the model's own
      head) or the size of that head.
  """
  source, head = config.model_source, config.head
  if head == "new" and not num_classes:
    raise UserError("head=new needs the number of classes of the dataset.")
  named = _named(config, required=not config.model_path)
  location = model_location(config, num_classes)
  if source == "hub":
    if config.get("precision", "float32") != "float32":
      # A SavedModel's graph is fixed: its convolutions stay float32.
      logging.warning("precision=%s does not apply to TF Hub modules: the model runs "
                      "in float32. Use model_source=npz for mixed precision.",
                      config.precision)
    return hub.hub_model(location, num_classes, head)
  family = registry.family(named)
  dtype = COMPUTE_DTYPES[config.get("precision", "float32")]
  if source == "npz":
    return family.load(location, num_classes, head, _arch(family, config, named),
                       seed=config.seed, compute_dtype=dtype)
  if head == "keep":
    raise UserError("head=keep needs pre-trained weights: use model_source=hub or npz "
                    "(model_source=native starts from random weights).")
  arch = _arch(family, config, named)
  if arch is None:
    raise UserError(f"model {config.model!r} is not a known {family.name} name: set "
                    "its architecture fields for model_source=native.")
  return family.build(arch, num_classes, seed=config.seed, compute_dtype=dtype)
