"""Weight files for any family: a local path as is, a URL downloaded once into a cache.

URLs (http, https, gs, file) are downloaded into a cache directory the user controls
(`cache_dir`, else $BIT_CACHE_DIR, else ~/.cache/bit_train), written whole before
they take their name, and checked against the family's known sha256 sums where a
file's is known. A family reads the file it gets (BiT: `bit.npz.read`).
"""

import hashlib
import os
import shutil
import urllib.error
import urllib.request

from bit_train.errors import UserError
from bit_train.errors import quote
from bit_train.lazy import tensorflow as tf


def cache_dir(path=None):
  return path or os.environ.get("BIT_CACHE_DIR") or os.path.expanduser(
      "~/.cache/bit_train")


def sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _check_sum(path, expected, what, fix):
  """UserError when `expected` is a sha256 and the file at `path` does not match."""
  if expected and sha256(path) != expected:
    raise UserError(f"{what} is corrupt: its sha256 is not the known {expected}. {fix}")


def fetch(location, checksums=None, cache=None):
  """A local path for `location` (a path, or an http(s)/gs/file URL, cached once).

  `checksums` maps file names to their sha256: a local file or a download of that
  name must match.
  """
  checksums = checksums or {}
  if "://" not in location:
    if os.path.isfile(location):
      _check_sum(location, checksums.get(os.path.basename(location)),
                 f"model file {location}",
                 "Restore it (git checkout, or reinstall bit-train).")
    return location
  name = os.path.basename(location.split("?")[0])
  target = os.path.join(cache_dir(cache), name)
  if os.path.exists(target):
    return target
  os.makedirs(os.path.dirname(target), exist_ok=True)
  partial = f"{target}.partial-{os.getpid()}"
  try:
    if location.startswith("gs://"):
      tf.io.gfile.copy(location, partial, overwrite=True)
    else:
      with urllib.request.urlopen(location) as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
  except (OSError, urllib.error.URLError, tf.errors.OpError) as e:
    _remove(partial)
    raise UserError(f"cannot download {location} ({quote(e)}): download it by "
                    "hand and set model_path to the local file.") from None
  try:
    _check_sum(partial, checksums.get(name), f"download of {location}",
               "Try again, or download it by hand.")
  except UserError:
    _remove(partial)
    raise
  os.replace(partial, target)
  return target


def _remove(path):
  if os.path.exists(path):
    os.remove(path)
