"""Image folders as a DataSource: `dataset=image_folder,data_dir=ROOT`, where ROOT is
`root/<class>/*.jpg` or `root/<split>/<class>/*.jpg`.

Class names are the sorted class folder names; label i is class_names[i]. Every file
with an image extension is decoded once, by the decoder the streams use
(preprocess.decode), so that a file the streams could not read is skipped here, with
a warning naming it, rather than stopping training halfway (`scan`).

Splits are the folder's: its train split (ROOT itself, or ROOT/train) and its eval
split: the eval split folder (eval_split, else test, validation or val), else a
seeded, stratified share of every class held out (holdout_fraction), else, with
holdout_fraction=0, every image (a folder read only to be evaluated). The image size
is the median of the split's images, read from their headers when the folder is
scanned.
"""

import dataclasses
import functools
import os
import re
import stat

from absl import logging
import numpy as np

from bit_train.data import preprocess
from bit_train.data.sources import base
from bit_train.data.sources import scan_cache
from bit_train.errors import UserError, quote
from bit_train.lazy import tensorflow as tf

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
DEFAULT_TRAIN_SPLIT = "train"
DEFAULT_EVAL_SPLITS = ("test", "validation", "val")
# Fixed, so every run on the same folder evaluates on the same held-out images.
HOLDOUT_SEED = 0
ALL_IMAGES = "all images"  # the train split of a folder without split folders


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
  eval: Split | None  # None: no eval split folder and no holdout
  train_split: str
  eval_split: str | None
  skipped: tuple  # (path, reason) of every unreadable file


def _visible(names):
  return sorted(n for n in names if not n.startswith("."))


def _subdirs(path):
  return [d for d in _visible(os.listdir(path)) if os.path.isdir(os.path.join(path, d))]


def _image_files(path):
  """Files with an image extension under `path`, at any depth, sorted (walk_images);
  whatever the walk left out is named in one warning."""
  found, skipped = walk_images(path)
  if skipped:
    logging.warning("left out %d entr%s under %s:\n%s", len(skipped),
                    "ies" if len(skipped) > 1 else "y", path, "\n".join(
                        f"  {os.fsdecode(p)!r}: {why}" for p, why in skipped))
  return found


def walk_images(path):
  """(files with an image extension under `path`, sorted; [(path, why)] of what was
  left out).

  The walk is safe: links to folders are not followed (no loop, no folder read
  twice); a link to a file counts once, as its target (two names of one file are
  one image); dangling links, FIFOs, devices and sockets are never opened;
  unreadable folders are left out.
  """
  found, seen, skipped = [], set(), []

  def unreadable(error):
    skipped.append((error.filename, f"folder not readable ({error.strerror})"))

  for dirpath, dirnames, filenames in os.walk(path, onerror=unreadable):
    for d in _visible(dirnames):
      if os.path.islink(os.path.join(dirpath, d)):
        skipped.append((os.path.join(dirpath, d), "a link to a folder, not followed"))
    dirnames[:] = [d for d in _visible(dirnames)
                   if not os.path.islink(os.path.join(dirpath, d))]
    for name in _visible(filenames):
      if not name.lower().endswith(IMAGE_EXTENSIONS):
        continue
      file = os.path.join(dirpath, name)
      try:
        info = os.stat(file)
      except OSError as e:
        skipped.append((file, "a dangling link" if os.path.islink(file)
                        else f"cannot be read ({e.strerror})"))
        continue
      if not stat.S_ISREG(info.st_mode):
        skipped.append((file, "not a regular file (a FIFO, device or socket)"))
      elif (info.st_dev, info.st_ino) in seen:
        skipped.append((file, "another name of a file already counted"))
      else:
        seen.add((info.st_dev, info.st_ino))
        found.append(file)
  return sorted(found), skipped


def _decode_shapes(paths):
  """{index: (height, width)} of the paths preprocess.decode reads; the others are
  left out. One parallel, batched tf.data pass: the kernel the streams use, without
  a Python call per file (much slower on a large folder)."""
  def shape(index, path):
    return index, tf.shape(preprocess.decode(tf.io.read_file(path)))[:2]
  decoded = tf.data.Dataset.from_tensor_slices(
      (tf.range(len(paths)), [os.fsencode(p) for p in paths])).map(
          shape, num_parallel_calls=tf.data.AUTOTUNE).ignore_errors().batch(256)
  return {int(i): (int(h), int(w)) for indices, shapes in decoded.as_numpy_iterator()
          for i, (h, w) in zip(indices, shapes)}


UNREADABLE_THEN = "unreadable while the folder was read"  # not kept: may pass next time


