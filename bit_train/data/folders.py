"""Image folders: `root/<class>/*.jpg`, or `root/<split>/<class>/*.jpg`, as labelled files.

Class names are the sorted class folder names; label i is class_names[i]. Every file
with an image extension is opened once (JPEGs at 1/8 scale, which still reads every
byte) so that an unreadable file is skipped here, with a warning naming it, rather
than stopping training halfway. When there is no eval split folder, a seeded,
stratified holdout of the train images becomes the eval split.
"""

import concurrent.futures
import dataclasses
import os

from absl import logging
import numpy as np
from PIL import Image

from bit_train.errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
# What tf.io.decode_image reads (MPO: a camera JPEG holding more than one picture).
DECODABLE_FORMATS = ("JPEG", "MPO", "PNG", "GIF", "BMP", "WEBP")
DEFAULT_TRAIN_SPLIT = "train"
DEFAULT_EVAL_SPLITS = ("test", "validation", "val")
# Fixed, so every run on the same folder evaluates on the same held-out images.
HOLDOUT_SEED = 0


@dataclasses.dataclass(frozen=True)
class Split:
  """Readable images of one split, in a fixed order."""
  paths: tuple
  labels: tuple  # class indices
  sizes: tuple  # (height, width) per image
  file_bytes: tuple  # encoded size on disk per image

  @property
  def num_bytes(self):
    return sum(self.file_bytes)

  def take(self, indices):
    """The images at `indices`, in their original order."""
    indices = sorted(indices)
    return Split(*(tuple(field[i] for i in indices) for field in (
        self.paths, self.labels, self.sizes, self.file_bytes)))


@dataclasses.dataclass(frozen=True)
class Folder:
  root: str
  class_names: tuple
  train: Split
  eval: Split
  train_split: str
  eval_split: str
  skipped: tuple  # (path, reason) of every unreadable file


def _visible(names):
  return sorted(n for n in names if not n.startswith("."))


def _subdirs(path):
  return [d for d in _visible(os.listdir(path)) if os.path.isdir(os.path.join(path, d))]


