"""TF Hub modules, both ways: load one (BiT's feature vectors and classifiers, or any
reusable SavedModel) behind the model interface, and write any model as one.

Modules load with `hub.load` (no Keras needed) from a handle (`google/bit/m-r50x1/1`),
a URL, or a local SavedModel folder; downloads are kept in $TFHUB_CACHE_DIR when set.
Every module variable is trainable for fine-tuning.

Which output a module gives: a module with a `pre_logits` function (those
`export_module` writes for classifiers) is a classifier whose head can
be replaced; otherwise `__call__` gives logits when head="keep" and pre-logits
(a feature vector) when head="new".

A written module takes float32 images [B, H, W, 3] in [0, 1]; it loads back with
`hub.load(path)` or `hub.KerasLayer(path, trainable=True)` (tf_keras), and from any
TensorFlow code through its signature `serving_default` (input `images`, outputs
`logits` and `pre_logits`; a feature-vector module: `pre_logits` only): Keras 3's
`keras.layers.TFSMLayer(path, call_endpoint="serving_default")`,
`tf.saved_model.load(path).signatures["serving_default"]`, `saved_model_cli`. A
module written with class names holds them in assets/class_names.txt, line i naming
output i, reachable as `hub.load(path).class_names_file.asset_path`. The bundled
models' modules are written from their weight file on first use (`bundled_module`).
"""

import os
import shutil
import tempfile

import tensorflow as tf
from tensorflow.python.util import tf_inspect  # pylint: disable=g-direct-tensorflow-import

from bit_train import reading
from bit_train import workdir as wd
from bit_train.errors import UserError
from bit_train.errors import quote
from bit_train.models import registry
from bit_train.models import weights

HUB_HOST = "https://tfhub.dev/"


LOAD_FIX = ("check model_path (a SavedModel folder or hub URL); offline, download the "
            "module and point model_path at its folder.")


def resolve_handle(handle):
  """A local folder or URL as is; `google/bit/...` style names become tfhub.dev URLs."""
  if "://" in handle or os.path.exists(handle) or os.path.isabs(handle):
    return handle
  if handle.startswith("google/"):
    return HUB_HOST + handle
  return handle


def check_module(handle):
  """What a dry run checks of a local module without loading it: the folder exists
  and its SavedModel files are whole (reading.check_saved_model). URLs and the
  bundled module are the real run's to fetch and check."""
  if handle.startswith(registry.BUNDLED_HANDLE):
    return
  location = resolve_handle(handle)
  if "://" in location:
    return
  if not os.path.isdir(location):
    raise UserError(f"cannot load the TF Hub module {handle!r} ({location} is not a "
                    "folder): " + LOAD_FIX)
  reading.check_saved_model(location, "TF Hub module")


def load_module(handle):
  """`hub.load(handle)`; any failure is the user's path or network -> UserError."""
  import tensorflow_hub as hub  # pylint: disable=g-import-not-at-top
  if handle.startswith(registry.BUNDLED_HANDLE):
    location = bundled_module(handle)
  else:
    location = resolve_handle(handle)
  try:
    if (not location.startswith(("http://", "https://"))
        and tf.io.gfile.isdir(location)):  # a SavedModel folder: its files are checked
      module = reading.read_saved_model(location, hub.load, "TF Hub module")
    else:
      module = hub.load(location)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    first = quote(e)
    raise UserError(f"cannot load the TF Hub module {handle!r} ({first}): "
                    + LOAD_FIX) from None
  if not callable(module) or not hasattr(module, "trainable_variables"):
    raise UserError(f"{handle!r} is a SavedModel but not a reusable TF Hub module "
                    "(it needs __call__ and trainable_variables).")
  return module


def output_dim(fn):
  """The last output dimension of a restored function, from its saved traces."""
  for concrete in getattr(fn, "concrete_functions", ()):
    shape = getattr(concrete.structured_outputs, "shape", None)
    if shape is not None and shape.rank == 2 and shape[-1] is not None:
      return int(shape[-1])
  return int(fn(tf.zeros([1, 64, 64, 3]))[-1].shape[-1])


class HubModel(tf.Module):
  """A loaded module, with a new zero-initialised head or its own.

  Args:
    module: the object `hub.load` returned.
    num_classes: classes of the new head; with head="keep" None or the module's.
    head: "new" or "keep".
    handle: where the module came from, for messages.
  """

  def __init__(self, module, num_classes, head="new", handle="", name="hub"):
    super().__init__(name=name)
    self.module = module
    has_pre_logits = hasattr(module, "pre_logits")
    self._features = None  # (images, training) -> pre-logits
    if has_pre_logits:
      self._features = lambda images, training=False: module.pre_logits(images)
    self._training_arg = "training" in tf_inspect.getfullargspec(module.__call__).args
    if head == "keep":
      classes = output_dim(module.__call__)
      if num_classes not in (None, classes):
        raise UserError(f"head=keep: the module {handle!r} outputs {classes} classes "
                        f"but the dataset has {num_classes}: use head=new.")
      self.num_classes = classes
      self.head_variables = ()
      return
    if not has_pre_logits:
      if "classification" in handle:
        raise UserError(f"{handle!r} is a classification module without pre-logits, "
                        "so its head cannot be replaced: use its feature-vector module "
                        "or head=keep.")
      self._features = self._call_module
    dim = output_dim(module.pre_logits if has_pre_logits else module.__call__)
    self.num_classes = int(num_classes)
    self.head_kernel = tf.Variable(tf.zeros([dim, self.num_classes]), name="head/kernel")
    self.head_bias = tf.Variable(tf.zeros([self.num_classes]), name="head/bias")
    self.head_variables = (self.head_kernel, self.head_bias)

  def _call_module(self, images, training=False):
    images = tf.cast(images, tf.float32)
    if self._training_arg:
      return self.module(images, training=training)
    return self.module(images)

  def pre_logits(self, images, training=False):
    if self._features is None:
      raise UserError("this TF Hub module exposes no pre-logits: use its "
                      "feature-vector module.")
    return tf.cast(self._features(tf.cast(images, tf.float32), training), tf.float32)

  def __call__(self, images, training=False):
    if not self.head_variables:
      return tf.cast(self._call_module(images, training), tf.float32)
    return tf.matmul(self.pre_logits(images, training), self.head_kernel) + self.head_bias

  @property
  def variables(self):
    return tuple(self.module.variables) + tuple(self.head_variables)

  @property
  def trainable_variables(self):
    return tuple(self.module.trainable_variables) + tuple(self.head_variables)