def _why_unreadable(path):
  """Why preprocess.decode rejects a file, in the decoder's words."""
  if os.path.getsize(path) == 0:
    return "empty file (0 bytes)"
  try:
    preprocess.decode(tf.io.read_file(path))
  except tf.errors.OpError as e:
    # Drop TensorFlow's "{{function_node ...}}" and "[Op:DecodeImage]" wrapping.
    message = re.sub(r"\{\{.*?\}\}|\[Op:\w+\]", "", e.message).strip()
    return f"TensorFlow cannot decode it ({quote(message)})"
  return UNREADABLE_THEN


def _header_shapes(paths):
  """{index: (height, width)} of the paths whose image header Pillow reads."""
  shapes = {}
  for i, path in enumerate(paths):
    info = os.stat(path)
    shape = _header_shape(path, info.st_size, info.st_mtime_ns)
    if shape:
      shapes[i] = shape
  return shapes


# Keyed by size and modification time as well: a dry run of a suite plans many runs
# on one folder, and reads each header once.
@functools.lru_cache(maxsize=1 << 16)
def _header_shape(path, size, mtime_ns):
  del size, mtime_ns
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as image:
      return image.height, image.width
  except (OSError, ValueError, Image.DecompressionBombError):
    return None


def _why_no_header(path):
  if os.path.getsize(path) == 0:
    return "empty file (0 bytes)"
  return "not an image whose header Pillow reads"


def inspect_images(paths, decode=True):
  """[((height, width), None) for a file the streams can decode, else (None, reason)].

  Inside scan_cache.kept_in, a file whose size and modification time the cache
  holds is not decoded again. `decode=False` (a dry run) reads only the headers of
  the files the cache does not hold, without TensorFlow: a file with a readable
  header but damaged data is then counted, and the run itself skips it by name.
  """
  cache = scan_cache.active()
  found = cache.known(paths) if cache else {}
  todo = [i for i in range(len(paths)) if i not in found]
  todo_paths = [paths[i] for i in todo]
  if not decode:
    shapes = _header_shapes(todo_paths) if todo else {}
    for n, i in enumerate(todo):
      found[i] = (shapes[n], None) if n in shapes else (None, _why_no_header(paths[i]))
    return [found[i] for i in range(len(paths))]
  shapes = _decode_shapes(todo_paths) if todo else {}
  for n, i in enumerate(todo):
    found[i] = (shapes[n], None) if n in shapes else (None, _why_unreadable(paths[i]))
    if cache and found[i][1] != UNREADABLE_THEN:
      cache.add(paths[i], *found[i])
  return [found[i] for i in range(len(paths))]


def _read_classes(split_dir, class_names, skipped, decode):
  """A Split of the class folders under split_dir, labelled by class_names."""
  labelled = []
  for name in _subdirs(split_dir):
    if name not in class_names:
      raise UserError(f"class folder {os.path.join(split_dir, name)} has no "
                      f"counterpart in the train split: classes are {list(class_names)}.")
    labelled += [(p, class_names.index(name)) for p in _image_files(
        os.path.join(split_dir, name))]
  inspected = inspect_images([p for p, _ in labelled], decode)
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
    return root, ALL_IMAGES, None, None
  splits = _subdirs(root)
  train_split = train_split or DEFAULT_TRAIN_SPLIT
  if eval_split is None:
    eval_split = next((s for s in DEFAULT_EVAL_SPLITS if s in splits), None)
  elif eval_split not in splits:
    raise UserError(f"eval_split={eval_split!r}: there is no folder {eval_split!r} in "
                    f"{root} (split folders: {', '.join(splits)}).")
  eval_dir = os.path.join(root, eval_split) if eval_split else None
  return os.path.join(root, train_split), train_split, eval_dir, eval_split


def _class_names(directory):
  """The sorted class folder names under `directory`; a UserError when it holds no
  images, or images that do not sit in class folders."""
  class_names = tuple(_subdirs(directory))
  if not class_names:
    loose = [f for f in _visible(os.listdir(directory))
             if f.lower().endswith(IMAGE_EXTENSIONS)]
    if loose:
      parent = os.path.dirname(os.path.abspath(directory))
      raise UserError(
          f"{directory} holds {len(loose)} images but no class folders: images must "
          f"sit in one folder per class ({directory}/<class>/*.jpg). If {directory} "
          f"is itself one class folder, give its parent: {parent}.")
  if not class_names or not _image_files(directory):
    raise UserError(f"no images in {directory}: expected class folders holding "
                    f"{', '.join(IMAGE_EXTENSIONS)} files (root/<class>/*.jpg).")
  return class_names


