"""Exports at the end of a run: a serving SavedModel and the reusable Hub-module form.

  W/export/serving/      signatures `serving_default` (uint8 images, any size) and
                         `serve_float` (float32 in [0, 1]); outputs probabilities,
                         class_ids and class_names; class names embedded and in
                         assets/class_names.txt
  W/export/hub_module/   a reusable TF Hub SavedModel (images in [0, 1] -> logits)
  W/export/class_names.txt
"""

import os
import shutil
import tempfile

import tensorflow as tf

from bit_train import files
from bit_train.data import preprocess
from bit_train.models import weights


class ServingModule(tf.Module):
  """Images of any size in, eval preprocessing, probabilities and class ids out."""

  def __init__(self, model, crop, class_names):
    super().__init__(name="serving")
    self.model = model
    self.crop = crop
    self.class_names = tf.constant(list(class_names))

  def _predict(self, images):
    """images: float32 in [0, 255]; resized like the eval stream (no crop)."""
    images = preprocess.eval_resize(images, self.crop)
    probabilities = tf.nn.softmax(tf.cast(self.model(images, training=False), tf.float32))
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {"probabilities": probabilities, "class_ids": class_ids,
            "class_names": tf.gather(self.class_names, class_ids)}

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
  def serve_uint8(self, images):
    return self._predict(tf.cast(images, tf.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
  def serve_float(self, images):
    return self._predict(images * 255.0)


def _target(path, chief):
  """Multi-worker saves run on every worker; only the chief's copy is kept."""
  return path if chief else tempfile.mkdtemp(prefix="bit_train_export_")


def _write_whole(target, write):
  """`write(folder)` into target.tmp, then a rename: a SavedModel is never seen
  half-written, and a failure (a full disk, Ctrl-C) leaves no temporary folder."""
  tmp = f"{target}.tmp"
  files.remove_quietly(tmp)
  with files.removed_on_failure(tmp), files.writing(target):
    write(tmp)
    if tf.io.gfile.exists(target):
      tf.io.gfile.rmtree(target)
    tf.io.gfile.rename(tmp, target)


def export_serving(model, crop, class_names, path, chief=True):
  target = _target(path, chief)
  module = ServingModule(model, crop, class_names)

  def write(folder):
    tf.saved_model.save(module, folder, signatures={
        "serving_default": module.serve_uint8, "serve_float": module.serve_float})
    tf.io.gfile.makedirs(os.path.join(folder, "assets"))
    files.write_text_atomic(os.path.join(folder, "assets", "class_names.txt"),
                            "\n".join(class_names) + "\n")
  _write_whole(target, write)
  if not chief:
    shutil.rmtree(target, ignore_errors=True)


def export_all(model, plan, class_names, workdir, strategy, chief=True):
  """Both exports and the class names, written by the chief."""
  del strategy  # saving reads the variables' primary copies
  root = os.path.join(workdir, "export")
  with files.writing(root):
    tf.io.gfile.makedirs(root)
  export_serving(model, plan.crop, class_names, os.path.join(root, "serving"), chief)
  hub_target = _target(os.path.join(root, "hub_module"), chief)
  _write_whole(hub_target, lambda folder: weights.export_hub_module(model, folder))
  if chief:
    files.write_text_atomic(os.path.join(root, "class_names.txt"),
                            "\n".join(class_names) + "\n")
  else:
    shutil.rmtree(hub_target, ignore_errors=True)
