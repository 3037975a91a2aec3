"""Official BiT .npz weight files: fetching (download, cache, checksum), reading
them into a `ResNetV2`, and writing one back.

Official files (`BiT-{S,M}-R*.npz`) hold one array per `ResNetV2` variable under the
same key, so loading is a lookup after stripping the `standardized_conv2d_N` suffix
some files carry. URLs are downloaded once into a cache directory the user controls
(`cache_dir`, else $BIT_CACHE_DIR, else ~/.cache/bit_train) and checked against
`CHECKSUMS` where the file's sha256 is known.
"""

import hashlib
import os
import pickle
import re
import shutil
import urllib.error
import urllib.request
import zipfile

import numpy as np
import tensorflow as tf

from bit_train.errors import UserError
from bit_train.errors import quote
from bit_train.models import resnetv2

# sha256 of weight files, by file name: checked when downloaded, and for local
# files of that name. Files not listed are used unverified.
CHECKSUMS = {
    # experiments/miniature/pretrain.py; bundled in bit_train/models/pretrained/
    "BiT-MNIST-R14x0.25.npz": "82d85cab684a000e89a3a446eb8e9a28bf7a2dfb50a382f74727884d7fecb0b7",
}
_SUFFIX = re.compile(r"standardized_conv2d_\d+")
_UNIT_CONV = re.compile(r"resnet/block(\d)/unit(\d+)/a/standardized_conv2d/kernel")


def cache_dir(path=None):
  return path or os.environ.get("BIT_CACHE_DIR") or os.path.expanduser(
      "~/.cache/bit_train")


def sha256(path):
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
      digest.update(chunk)
  return digest.hexdigest()


def _check_sum(path, name, what, fix):
  """UserError when the file `name` has a known sha256 and `path` does not match."""
  expected = CHECKSUMS.get(name)
  if expected and sha256(path) != expected:
    raise UserError(f"{what} is corrupt: its sha256 is not the known {expected}. {fix}")


def fetch(location, cache=None):
  """A local path for `location` (a path, or an http(s)/gs/file URL, cached once)."""
  if "://" not in location:
    if os.path.isfile(location):
      _check_sum(location, os.path.basename(location), f"model file {location}",
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
    _check_sum(partial, name, f"download of {location}",
               "Try again, or download it by hand.")
  except UserError:
    _remove(partial)
    raise
  os.replace(partial, target)
  return target


def read_npz(location, cache=None):
  """{key: array} from an official .npz file, keys without conv suffixes."""
  path = fetch(location, cache)
  if not os.path.isfile(path):
    raise UserError(f"model file {path} does not exist: check model_path.")
  try:
    data = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError, zipfile.BadZipFile,
          pickle.UnpicklingError) as e:
    raise UserError(f"model file {path} is not a BiT .npz weight file "
                    f"({quote(e)}).") from None
  if not isinstance(data, np.lib.npyio.NpzFile):  # a .npy: one array
    raise UserError(f"model file {path} is not a BiT .npz weight file (it holds a "
                    "single array).")
  with data:
    return {_SUFFIX.sub("standardized_conv2d", key): data[key] for key in data.files}


def arch_of(weights, path):
  """(num_units, width) of the network stored in `weights`."""
  if resnetv2.ROOT not in weights:
    raise UserError(f"model file {path} has no key {resnetv2.ROOT}: not BiT ResNet-v2 "
                    "weights.")
  units = [0, 0, 0, 0]
  for key in weights:
    match = _UNIT_CONV.fullmatch(key)
    if match and 1 <= int(match[1]) <= 4:
      units[int(match[1]) - 1] = max(units[int(match[1]) - 1], int(match[2]))
  return tuple(units), weights[resnetv2.ROOT].shape[-1] / 64


def describe_arch(num_units, width):
  width = f"{width:g}"
  known = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}
  depth = known.get(tuple(num_units), 3 * sum(num_units) + 2)
  return f"R{depth}x{width} (units {'/'.join(map(str, num_units))}, width {width})"


def file_arch(path):
  """(num_units, width) of a local .npz file, reading only its keys and root kernel
  (official files are up to 4 GB); None when it is not a local file yet."""
  if "://" in path or not os.path.isfile(path):
    return None
  try:
    with np.load(path, allow_pickle=False) as data:
      keys = {_SUFFIX.sub("standardized_conv2d", key): key for key in data.files}
      stored = dict.fromkeys(keys)
      if resnetv2.ROOT in keys:
        stored[resnetv2.ROOT] = data[keys[resnetv2.ROOT]]
  except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile):
    return None  # not an .npz: loading it says so
  return arch_of(stored, path)


class NoHead(UserError):
  """An .npz without the classifier head the caller needs. `problem` is the message
  without its fix, for tools whose fix is another than head=new."""

  def __init__(self, path):
    self.problem = f"model file {path} has no head ({resnetv2.HEAD_KERNEL})"
    super().__init__(f"{self.problem}: use head=new.")


def head_classes(weights, path):
  kernel = weights.get(resnetv2.HEAD_KERNEL)
  if kernel is None:
    raise NoHead(path)
  return kernel.shape[-1]


def load_npz_model(location, num_classes, head="new", arch=None, *, cache=None,
                   seed=0, compute_dtype=tf.float32):
  """A `ResNetV2` holding the weights of an official .npz file.

  Args:
    location: local path or URL of the file.
    num_classes: classes of the new head (head="new"), or None / the file's own
      head size (head="keep").
    head: "new" for a zero-initialised head, "keep" for the file's head.
    arch: expected (num_units, width); None takes the file's.
  """
  path = fetch(location, cache)
  weights = read_npz(path)
  found = arch_of(weights, path)
  if arch is not None and (tuple(arch[0]), float(arch[1])) != found:
    raise UserError(f"model file {path} holds {describe_arch(*found)}, not the "
                    f"{describe_arch(*arch)} the config asks for: set model (or "
                    "num_units/width) to the file's architecture.")
  if head == "keep":
    classes = head_classes(weights, path)
    if num_classes not in (None, classes):
      raise UserError(f"head=keep: model file {path} has a head of {classes} classes "
                      f"but the dataset has {num_classes}: use head=new.")
    num_classes = classes
  else:
    weights = {k: v for k, v in weights.items() if not k.startswith("resnet/head/")}
  shapes = resnetv2.param_shapes(*found, num_classes)
  for key, shape in shapes.items():
    if key.startswith("resnet/head/") and head != "keep":
      continue
    if key not in weights:
      raise UserError(f"model file {path} has no key {key}: it is not complete BiT "
                      f"{describe_arch(*found)} weights.")
    if _squeezed(weights[key].shape) != _squeezed(shape):
      raise UserError(f"model file {path}: key {key} has shape "
                      f"{tuple(weights[key].shape)}, expected {shape} for "
                      f"{describe_arch(*found)}.")
  return resnetv2.ResNetV2(*found, num_classes, initial_values=weights, seed=seed,
                           compute_dtype=compute_dtype)


def save_npz(model, path):
  """Writes a native `ResNetV2`'s variables as an official-layout .npz file."""
  tmp = f"{path}.partial-{os.getpid()}.npz"  # np.savez adds .npz to other names
  np.savez(tmp, **{key: var.numpy() for key, var in model.params.items()})
  os.replace(tmp, path)
  return path


def _squeezed(shape):
  """A shape without its 1s: (1, 1, 1, C) and (C,) hold the same GN parameters."""
  return tuple(d for d in shape if d != 1)


def _remove(path):
  if os.path.exists(path):
    os.remove(path)
