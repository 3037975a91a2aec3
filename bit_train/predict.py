"""Classify image files with a BiT model: top classes and probabilities per image.

  bit-predict --model W/export --images a.jpg photos/ --top 5 --batch_size 64
  bit-predict --model BiT-S-R50x1.npz --labels ilsvrc2012_wordnet_lemmas.txt cat.jpg --json

--model is a trainer export (W/export, W/export/serving or W/export/hub_module:
its model name, classes and crop come from W/export/export.json), a TF Hub
classification module (a handle, URL or folder), an official .npz file with its
head, or a BiT name (its ILSVRC-2012 classifier on TF Hub). Images are resized to
--crop, else an export's crop (the run's), else 480. Class names come from --labels
(one per line, line i naming output i), else from the export, else `class_<i>`.
Folders are searched recursively for image files. A file that cannot be read is
reported on stderr and skipped; the exit code is 0 when at least one image was
classified and 2 when none could be.
"""

from bit_train import console

# Before TensorFlow is imported: its C++ lines stay out of this run (console.py).
console.quiet_native_logs(script=__name__ == "__main__")

import json  # pylint: disable=wrong-import-position
import os  # pylint: disable=wrong-import-position
import stat  # pylint: disable=wrong-import-position
import sys  # pylint: disable=wrong-import-position

from absl import flags  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position
import tensorflow as tf  # pylint: disable=wrong-import-position

from bit_train import cli  # pylint: disable=wrong-import-position
from bit_train import export  # pylint: disable=wrong-import-position
from bit_train import hyperrule  # pylint: disable=wrong-import-position
from bit_train import labels  # pylint: disable=wrong-import-position
from bit_train import reading  # pylint: disable=wrong-import-position
from bit_train.data.sources import tfds as tfds_source  # pylint: disable=wrong-import-position
from bit_train.data import preprocess  # pylint: disable=wrong-import-position
from bit_train.data.sources import folder as image_folder  # pylint: disable=wrong-import-position
from bit_train.errors import UserError, quote  # pylint: disable=wrong-import-position
from bit_train.models import hub  # pylint: disable=wrong-import-position
from bit_train.models import factory  # pylint: disable=wrong-import-position
from bit_train import specs  # pylint: disable=wrong-import-position
from bit_train.models import registry  # pylint: disable=wrong-import-position

_MODEL = flags.DEFINE_string("model", None, "Export dir, TF Hub handle or folder, "
                             ".npz file, or BiT name (e.g. BiT-S-R50x1).")
_IMAGES = flags.DEFINE_list("images", [], "Image files or folders (comma-separated); "
                            "further paths may follow as arguments.")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to print per image.")
_LABELS = flags.DEFINE_string("labels", None, "Label file: line i names output i "
                              "(e.g. the ILSVRC-2012 or ImageNet-21k lemma list).")
_CROP = flags.DEFINE_integer("crop", None, "Resolution images are resized to; default "
                             "a trainer export's (its run's crop), else 480 (the "
                             "HyperRule's for ILSVRC-2012).")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images classified per model "
                                   "call.")
# The HyperRule's resolution for ILSVRC-2012, the official classifiers' dataset.
DEFAULT_CROP = hyperrule.get_resolution(tfds_source.KNOWN["imagenet2012"].image_size)[1]


class Predictor:
  """Encoded images -> probabilities over the model's classes, one row per image.

  name: the model's name; crop: the resolution its images are resized to;
  class_names, names_origin: the names of its outputs and their file, or None.
  """

  def __init__(self, fn, num_classes, name, crop, class_names=None, names_origin=None):
    self.fn, self.num_classes, self.name, self.crop = fn, num_classes, name, crop
    self.class_names, self.names_origin = class_names, names_origin

  def __call__(self, encoded_images):
    return np.asarray(self.fn(encoded_images))

  def describe(self):
    return {"name": self.name, "crop": self.crop, "num_classes": self.num_classes,
            "class_names_from": self.names_origin}


