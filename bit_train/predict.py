"""Classify image files with a BiT model: top classes and probabilities per image.

  bit-predict --model W/export --images a.jpg photos/ --top 5 --batch_size 64
  bit-predict --model BiT-S-R50x1.npz --labels ilsvrc2012_wordnet_lemmas.txt cat.jpg --json

--model is a trainer export (W/export, or W/export/serving: images are resized
as the model was evaluated), a TF Hub classification module (a handle, URL or
folder, e.g. W/export/hub_module), an official .npz file with its head, or a BiT
name (its ILSVRC-2012 classifier on TF Hub). Class names come from --labels (one
per line, line i naming output i), else from the export's class_names.txt, else
`class_<i>`. Folders are searched recursively for image files. A file that cannot
be read is reported on stderr and skipped; the exit code is 0 when at least one
image was classified and 2 when none could be.
"""

import json
import os
import sys

from absl import flags
import numpy as np
import tensorflow as tf

from bit_train import cli
from bit_train import files
from bit_train import hyperrule
from bit_train import labels
from bit_train.data import catalog
from bit_train.data import folders
from bit_train.data import preprocess
from bit_train.errors import UserError
from bit_train.models import hub
from bit_train.models import registry
from bit_train.models import weights

_MODEL = flags.DEFINE_string("model", None, "Export dir, TF Hub handle or folder, "
                             ".npz file, or BiT name (e.g. BiT-S-R50x1).")
_IMAGES = flags.DEFINE_list("images", [], "Image files or folders (comma-separated); "
                            "further paths may follow as arguments.")
_TOP = flags.DEFINE_integer("top", 5, "How many classes to print per image.")
_LABELS = flags.DEFINE_string("labels", None, "Label file: line i names output i "
                              "(e.g. the ILSVRC-2012 or ImageNet-21k lemma list).")
_CROP = flags.DEFINE_integer("crop", None, "Resolution for hub/npz models; default the "
                             "run's crop for W/export/hub_module, else 480 (the "
                             "HyperRule's for ILSVRC-2012).")
_JSON = flags.DEFINE_bool("json", False, "Print one JSON object instead of text.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images classified per model "
                                   "call.")


class Predictor:
  """Encoded images -> probabilities over the model's classes, one row per image."""

  def __init__(self, fn, num_classes, names_path=None):
    self.fn, self.num_classes, self.names_path = fn, num_classes, names_path

  def __call__(self, encoded_images):
    return np.asarray(self.fn(encoded_images))


def _serving_predictor(path, loaded):
  """A trainer's serving export: uint8 images of any size in, probabilities out."""
  serve = loaded.signatures["serving_default"]
  classes = int(serve.structured_outputs["probabilities"].shape[-1])

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
  return Predictor(predict, classes, labels.export_names_path(path))


def _run_crop(path):
  """The crop of the run that wrote W/export/hub_module (from W/plan.json), or None."""
  plan = os.path.join(os.path.dirname(os.path.dirname(os.path.normpath(path))),
                      "plan.json")
  if not os.path.isfile(plan):
    return None
  return files.read_json(plan).get("plan", {}).get("crop")


def _logits_predictor(model, crop, names_path=None):
  def predict(encoded_images):
    images = tf.stack([preprocess.eval_image(e, crop) for e in encoded_images])
    return tf.nn.softmax(tf.cast(model(images, training=False), tf.float32))
  return Predictor(predict, model.num_classes, names_path)


def load_predictor(name, crop=None):
  """The Predictor for --model (see the module docstring for what it accepts)."""
  default_crop = hyperrule.get_resolution(catalog.KNOWN["imagenet2012"].image_size)[1]
  if os.path.isdir(os.path.join(name, "serving")):
    name = os.path.join(name, "serving")  # W/export
  if name.endswith(".npz"):
    model = weights.load_npz_model(name, None, "keep")
    return _logits_predictor(model, crop or default_crop)
  if os.path.isdir(name):
    try:
      loaded = tf.saved_model.load(name)
    except (OSError, ValueError, tf.errors.OpError) as e:
      raise UserError(f"cannot load the model {name!r}: "
                      f"{' '.join(str(e).split())[:200]}") from None
    serve = getattr(loaded, "signatures", {}).get("serving_default")
    if serve is not None and "probabilities" in serve.structured_outputs:
      return _serving_predictor(name, loaded)
    crop = crop or _run_crop(name) or default_crop
    model = hub.HubModel(loaded, None, "keep", name)
    return _logits_predictor(model, crop, labels.export_names_path(name))
  try:
    name = registry.lookup(name).classifier_handle or name
  except UserError:
    pass  # not a BiT name: a handle or URL
  return _logits_predictor(hub.hub_model(name, None, "keep"), crop or default_crop)


def image_paths(args):
  """Files named directly (any extension), plus image files under named folders."""
  found = []
  for arg in args:
    if os.path.isdir(arg):
      for folder, subdirs, names in os.walk(arg):
        subdirs.sort()
        found += [os.path.join(folder, n) for n in sorted(names)
                  if n.lower().endswith(folders.IMAGE_EXTENSIONS)
                  and not n.startswith(".")]
    else:
      found.append(arg)
  return found


def read_image(path):
  """(encoded bytes, None) or (None, why the file cannot be used)."""
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      encoded = f.read()
  except tf.errors.NotFoundError:
    return None, "no such file"
  except tf.errors.OpError as e:
    return None, " ".join(str(e).split())
  if not encoded:
    return None, "empty file"
  try:
    preprocess.decode(encoded)
  except tf.errors.OpError:
    return None, "not a readable image (JPEG, PNG, GIF, BMP or WebP)"
  return encoded, None


def class_names(predictor, labels_path):
  path = labels_path or predictor.names_path
  if not path:
    return [f"class_{i}" for i in range(predictor.num_classes)]
  names = labels.read_names(path)
  if len(names) != predictor.num_classes:
    raise UserError(f"the label file {path} lists {len(names)} classes but the model "
                    f"outputs {predictor.num_classes}: give this model's label file.")
  return names


def top_classes(probabilities, names, k):
  best = np.argsort(-probabilities, kind="stable")[:k]
  return [{"class": names[i], "index": int(i), "probability": float(probabilities[i])}
          for i in best]


def main(argv):
  if not _MODEL.value:
    raise UserError("--model is required: an export dir, TF Hub module, .npz file or "
                    "BiT name.")
  if _TOP.value < 1:
    raise UserError(f"--top={_TOP.value} must be at least 1.")
  if _BATCH_SIZE.value < 1:
    raise UserError(f"--batch_size={_BATCH_SIZE.value} must be at least 1.")
  paths = image_paths(list(_IMAGES.value) + list(argv[1:]))
  if not paths:
    raise UserError("no images given: name files or folders with --images or as "
                    "arguments.")
  predictor = load_predictor(_MODEL.value, _CROP.value)
  names = class_names(predictor, _LABELS.value)
  results, skipped, pending = [], [], []  # pending: (path, encoded) to classify

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
    print(json.dumps({"predictions": results, "skipped": skipped}, indent=2))
  if not results:
    raise UserError(f"none of the {len(paths)} files could be read as an image.")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