def _warn_skipped(skipped):
  if skipped:
    logging.warning("skipped %d unreadable image file%s (the run goes on without "
                    "them):\n%s", len(skipped), "s" if len(skipped) > 1 else "",
                    "\n".join(f"  {path}: {reason}" for path, reason in skipped))


def scan(root, train_split=None, eval_split=None, holdout_fraction=0.1, decode=True):
  """Reads the folder layout and checks every image; returns a Folder.

  Without an eval split folder, `holdout_fraction` of every class becomes the eval
  split; with holdout_fraction 0 there is none (Folder.eval is None: a folder
  read only to be evaluated). An empty folder or an empty class folder is a
  UserError; unreadable files are skipped with one warning that names each of them.
  `decode=False` (a dry run) checks only the images' headers (see inspect_images).
  """
  if not root:
    raise UserError("dataset=image_folder needs data_dir=<folder>: the folder that "
                    "holds one sub-folder of images per class.")
  if not os.path.isdir(root):
    raise UserError(f"data_dir={root!r} is not a folder: give the folder that holds "
                    "one sub-folder of images per class.")
  train_dir, train_name, eval_dir, eval_name = _choose_splits(
      root, train_split, eval_split)
  class_names = _class_names(train_dir)
  skipped = []
  train = _read_classes(train_dir, class_names, skipped, decode)
  evaluation = None
  if eval_dir:
    evaluation = _read_classes(eval_dir, class_names, skipped, decode)
  elif holdout_fraction > 0:
    kept, held = holdout(train, holdout_fraction, len(class_names))
    train, evaluation = train.take(kept), train.take(held)
    eval_name = f"holdout {holdout_fraction:g} of {train_name} (seed {HOLDOUT_SEED})"
    train_name = f"{train_name} minus holdout"
  _warn_skipped(skipped)
  return Folder(root=root, class_names=class_names, train=train, eval=evaluation,
                train_split=train_name, eval_split=eval_name, skipped=tuple(skipped))


KIND = "image_folder"


class FolderSource(base.DataSource):
  """A folder of class folders, scanned once when the source opens."""

  def __init__(self, spec, read=True):
    super().__init__(spec, read)
    self.folder = scan(spec.data_dir, spec.train_split, spec.eval_split,
                       spec.holdout_fraction, decode=read)
    self._splits = {self.folder.train_split: self.folder.train}
    if self.folder.eval is not None:
      self._splits[self.folder.eval_split] = self.folder.eval

  def default_eval_split(self):
    if self.folder.eval is not None:
      return self.folder.eval_split
    if self.folder.train_split != ALL_IMAGES:  # split folders, but no eval folder
      raise UserError(f"{self.folder.root} has split folders but no eval split (test, "
                      "validation, val): name one with eval_split.")
    return ALL_IMAGES

  def _examples(self, split, label_key):
    if label_key is not None:
      raise UserError(f"label_key={label_key!r}: an image folder has one label, its "
                      "class folder; unset label_key.")
    found = self._splits.get(split)
    if found is None:
      raise UserError(f"{self.folder.root} has no split {split!r}: its splits are "
                      f"{', '.join(map(repr, self._splits))}.")
    files = (found.paths, found.labels)
    return base.Examples(
        name=f"{self.folder.root}@{split}", split=split,
        class_names=self.folder.class_names,
        read=functools.partial(base.file_examples, *files),
        num_examples=len(found.paths), num_bytes=found.num_bytes, files=files,
        image_size=lambda: (base.typical_size(found.sizes), base.describe_sizes(
            found.sizes, f"the headers of all {len(found.sizes)} images of {split!r}")))

  def _find_facts(self):
    folder, spec = self.folder, self.spec
    if folder.eval is None:
      raise UserError(f"holdout_fraction={spec.holdout_fraction}: {folder.root} has "
                      "no eval split folder, so a fraction between 0 and 1 of the "
                      "train images is held out for evaluation.")
    train = folder.train
    origin = f"the class folders in {folder.root}"
    # A dry run reads headers (inspect_images), which cannot show a damaged body.
    counted = ("readable train images" if self.read else "train images whose headers "
               "read (the run decodes each and skips, naming it, one it cannot)")
    return base.resolve(
        spec, num_examples=len(train.paths), num_classes=len(folder.class_names),
        image_size=base.typical_size(train.sizes), train_split=folder.train_split,
        eval_split=folder.eval_split, class_names=folder.class_names,
        sources={"num_examples": f"the {len(train.paths)} {counted} in {origin}",
                 "num_classes": origin,
                 "image_size": base.describe_sizes(
                     train.sizes, f"the headers of all {len(train.paths)} train images")})
