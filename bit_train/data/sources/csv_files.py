"""CSV files of image paths and labels as a DataSource: `dataset=csv,data_dir=DIR`.

  DIR/train.csv   path,label            one image per row; a header row is optional
  DIR/test.csv    photos/cat1.jpg,cat   paths relative to DIR (or absolute)

Each split is a file `DIR/<split>.csv` (train_split, default `train`; eval_split,
default `test`). Class names are the sorted labels of the train split. Every image
is decoded once when a split is read, by the decoder the streams use, and a file
it cannot read is an error naming it (a CSV lists what it means to hold).

This kind exists as much to show the seam as to be used: it is one module and a
line in sources/__init__.py's KINDS.
"""

import functools
import os

from bit_train import reading
from bit_train.data.sources import base
from bit_train.data.sources import folder
from bit_train.errors import UserError

KIND = "csv"
TRAIN_SPLIT, EVAL_SPLIT = "train", "test"


class CsvSource(base.DataSource):

  def __init__(self, spec, read=True):
    super().__init__(spec, read)
    if not spec.data_dir or not os.path.isdir(spec.data_dir):
      raise UserError(f"dataset=csv needs data_dir=<folder> holding {TRAIN_SPLIT}.csv "
                      f"and {EVAL_SPLIT}.csv (rows: path,label); got {spec.data_dir!r}.")
    self.root = spec.data_dir
    self.train_split = spec.train_split or TRAIN_SPLIT
    rows = self._rows(self.train_split)
    self.names = tuple(sorted({label for _, label in rows}))
    self._splits = {}

  def _rows(self, split):
    """(path, label text) of every row of DIR/<split>.csv."""
    path = os.path.join(self.root, f"{split}.csv")
    if not os.path.isfile(path):
      raise UserError(f"split {split!r}: there is no {path} (rows: path,label).")
    rows = reading.read_csv(path, f"{split} split's CSV file",
                            "save it as CSV rows of path,label (UTF-8)")
    if rows and rows[0] == ["path", "label"]:
      rows = rows[1:]
    if not rows or any(len(row) != 2 for row in rows):
      raise UserError(f"{path} must hold rows of path,label (and at least one).")
    return [(os.path.join(self.root, p), label) for p, label in rows]

  def _split(self, split):
    """(paths, labels, sizes, bytes) of a split, decoded once and remembered."""
    if split not in self._splits:
      rows = self._rows(split)
      unknown = sorted({label for _, label in rows} - set(self.names))
      if unknown:
        raise UserError(f"{split}.csv has labels the train split lacks: "
                        f"{', '.join(unknown[:5])}.")
      label_of = {}
      for path, label in rows:  # twice under one label is only seen twice
        if label_of.setdefault(os.path.normpath(path), label) != label:
          raise UserError(f"{split}.csv lists {path} under two labels, "
                          f"{label_of[os.path.normpath(path)]!r} and {label!r}: keep "
                          "the row with the right one.")
      paths = tuple(p for p, _ in rows)
      missing = [p for p in paths if not os.path.isfile(p)]
      if missing:
        raise UserError(f"{split}.csv lists {len(missing)} file(s) that do not exist, "
                        f"e.g. {missing[0]}.")
      inspected = folder.inspect_images(list(paths), decode=self.read)
      for path, (_, reason) in zip(paths, inspected):
        if reason:
          raise UserError(f"{path} (in {split}.csv): {reason}.")
      labels = tuple(self.names.index(label) for _, label in rows)
      self._splits[split] = (paths, labels, tuple(size for size, _ in inspected),
                             sum(os.path.getsize(p) for p in paths))
    return self._splits[split]

  def default_eval_split(self):
    return EVAL_SPLIT

  def _examples(self, split, label_key):
    if label_key is not None:
      raise UserError(f"label_key={label_key!r}: a CSV source has one label column.")
    paths, labels, sizes, num_bytes = self._split(split)
    return base.Examples(
        name=f"{self.root}@{split}", split=split, class_names=self.names,
        read=functools.partial(base.file_examples, paths, labels),
        num_examples=len(paths), num_bytes=num_bytes, files=(paths, labels),
        image_size=lambda: (base.typical_size(sizes), base.describe_sizes(
            sizes, f"the headers of the {len(sizes)} images of {split}.csv")))

  def _find_facts(self):
    paths, _, sizes, _ = self._split(self.train_split)
    origin = os.path.join(self.root, f"{self.train_split}.csv")
    return base.resolve(
        self.spec, num_examples=len(paths), num_classes=len(self.names),
        image_size=base.typical_size(sizes), train_split=self.train_split,
        eval_split=self.eval_split(), class_names=self.names,
        sources={"num_examples": origin, "num_classes": origin,
                 "image_size": base.describe_sizes(
                     sizes, f"the headers of the {len(sizes)} train images")})