def _serving_fn(loaded):
  """A trainer's serving export: uint8 images of any size in, probabilities out."""
  serve = loaded.signatures["serving_default"]

  def predict(encoded_images):
    # The export resizes inside, so one call takes images of one size: a call per
    # decoded shape, rows put back in the given order.
    images = [preprocess.decode(encoded) for encoded in encoded_images]
    rows = [None] * len(images)
    by_shape = {}
    for i, image in enumerate(images):
      by_shape.setdefault(tuple(image.shape), []).append(i)
    for indices in by_shape.values():
      batch = tf.stack([images[i] for i in indices])
      for i, row in zip(indices, serve(images=batch)["probabilities"].numpy()):
        rows[i] = row
    return np.stack(rows)
  return predict, int(serve.structured_outputs["probabilities"].shape[-1])


def _logits_fn(model, crop):
  def predict(encoded_images):
    images = tf.stack([preprocess.eval_image(e, crop) for e in encoded_images])
    return tf.nn.softmax(tf.cast(model(images, training=False), tf.float32))
  return predict


def _load_saved_model(path):
  """The SavedModel `path` through the reading layer: a damaged file is one line."""
  return reading.read_saved_model(path, tf.saved_model.load, "model")


def _export_predictor(facts, crop):
  """A trainer export: its serving model (which resizes to the run's crop), or its
  hub module when --crop asks for another resolution."""
  names = dict(class_names=facts.class_names, names_origin=facts.origin)
  if facts.serving and crop in (None, facts.crop):
    fn, classes = _serving_fn(_load_saved_model(facts.serving))
    return Predictor(fn, classes, facts.model, facts.crop, **names)
  if facts.hub_module is None:
    raise UserError(f"{facts.serving} resizes images to its run's resolution: leave "
                    "out --crop, or give the export's hub_module with --crop.")
  crop = crop or facts.crop or DEFAULT_CROP
  model = hub.HubModel(_load_saved_model(facts.hub_module), None, "keep",
                       facts.hub_module)
  return Predictor(_logits_fn(model, crop), model.num_classes, facts.model, crop,
                   **names)


def load_predictor(name, crop=None):
  """The Predictor for --model (see the module docstring for what it accepts)."""
  facts = export.find(name)
  if facts is not None:
    return _export_predictor(facts, crop)
  crop = crop or DEFAULT_CROP
  if name.endswith(".npz") and ("://" in name or os.path.isfile(name)):
    try:
      model = registry.family().load(name, None, "keep")
    except registry.NoHead as e:
      raise UserError(f"{e.problem}: bit-predict needs a classifier; give an .npz "
                      "that has its head (e.g. BiT-S-R50x1.npz).") from None
    return Predictor(_logits_fn(model, crop), model.num_classes, name, crop)
  if os.path.isdir(name):
    model = hub.HubModel(_load_saved_model(name), None, "keep", name)
  else:
    model = hub.hub_model(_hub_handle(name), None, "keep")
  return Predictor(_logits_fn(model, crop), model.num_classes, name, crop)


def _hub_handle(name):
  """A BiT name's ILSVRC-2012 classifier on TF Hub, or a URL or TF Hub handle as is;
  a file that is none of these, or anything else, is a --model mistake."""
  if "://" in name or name.startswith("google/"):
    return name
  try:
    spec = specs.ModelSpec.of(name, source="hub", head="keep")
  except UserError:
    if os.path.isfile(name):
      raise UserError(f"--model {name!r} is a file but not an .npz of weights: give "
                      "an export dir, TF Hub module folder, .npz file or BiT name "
                      "(such as BiT-M-R50x1).") from None
    raise UserError(f"--model {name!r} is no file or folder, TF Hub handle or BiT name:"
                    " give an export dir, TF Hub module, .npz file or BiT name (such as "
                    f"BiT-M-R50x1).{registry.did_you_mean(name)}") from None
  return factory.model_location(spec)


def image_paths(args):
  """(files named directly (any extension), plus image files under named folders;
  [(path, why)] of what the folders' walk left out: image_folder.walk_images)."""
  found, skipped = [], []
  for arg in args:
    if os.path.isdir(arg):
      files, left_out = image_folder.walk_images(arg)
      found += files
      skipped += [(os.fsdecode(p), why) for p, why in left_out]
    else:
      found.append(arg)
  return found, skipped


