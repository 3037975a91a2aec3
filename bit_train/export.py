"""Exports at the end of a run: a serving SavedModel and the reusable Hub-module form
(the names are workdir.py's):

  W/export/serving/      signatures `serving_default` (uint8 images, any size) and
                         `serve_float` (float32 in [0, 1]), both taking 1 (gray),
                         2 (gray, alpha), 3 (RGB) or 4 (RGBA) channels as
                         tf.io.decode_image gives them; outputs probabilities,
                         class_ids and class_names; class names embedded and in
                         assets/class_names.txt
  W/export/hub_module/   a reusable TF Hub SavedModel (images in [0, 1] -> logits),
                         its signature `serving_default` with the outputs `logits`
                         and `pre_logits`, class names in assets/class_names.txt
                         (see models/hub.py)
  W/export/class_names.txt
  W/export/export.json   what the export is: the model's name, its classes, the
                         run's crop, and the run it came from

`find(path)` reads those facts back for bit-eval and bit-predict, so both tools
agree on what an export is.
"""

import dataclasses
import os
import shutil
import tempfile

import tensorflow as tf

from bit_train import files
from bit_train import reading
from bit_train import labels
from bit_train.models import hub
from bit_train import trained_on
from bit_train import workdir as wd
from bit_train.data import preprocess
from bit_train.errors import UserError


# The channels of an RGB image from images of 1 to 4 channels, as
# tf.io.decode_image(channels=3) converts them: gray is repeated, alpha dropped.
_RGB_CHANNELS = ((0, 0, 0), (0, 0, 0), (0, 1, 2), (0, 1, 2))


def to_rgb(images):
  """Images [B, H, W, C] of C = 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA)
  channels -> [B, H, W, 3]; any other C fails with a message saying so."""
  channels = tf.shape(images)[-1]
  check = tf.debugging.Assert(
      tf.logical_and(channels >= 1, channels <= 4),
      ["images must have 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA) channels, "
       "not", channels])
  with tf.control_dependencies([check]):
    return tf.gather(images, tf.gather(_RGB_CHANNELS, channels - 1), axis=-1)


class ServingModule(tf.Module):
  """Images of any size in, eval preprocessing, probabilities and class ids out."""

  def __init__(self, model, crop, class_names):
    super().__init__(name="serving")
    self.model = model
    self.crop = crop
    self.class_names = tf.constant(list(class_names))

  def _predict(self, images):
    """images: float32 in [0, 255]; resized like the eval stream (no crop)."""
    images = preprocess.eval_resize(to_rgb(images), self.crop)
    probabilities = tf.nn.softmax(tf.cast(self.model(images, training=False), tf.float32))
    class_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {"probabilities": probabilities, "class_ids": class_ids,
            "class_names": tf.gather(self.class_names, class_ids)}

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8)])
  def serve_uint8(self, images):
    return self._predict(tf.cast(images, tf.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32)])
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
    files.write_text_atomic(os.path.join(folder, "assets", wd.CLASS_NAMES),
                            "\n".join(class_names) + "\n")
  _write_whole(target, write)
  if not chief:
    shutil.rmtree(target, ignore_errors=True)


def export_all(model, plan, class_names, workdir, chief=True, about=None,
               trained_files=None):
  """Both exports, the class names and export.json, written by the chief (every
  worker saves, since saving is collective; only the chief's copy is kept).

  about: the run's final record (model name, dataset, step, metrics, trained_on),
  kept in export.json. trained_files: the lines of trained_on.FILES, or None.
  """
  root = wd.path(workdir, wd.EXPORT)
  files.make_dirs(root, "export directory")
  export_serving(model, plan.crop, class_names, os.path.join(root, wd.SERVING), chief)
  hub_target = _target(os.path.join(root, wd.HUB_MODULE), chief)
  _write_whole(hub_target, lambda folder: hub.export_module(
      model, folder, class_names=class_names))
  if not chief:
    shutil.rmtree(hub_target, ignore_errors=True)
    return
  files.write_text_atomic(os.path.join(root, wd.CLASS_NAMES),
                          "\n".join(class_names) + "\n")
  if trained_files is not None:
    files.write_text_atomic(os.path.join(root, trained_on.FILES),
                            "".join(line + "\n" for line in trained_files))
  about = dict(about or {})
  files.write_json_atomic(os.path.join(root, wd.EXPORT_FACTS), {
      "model": about.pop("model", None), "crop": plan.crop,
      "class_names": list(class_names), "run": dict(about, workdir=workdir)})


