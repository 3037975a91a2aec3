"""ModelSpec -> model: the one place that turns a specs.ModelSpec into a tf.Module.

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


def model_name(spec, model=None):
  """The architecture a specs.ModelSpec builds, named for logs, metrics.json and
  exports.

  The registry name (BiT-M-R50x1) unless the architecture overrides, or the weight
  file at the spec's path, give another one: then the family's words, e.g.
  `ResNet-v2 R14x0.5 (units 1/1/1/1, width 0.5)`. `model`, when built, tells its
  own architecture. A TF Hub module keeps the spec's name: its architecture is not
  read.
  """
  named = spec.named
  if spec.source == "hub":
    return named.name if named else spec.name
  family = spec.family
  arch = getattr(model, "arch", None)
  if arch is None:
    arch = _arch(spec)
  if arch is None and spec.path:
    arch = family.file_arch(spec.path)
  if arch is None:
    return spec.name
  if named is not None and arch == named.arch:
    return named.name
  return f"{family.name} {family.describe(arch)}"


def _arch(spec):
  """The architecture the spec's overrides (and the named model) ask for."""
  return spec.family.arch(spec.overrides(), spec.named, spec.name)


def model_location(spec, num_classes=None):
  """Where the spec's model comes from: its path, else the registry's module or file
  for its source and head (see `registry.location`); None for source native (random
  weights). A UserError when the registry has none."""
  if spec.source == "native":
    return None
  if spec.path:
    return spec.path
  found = registry.location(spec.named, spec.source, spec.head, num_classes)
  if found is None:
    what = "classifier" if spec.head == "keep" else "model"
    raise UserError(f"{spec.named.name} has no {spec.source} {what} in the registry: "
                    "set model_source or model_path.")
  return found


def check_weights(spec, num_classes=None):
  """A dry run's check of where the model's weights are, without loading them: a
  local .npz file or TF Hub folder is there and reads as one (the family's
  `check_file`, hub.check_module). Returns the location (None: random weights)."""
  location = model_location(spec, num_classes)
  if location is None or "://" in location:
    return location
  if spec.source == "hub":
    hub.check_module(location)
  else:
    spec.family.check_file(location)
  return location


def create_model(spec, num_classes):
  """The model a specs.ModelSpec names, with a head of `num_classes` classes.

  Args:
    spec: the ModelSpec: name (resolved in the registry), source (hub | npz |
      native), path, head (new | keep), the family's architecture overrides
      (ResNet-v2: num_units, width), seed and precision.
    num_classes: classes of the new head; with head="keep" None (the model's own
      head) or the size of that head.
  """
  source, head = spec.source, spec.head
  if head == "new" and not num_classes:
    raise UserError("head=new needs the number of classes of the dataset.")
  location = model_location(spec, num_classes)
  if source == "hub":
    if spec.precision != "float32":
      # A SavedModel's graph is fixed: its convolutions stay float32.
      logging.warning("precision=%s does not apply to TF Hub modules: the model runs "
                      "in float32. Use model_source=npz for mixed precision.",
                      spec.precision)
    return hub.hub_model(location, num_classes, head)
  family = spec.family
  dtype = COMPUTE_DTYPES[spec.precision]
  if source == "npz":
    return family.load(location, num_classes, head, _arch(spec), seed=spec.seed,
                       compute_dtype=dtype)
  if head == "keep":
    raise UserError("head=keep needs pre-trained weights: use model_source=hub or npz "
                    "(model_source=native starts from random weights).")
  arch = _arch(spec)
  if arch is None:
    raise UserError(f"model {spec.name!r} is not a known {family.name} name: set "
                    "its architecture fields for model_source=native.")
  return family.build(arch, num_classes, seed=spec.seed, compute_dtype=dtype)