def hub_model(handle, num_classes, head="new"):
  """A `HubModel` for a handle, URL or local SavedModel folder."""
  return HubModel(load_module(handle), num_classes, head, handle)


SIGNATURE = "serving_default"  # the signature `export_module` writes


def _logits_and_pre_logits(model, images):
  """Both outputs from one pass through the trunk: a family's head (its
  head_variables, kernel and bias) is linear on the pre-logits. A model that keeps
  a TF Hub module's own head has no head variables: its two outputs are two calls."""
  pre_logits = model.pre_logits(images)
  if len(model.head_variables) != 2:
    return model(images), pre_logits
  kernel, bias = model.head_variables
  kernel = tf.reshape(kernel, [-1, bias.shape[0]])
  return tf.matmul(pre_logits, kernel) + bias, pre_logits


def _hub_root(model, kind, class_names_file=None):
  """The reusable-SavedModel interface around a model's logits or pre-logits, with
  the signature of named outputs and, when given, the class names as an asset."""
  head = {v.ref() for v in model.head_variables}
  keep = (lambda v: True) if kind == "classification" else (
      lambda v: v.ref() not in head)
  output = model.__call__ if kind == "classification" else model.pre_logits

  @tf.function
  def call(images, training=False):
    del training  # BiT has no batch norm or dropout
    return output(images)

  spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")
  for training in (False, True):
    call.get_concrete_function(spec, training=training)

  @tf.function(input_signature=[spec])
  def signature(images):
    if kind == "feature_vector":
      return {"pre_logits": model.pre_logits(images)}
    logits, pre_logits = _logits_and_pre_logits(model, images)
    return {"logits": logits, "pre_logits": pre_logits}

  root = tf.train.Checkpoint()  # an object with plain attributes, as Hub expects
  root.model = model
  root.variables = [v for v in model.variables if keep(v)]
  root.trainable_variables = [v for v in model.trainable_variables if keep(v)]
  root.regularization_losses = []
  root.__call__ = call
  root.signature = signature
  if kind == "classification":  # lets a loader replace the head
    root.pre_logits = tf.function(model.pre_logits, input_signature=[spec])
  if class_names_file:
    root.class_names_file = tf.saved_model.Asset(class_names_file)
  return root


def export_module(model, path, kind="classification", class_names=None):
  """Saves `model` as a reusable TF Hub SavedModel at `path`.

  kind="classification": `__call__` gives logits (and `pre_logits` pre-logits);
  kind="feature_vector": `__call__` gives pre-logits and the head is left out of
  the variables. Images are float32 [B, H, W, 3] in [0, 1]. The signature
  `serving_default` gives the named outputs (see the module docstring).
  class_names: output i's name, kept in assets/class_names.txt.
  """
  if kind not in ("classification", "feature_vector"):
    raise ValueError(f"kind={kind!r}: use classification or feature_vector")
  with tempfile.TemporaryDirectory(prefix="bit_train_assets_") as assets:
    names_file = None
    if class_names is not None:
      # An Asset is copied into the SavedModel under its file's own name.
      names_file = os.path.join(assets, wd.CLASS_NAMES)
      with open(names_file, "w", encoding="utf-8") as f:
        f.write("".join(f"{name}\n" for name in class_names))
    root = _hub_root(model, kind, names_file)
    tf.saved_model.save(root, path, signatures={SIGNATURE: root.signature})
  return path


def bundled_module(handle, cache=None):
  """The local folder of a `bundled:<name>/<kind>` TF Hub handle.

  The module is exported from the bundled weight file the first time it is asked for,
  into the cache directory, under the file's sha256 (a changed file gets a new
  module); it is written whole before it is moved into place.
  """
  name, _, kind = handle[len(registry.BUNDLED_HANDLE):].partition("/")
  named = registry.lookup(name)
  family = registry.family(named)
  weight_file = weights.fetch(family.location(named, "npz", "new"))
  folder = os.path.join(weights.cache_dir(cache), "hub",
                        f"{named.name}-{weights.sha256(weight_file)[:12]}", kind)
  if not os.path.isdir(folder):
    partial = f"{folder}.partial-{os.getpid()}"
    model = family.load(weight_file, None, "keep")
    export_module(model, partial, kind)
    try:
      os.rename(partial, folder)
    except OSError:  # another process exported it first
      shutil.rmtree(partial, ignore_errors=True)
  return folder