@dataclasses.dataclass(frozen=True)
class ExportFacts:
  """What a trainer export is, as bit-eval and bit-predict both see it."""
  root: str  # W/export (or a serving SavedModel copied on its own)
  serving: str | None  # the serving SavedModel, when there
  hub_module: str | None  # the reusable TF Hub module, when there
  model: str  # the name of the architecture the run built
  class_names: list | None  # output i's class
  crop: int | None  # the run's resolution; None when unknown
  origin: str  # the file the facts were read from


def find(path):
  """The facts of the trainer export `path` names, else None.

  `path` may be W/export, W/export/serving or W/export/hub_module (or either model
  folder copied on its own: its assets keep the class names; which one it is, its
  signature says), on any file system the trainer writes to (gs:// too). A training
  workdir W is a UserError naming W/export; so is a folder holding an export's model
  folders without its export.json (written last), naming them.
  """
  if not path or path.startswith(("http://", "https://")):
    return None  # a TF Hub or .npz URL
  folder = path.rstrip("/") if "://" in path else os.path.normpath(path)
  if (os.path.basename(folder) in (wd.SERVING, wd.HUB_MODULE)
      and _is_export(os.path.dirname(folder))):
    folder = os.path.dirname(folder)
  if _is_export(folder):
    return _read(folder)
  if _is_export(os.path.join(folder, wd.EXPORT)):
    raise UserError(f"{path} is a training workdir, not a model: use "
                    f"{os.path.join(path, 'export')}.")
  models = [os.path.join(path, d) for d in (wd.HUB_MODULE, wd.SERVING)
            if reading.exists(os.path.join(folder, d, "saved_model.pb"))]
  if models:
    raise UserError(f"{path} holds a trainer export's model folders but not its "
                    f"{wd.EXPORT_FACTS}, which the trainer writes last (the run's model, "
                    f"classes and crop): give {' or '.join(models)}, or run the run's "
                    "bit-train command again to finish its export.")
  names = os.path.join(folder, "assets", wd.CLASS_NAMES)
  if not tf.io.gfile.exists(names):
    return None
  class_names = labels.read_names(names, distinct=True)
  if "probabilities" in reading.signature_outputs(folder, what="model"):
    return ExportFacts(root=folder, serving=folder, hub_module=None,
                       model=f"the serving model {folder}", class_names=class_names,
                       crop=None, origin=names)
  return ExportFacts(root=folder, serving=None, hub_module=folder,  # logits out
                     model=f"the TF Hub module {folder}", class_names=class_names,
                     crop=None, origin=names)


def _is_export(folder):
  return tf.io.gfile.exists(os.path.join(folder, wd.EXPORT_FACTS))


# export.json as the trainer writes it; a hand-edited one is checked against this.
FACTS_SHAPE = reading.Record(optional={
    "model": (str, reading.NULL),
    "class_names": (reading.ListOf(str, distinct=True), reading.NULL),
    "crop": (int, reading.NULL)})


def _read(root):
  """The ExportFacts of W/export, from its export.json."""
  serving, hub_module = (os.path.join(root, d) for d in (wd.SERVING, wd.HUB_MODULE))
  facts = os.path.join(root, wd.EXPORT_FACTS)
  record = reading.read_json(facts, "export facts", FACTS_SHAPE,
                            "export the run again, or restore the file the trainer wrote")
  if record.get("crop") is not None and record["crop"] < 1:
    raise UserError(f"cannot read the export facts {facts}: its crop is "
                    f"{record['crop']}, not a resolution in pixels: export the run again, "
                    "or restore the file the trainer wrote.")
  return ExportFacts(
      root=root, serving=serving if tf.io.gfile.isdir(serving) else None,
      hub_module=hub_module if tf.io.gfile.isdir(hub_module) else None,
      model=record.get("model") or f"the trainer export {root}",
      class_names=record.get("class_names"), crop=record.get("crop"), origin=facts)
