"""config -> model: the one place that turns the model fields into a tf.Module.

Every model it returns takes float32 NHWC images in [0, 1] and has
`__call__(images, training=False)` -> float32 logits [B, num_classes],
`pre_logits(images)`, `trainable_variables`, `head_variables` and `num_classes`.
Call it inside a `tf.distribute` strategy scope to get distributed variables.
"""

from absl import logging
import tensorflow as tf

from bit_train.errors import UserError
from bit_train.models import hub
from bit_train.models import registry
from bit_train.models import resnetv2
from bit_train.models import weights

COMPUTE_DTYPES = {"float32": tf.float32, "mixed_bfloat16": tf.bfloat16,
                  "mixed_float16": tf.float16}


def native_arch(config, spec=None):
  """(num_units, width) from num_units/width, else from the named model; None if
  neither is known (then an .npz file's own architecture is used)."""
  units, width = config.get("num_units"), config.get("width")
  if spec is not None:  # only unset (None) fields come from the named model
    units = spec.num_units if units is None else units
    width = spec.width if width is None else width
  if units is None and width is None:
    return None
  if units is None or width is None:
    raise UserError(f"model {config.model!r} is not a known BiT name: set both "
                    "num_units and width (e.g. num_units=3/4/6/3,width=1).")
  return tuple(units), float(width)


def model_name(config, model=None):
  """The architecture a config builds, named for logs, metrics.json and exports.

  The registry name (BiT-M-R50x1) unless num_units/width, or the .npz file at
  model_path, give another one: then `ResNet-v2 R14x0.5 (units 1/1/1/1, width 0.5)`.
  `model`, when built, tells its own architecture. A TF Hub module keeps the
  config's name: its architecture is not read.
  """
  spec = _spec(config, required=False)
  if config.model_source == "hub":
    return spec.name if spec else config.model
  arch = getattr(model, "arch", None)
  if arch is None:
    arch = native_arch(config, spec)
  if arch is None and config.model_path:
    arch = weights.file_arch(config.model_path)
  if arch is None:
    return config.model
  if spec is not None and (tuple(arch[0]), float(arch[1])) == (spec.num_units,
                                                               float(spec.width)):
    return spec.name
  return f"ResNet-v2 {weights.describe_arch(*arch)}"


def _spec(config, required):
  """The registry entry for config.model; optional when model_path says where."""
  try:
    return registry.lookup(config.model)
  except UserError:
    if required:
      raise
    return None


def create_model(config, num_classes):
  """The model the config names, with a head of `num_classes` classes.

  Args:
    config: a ConfigDict with model, model_source (hub | npz | native), model_path,
      head (new | keep), num_units, width, seed and precision.
    num_classes: classes of the new head; with head="keep" None (the model's own
      head) or the size of that head.
  """
  source, head = config.model_source, config.head
  if head == "new" and not num_classes:
    raise UserError("head=new needs the number of classes of the dataset.")
  spec = _spec(config, required=not config.model_path)
  location = config.model_path or registry.location(spec, source, head, num_classes)
  if source != "native" and location is None:
    what = "classifier" if head == "keep" else "model"
    raise UserError(f"{spec.name} has no {source} {what} in the registry: set "
                    "model_source or model_path.")
  if source == "hub":
    if config.get("precision", "float32") != "float32":
      # A SavedModel's graph is fixed: its convolutions stay float32.
      logging.warning("precision=%s does not apply to TF Hub modules: the model runs "
                      "in float32. Use model_source=npz for mixed precision.",
                      config.precision)
    return hub.hub_model(location, num_classes, head)
  dtype = COMPUTE_DTYPES[config.get("precision", "float32")]
  if source == "npz":
    return weights.load_npz_model(location, num_classes, head, native_arch(config, spec),
                                  seed=config.seed, compute_dtype=dtype)
  if head == "keep":
    raise UserError("head=keep needs pre-trained weights: use model_source=hub or npz "
                    "(model_source=native starts from random weights).")
  arch = native_arch(config, spec)
  if arch is None:
    raise UserError(f"model {config.model!r} is not a known BiT name: set num_units "
                    "and width for model_source=native.")
  return resnetv2.ResNetV2(*arch, num_classes, seed=config.seed, compute_dtype=dtype)
