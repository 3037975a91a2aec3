"""Writes scikit-learn's 1,797 real 8x8 digit scans as an image folder.

  python experiments/miniature/write_digits.py workdirs/digits

One sub-folder per class (`0/` ... `9/`), one grayscale PNG per scan, named by its
index in `load_digits()`. The scans' 17 grey levels (0-16, ink high) become 0-255,
white ink on black as in MNIST. The folder is then an ordinary custom dataset:
`folder:data_dir=workdirs/digits`.
"""

import gzip
import importlib.util
import os
import sys

import numpy as np
from PIL import Image


def digit_scans():
  """(grey levels [1797, 8, 8] in 0-16, labels [1797]) of scikit-learn's load_digits().

  Read straight from the file load_digits() reads (sklearn/datasets/data/digits.csv.gz,
  one scan per row: 64 grey levels, then the label), found without importing
  scikit-learn, whose import costs a second; load_digits() itself when the file is
  not there."""
  spec = importlib.util.find_spec("sklearn")
  if spec is None:
    sys.exit("error: scikit-learn is not installed: pip install -e '.[experiments]'")
  for folder in spec.submodule_search_locations or ():
    path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
      with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",")
      return rows[:, :64].reshape(-1, 8, 8), rows[:, 64].astype(int)
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  digits = load_digits()
  return digits.images, digits.target


def write_digits(root):
  """Writes the folder (files already there are rewritten); returns how many."""
  images, labels = digit_scans()
  pixels = np.round(images * (255 / 16)).astype(np.uint8)
  for label in range(10):
    os.makedirs(os.path.join(root, str(label)), exist_ok=True)
  for index, (image, label) in enumerate(zip(pixels, labels)):
    path = os.path.join(root, str(label), f"{label}_{index:04d}.png")
    Image.fromarray(image).save(path)  # uint8 [8, 8]: grayscale
  return len(pixels)


def main(argv):
  if len(argv) != 2:
    sys.exit(f"usage: {argv[0]} OUTPUT_FOLDER")
  count = write_digits(argv[1])
  print(f"wrote {count} digit scans (8x8 PNG, 10 classes) to {argv[1]}/<class>/")


if __name__ == "__main__":
  main(sys.argv)