def read_image(path):
  """(encoded bytes, None) or (None, why the file cannot be used). A FIFO, device or
  socket is never opened (reading one would wait for a writer)."""
  if "://" not in path:
    try:
      if not stat.S_ISREG(os.stat(path).st_mode):
        return None, "not a regular file (a folder, FIFO, device or socket)"
    except FileNotFoundError:
      return None, "a dangling link" if os.path.islink(path) else "no such file"
    except OSError as e:
      return None, e.strerror or quote(e)
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      encoded = f.read()
  except tf.errors.NotFoundError:
    return None, "no such file"
  except tf.errors.OpError as e:
    return None, quote(e)
  if not encoded:
    return None, "empty file"
  try:
    preprocess.decode(encoded)
  except tf.errors.OpError:
    return None, "not a readable image (JPEG, PNG, GIF, BMP or WebP)"
  return encoded, None


def class_names(predictor, labels_path):
  """--labels, else the export's names, else class_<i>."""
  if not labels_path:
    return predictor.class_names or [f"class_{i}" for i in range(predictor.num_classes)]
  names = labels.read_names(labels_path)
  if len(names) != predictor.num_classes:
    raise UserError(f"the label file {labels_path} lists {len(names)} "
                    f"class{'es' if len(names) != 1 else ''} but the "
                    f"model outputs {predictor.num_classes}: give this model's label "
                    "file.")
  predictor.names_origin = labels_path
  return names


def top_classes(probabilities, names, k):
  best = np.argsort(-probabilities, kind="stable")[:k]
  return [{"class": names[i], "index": int(i), "probability": float(probabilities[i])}
          for i in best]


def main(argv):
  if not _MODEL.value:
    raise UserError("--model is required: an export dir, TF Hub module, .npz file or "
                    "BiT name.")
  for flag in (_TOP, _BATCH_SIZE, _CROP):
    if flag.value is not None and flag.value < 1:
      raise UserError(f"--{flag.name}={flag.value} must be at least 1.")
  given = list(_IMAGES.value) + list(argv[1:])
  if not given:
    raise UserError("no images given: name files or folders with --images or as "
                    "arguments.")
  paths, left_out = image_paths(given)
  for path, problem in left_out:
    print(f"skipped {path}: {problem}", file=sys.stderr)
  if not paths:  # only folders were named, and none holds an image file
    raise UserError(f"no image files in {', '.join(given)}: folders are searched "
                    f"recursively for {', '.join(image_folder.IMAGE_EXTENSIONS)} files"
                    f"{f' ({len(left_out)} left out, named above)' if left_out else ''}.")
  predictor = load_predictor(_MODEL.value, _CROP.value)
  names = class_names(predictor, _LABELS.value)
  size = f"{predictor.crop} px" if predictor.crop else "the crop of the export's run"
  print(f"{predictor.name}: {predictor.num_classes} classes, images resized to {size}",
        file=sys.stderr)
  results, pending = [], []  # pending: (path, encoded) to classify
  skipped = [{"image": path, "error": problem} for path, problem in left_out]

  def classify_pending():
    for (path, _), row in zip(pending, predictor([e for _, e in pending])):
      results.append({"image": path,
                      "predictions": top_classes(row, names, _TOP.value)})
      if not _JSON.value:
        print(path)
        for p in results[-1]["predictions"]:
          print(f"  {p['probability']:.4f}  {p['class']}")
    pending.clear()

  for path in paths:
    encoded, problem = read_image(path)
    if problem:
      skipped.append({"image": path, "error": problem})
      print(f"skipped {path}: {problem}", file=sys.stderr)
      continue
    pending.append((path, encoded))
    if len(pending) == _BATCH_SIZE.value:
      classify_pending()
  if pending:
    classify_pending()
  if _JSON.value:
    print(json.dumps({"model": predictor.describe(), "predictions": results,
                      "skipped": skipped}, indent=2))
  if not results:
    raise UserError(f"none of the {len(paths)} files could be read as an image (each "
                    "named above).")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
