"""Export any model of the framework as a reusable TF Hub SavedModel, and the TF Hub
modules of the bundled models, made from their .npz on first use.

A module takes float32 images [B, H, W, 3] in [0, 1]; it loads back with
`hub.load(path)` (see `models/hub.py`) or `hub.KerasLayer(path, trainable=True)`.
"""

import os
import shutil

import tensorflow as tf

from bit_train.models import npz
from bit_train.models import registry


def _hub_root(model, kind):
  """The reusable-SavedModel interface around a model's logits or pre-logits."""
  head = {v.ref() for v in model.head_variables}
  keep = (lambda v: True) if kind == "classification" else (
      lambda v: v.ref() not in head)
  output = model.__call__ if kind == "classification" else model.pre_logits

  @tf.function
  def call(images, training=False):
    del training  # BiT has no batch norm or dropout
    return output(images)

  spec = tf.TensorSpec([None, None, None, 3], tf.float32)
  for training in (False, True):
    call.get_concrete_function(spec, training=training)
  root = tf.train.Checkpoint()  # an object with plain attributes, as Hub expects
  root.model = model
  root.variables = [v for v in model.variables if keep(v)]
  root.trainable_variables = [v for v in model.trainable_variables if keep(v)]
  root.regularization_losses = []
  root.__call__ = call
  if kind == "classification":  # lets a loader replace the head
    root.pre_logits = tf.function(model.pre_logits, input_signature=[spec])
  return root


def export_hub_module(model, path, kind="classification"):
  """Saves `model` as a reusable TF Hub SavedModel at `path`.

  kind="classification": `__call__` gives logits (and `pre_logits` pre-logits);
  kind="feature_vector": `__call__` gives pre-logits and the head is left out of
  the variables. Images are float32 [B, H, W, 3] in [0, 1]. Loads back with
  `hub.load(path)` or `hub.KerasLayer(path, trainable=True)`.
  """
  if kind not in ("classification", "feature_vector"):
    raise ValueError(f"kind={kind!r}: use classification or feature_vector")
  tf.saved_model.save(_hub_root(model, kind), path)
  return path


def bundled_hub_module(handle, cache=None):
  """The local folder of a `bundled:<name>/<kind>` TF Hub handle.

  The module is exported from the bundled .npz the first time it is asked for,
  into the cache directory, under the file's sha256 (a changed file gets a new
  module); it is written whole before it is moved into place.
  """
  name, _, kind = handle[len(registry.BUNDLED_HANDLE):].partition("/")
  spec = registry.lookup(name)
  weights = npz.fetch(spec.npz_url)
  folder = os.path.join(npz.cache_dir(cache), "hub",
                        f"{spec.name}-{npz.sha256(weights)[:12]}", kind)
  if not os.path.isdir(folder):
    partial = f"{folder}.partial-{os.getpid()}"
    model = registry.family(spec).load(weights, None, "keep")
    export_hub_module(model, partial, kind)
    try:
      os.rename(partial, folder)
    except OSError:  # another process exported it first
      shutil.rmtree(partial, ignore_errors=True)
  return folder