def _image_files(path):
  """Files with an image extension under `path`, at any depth, sorted."""
  found = []
  for dirpath, dirnames, filenames in os.walk(path):
    dirnames[:] = _visible(dirnames)
    found += [os.path.join(dirpath, f) for f in _visible(filenames)
              if f.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(found)


def inspect_image(path):
  """((height, width), None) for an image TensorFlow can decode, else (None, reason)."""
  try:
    if os.path.getsize(path) == 0:
      return None, "empty file (0 bytes)"
    with Image.open(path) as image:
      width, height = image.size
      if image.format not in DECODABLE_FORMATS:
        return None, f"{image.format} images are not supported"
      if image.format == "BMP" and (
          image.mode == "1" or image.info.get("compression", 0) not in (0, 3)):
        return None, "1-bit or compressed BMP (convert it to PNG)"
      if image.format in ("JPEG", "MPO"):
        image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
      image.load()  # decodes the pixels: finds truncated and corrupt files
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    return None, f"unreadable ({e})"
  return (height, width), None


def _read_classes(split_dir, class_names, skipped):
  """A Split of the class folders under split_dir, labelled by class_names."""
  labelled = []
  for name in _subdirs(split_dir):
    if name not in class_names:
      raise UserError(f"class folder {os.path.join(split_dir, name)} has no "
                      f"counterpart in the train split: classes are {list(class_names)}.")
    labelled += [(p, class_names.index(name)) for p in _image_files(
        os.path.join(split_dir, name))]
  workers = min(8, os.cpu_count() or 1)
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    inspected = list(pool.map(inspect_image, [p for p, _ in labelled]))
  paths, labels, sizes = [], [], []
  for (path, label), (size, reason) in zip(labelled, inspected):
    if reason:
      skipped.append((path, reason))
    else:
      paths.append(path)
      labels.append(label)
      sizes.append(size)
  counts = np.bincount(np.asarray(labels, int), minlength=len(class_names))
  for name in _subdirs(split_dir):
    if not counts[class_names.index(name)]:
      raise UserError(f"class folder {os.path.join(split_dir, name)} has no readable "
                      f"images ({', '.join(IMAGE_EXTENSIONS)}): add images or remove it.")
  return Split(tuple(paths), tuple(labels), tuple(sizes),
               tuple(os.path.getsize(p) for p in paths))


def holdout(split, fraction, num_classes, seed=HOLDOUT_SEED):
  """(train indices, holdout indices): `fraction` of every class, drawn with `seed`.

  A class with at least two images gives at least one to the holdout and keeps at
  least one for training.
  """
  labels = np.asarray(split.labels, int)
  kept, held = [], []
  for c in range(num_classes):
    members = np.flatnonzero(labels == c)
    n = len(members)
    count = min(max(int(round(fraction * n)), 1 if n >= 2 else 0), max(n - 1, 0))
    members = np.random.default_rng([seed, c]).permutation(members)
    held += members[:count].tolist()
    kept += members[count:].tolist()
  return sorted(kept), sorted(held)


def _split_layout(root, train_split):
  """True when root holds split folders (root/train/<class>/...)."""
  train_dir = os.path.join(root, train_split or DEFAULT_TRAIN_SPLIT)
  return os.path.isdir(train_dir) and bool(_subdirs(train_dir)) and not any(
      os.path.isfile(os.path.join(train_dir, f)) and f.lower().endswith(IMAGE_EXTENSIONS)
      for f in os.listdir(train_dir))


def _choose_splits(root, train_split, eval_split):
  """(train dir, train name, eval dir or None, eval name or None)."""
  if not _split_layout(root, train_split):
    if train_split or eval_split:
      raise UserError(f"train_split/eval_split name split folders, but {root} holds "
                      "class folders directly (root/<class>/*.jpg): unset them, or "
                      "lay out root/<split>/<class>/*.jpg.")
    return root, "all images", None, None
  splits = _subdirs(root)
  train_split = train_split or DEFAULT_TRAIN_SPLIT
  if eval_split is None:
    eval_split = next((s for s in DEFAULT_EVAL_SPLITS if s in splits), None)
  elif eval_split not in splits:
    raise UserError(f"eval_split={eval_split!r}: there is no folder {eval_split!r} in "
                    f"{root} (split folders: {', '.join(splits)}).")
  eval_dir = os.path.join(root, eval_split) if eval_split else None
  return os.path.join(root, train_split), train_split, eval_dir, eval_split


def _warn_skipped(skipped):
  if skipped:
    logging.warning("skipped %d unreadable image file%s (the run goes on without "
                    "them):\n%s", len(skipped), "s" if len(skipped) > 1 else "",
                    "\n".join(f"  {path}: {reason}" for path, reason in skipped))


def scan(root, train_split=None, eval_split=None, holdout_fraction=0.1):
  """Reads the folder layout and checks every image; returns a Folder.

  An empty folder or an empty class folder is a UserError; unreadable files are
  skipped with one warning that names each of them.
  """
  if not root:
    raise UserError("dataset=image_folder needs data_dir=<folder>: the folder that "
                    "holds one sub-folder of images per class.")
  if not os.path.isdir(root):
    raise UserError(f"data_dir={root!r} is not a folder: give the folder that holds "
                    "one sub-folder of images per class.")
  train_dir, train_name, eval_dir, eval_name = _choose_splits(
      root, train_split, eval_split)
  class_names = tuple(_subdirs(train_dir))
  if not class_names or not _image_files(train_dir):
    raise UserError(f"no images in {train_dir}: expected class folders holding "
                    f"{', '.join(IMAGE_EXTENSIONS)} files (root/<class>/*.jpg).")
  skipped = []
  train = _read_classes(train_dir, class_names, skipped)
  if eval_dir:
    evaluation = _read_classes(eval_dir, class_names, skipped)
  else:
    if not 0 < holdout_fraction < 1:
      raise UserError(f"holdout_fraction={holdout_fraction}: {root} has no eval split "
                      "folder, so a fraction between 0 and 1 of the train images is "
                      "held out for evaluation.")
    kept, held = holdout(train, holdout_fraction, len(class_names))
    train, evaluation = train.take(kept), train.take(held)
    eval_name = f"holdout {holdout_fraction:g} of {train_name} (seed {HOLDOUT_SEED})"
    train_name = f"{train_name} minus holdout"
  _warn_skipped(skipped)
  return Folder(root=root, class_names=class_names, train=train, eval=evaluation,
                train_split=train_name, eval_split=eval_name, skipped=tuple(skipped))


def scan_eval(root, eval_split=None):
  """(class names, Split, split name) of the images an evaluation reads.

  With split folders (root/<split>/<class>/...) that is the eval split folder
  (`eval_split`, else test, validation or val); with class folders directly under
  root, every image. Unreadable files are skipped with a warning, as in `scan`.
  """
  if not root or not os.path.isdir(root):
    raise UserError(f"{root!r} is not a folder: give a folder of class folders "
                    "(root/<class>/*.jpg or root/<split>/<class>/*.jpg).")
  train_dir, _, eval_dir, eval_name = _choose_splits(root, None, eval_split)
  if eval_dir is None and _split_layout(root, None):
    raise UserError(f"{root} has split folders but no eval split (test, validation, "
                    "val): name one with eval_split.")
  class_names = tuple(_subdirs(train_dir))
  skipped = []
  split = _read_classes(eval_dir or train_dir, class_names, skipped)
  _warn_skipped(skipped)
  if not split.paths:
    raise UserError(f"no readable images in {eval_dir or train_dir}.")
  return class_names, split, eval_name or "all images"
