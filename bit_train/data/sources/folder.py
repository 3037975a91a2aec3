"""Image folders as a DataSource: `dataset=image_folder,data_dir=ROOT` (see folders.py).

Splits are the folder's: its train split (ROOT itself, or ROOT/train) and its eval
split: the eval split folder (eval_split, else test, validation or val), else a
held-out share of every class (holdout_fraction), else, with holdout_fraction=0,
every image (a folder read only to be evaluated). The image size is the median of
the split's images, read from their headers when the folder is scanned.
"""

import functools

from bit_train.data import folders
from bit_train.data.sources import base
from bit_train.errors import UserError

KIND = "image_folder"


class FolderSource(base.DataSource):
  """A folder of class folders, scanned once when the source opens."""

  def __init__(self, spec, read=True):
    super().__init__(spec, read)
    self.folder = folders.scan(spec.data_dir, spec.train_split, spec.eval_split,
                               spec.holdout_fraction)
    self._splits = {self.folder.train_split: self.folder.train}
    if self.folder.eval is not None:
      self._splits[self.folder.eval_split] = self.folder.eval

  def default_eval_split(self):
    if self.folder.eval is not None:
      return self.folder.eval_split
    if self.folder.train_split != folders.ALL_IMAGES:  # split folders, but no eval folder
      raise UserError(f"{self.folder.root} has split folders but no eval split (test, "
                      "validation, val): name one with eval_split.")
    return folders.ALL_IMAGES

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
    return base.resolve(
        spec, num_examples=len(train.paths), num_classes=len(folder.class_names),
        image_size=base.typical_size(train.sizes), train_split=folder.train_split,
        eval_split=folder.eval_split, class_names=folder.class_names,
        sources={"num_examples": f"the {len(train.paths)} readable train images in "
                                 f"{origin}",
                 "num_classes": origin,
                 "image_size": base.describe_sizes(
                     train.sizes, f"the headers of all {len(train.paths)} train images")})
