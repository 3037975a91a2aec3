"""BiT's weight files: the official .npz layout, one array per network variable.

The keys are the authors' variable names (github.com/google-research/big_transfer,
`bit_tf2/models.py`; the files are at https://storage.googleapis.com/bit_models).
`param_shapes` gives an architecture's keys and shapes in forward order and
`network.ResNetV2` holds one variable per key, so reading a file is a name lookup.
Some files name a conv `standardized_conv2d_N`; it is read without the suffix.

NumPy only: what plans a run (an architecture's shapes, a file's architecture)
imports no TensorFlow.
"""

import os
import re

import numpy as np

from bit_train import reading
from bit_train.errors import UserError
from bit_train.models import registry
from bit_train.models import weights as weight_files

GN_GROUPS = 32
ROOT = "resnet/root_block/standardized_conv2d/kernel"
PRE_HEAD = "resnet"  # its norm: resnet/group_norm/{gamma,beta}
HEAD_KERNEL = "resnet/head/conv2d/kernel"
HEAD_BIAS = "resnet/head/conv2d/bias"


def groups_for(channels):
  """32 groups; tiny test variants with fewer channels get one group per channel."""
  groups = min(GN_GROUPS, channels)
  if channels % groups:
    raise UserError(f"width gives {channels} channels, which Group Norm cannot split "
                    f"into {groups} groups: use a width with 64*width a multiple of 32 "
                    "(or below 32 for tiny test models).")
  return groups


def param_shapes(num_units, width, num_classes):
  """The official .npz keys of an architecture and their shapes, in forward order."""
  if len(num_units) != 4 or min(num_units) < 1:
    raise UserError(f"num_units={tuple(num_units)} must be four positive numbers "
                    "(units per block), e.g. 3/4/6/3 for R50.")
  root = int(64 * width)
  if root < 1:
    raise UserError(f"width={width} is too small: 64*width must be at least 1.")
  shapes = {ROOT: (7, 7, 3, root)}
  cin = root
  for b, units in enumerate(num_units, 1):
    mid = int(64 * width * 2**(b - 1))
    cout = 4 * mid
    for u in range(1, units + 1):
      unit = f"resnet/block{b}/unit{u:02d}"
      _norm_shapes(shapes, f"{unit}/a", cin)
      if u == 1:
        shapes[f"{unit}/a/proj/standardized_conv2d/kernel"] = (1, 1, cin, cout)
      shapes[f"{unit}/a/standardized_conv2d/kernel"] = (1, 1, cin, mid)
      _norm_shapes(shapes, f"{unit}/b", mid)
      shapes[f"{unit}/b/standardized_conv2d/kernel"] = (3, 3, mid, mid)
      _norm_shapes(shapes, f"{unit}/c", mid)
      shapes[f"{unit}/c/standardized_conv2d/kernel"] = (1, 1, mid, cout)
      cin = cout
  _norm_shapes(shapes, PRE_HEAD, cin)
  shapes[HEAD_KERNEL] = (1, 1, cin, num_classes)
  shapes[HEAD_BIAS] = (num_classes,)
  return shapes


def _norm_shapes(shapes, prefix, channels):
  groups_for(channels)
  shapes[f"{prefix}/group_norm/gamma"] = (channels,)
  shapes[f"{prefix}/group_norm/beta"] = (channels,)


# sha256 of weight files, by file name: checked when downloaded, and for local
# files of that name. Files not listed are used unverified.
CHECKSUMS = {
    # experiments/miniature/pretrain.py; bundled in bit_train/models/pretrained/
    "BiT-MNIST-R14x0.25.npz": "82d85cab684a000e89a3a446eb8e9a28bf7a2dfb50a382f74727884d7fecb0b7",
}
_SUFFIX = re.compile(r"standardized_conv2d_\d+")
_UNIT_CONV = re.compile(r"resnet/block(\d)/unit(\d+)/a/standardized_conv2d/kernel")


def read(location, cache=None):
  """{key: array} from an official .npz file, keys without conv suffixes."""
  return _read_fetched(weight_files.fetch(location, CHECKSUMS, cache))


def _read_fetched(path):
  """read_npz of a local path that weight_files.fetch has given (and checked)."""
  _require(path)
  return {_SUFFIX.sub("standardized_conv2d", key): array
          for key, array in reading.read_npz(path, "model file").items()}


def arch_of(weights, path):
  """(num_units, width) of the network stored in `weights`."""
  if ROOT not in weights:
    raise UserError(f"model file {path} has no key {ROOT}: not BiT ResNet-v2 "
                    "weights.")
  units = [0, 0, 0, 0]
  for key in weights:
    match = _UNIT_CONV.fullmatch(key)
    if match and 1 <= int(match[1]) <= 4:
      units[int(match[1]) - 1] = max(units[int(match[1]) - 1], int(match[2]))
  return tuple(units), weights[ROOT].shape[-1] / 64


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
    stored = {_SUFFIX.sub("standardized_conv2d", key): array for key, array in
              reading.read_npz(path, "model file", select=_is_root).items()}
  except UserError:
    return None  # not an .npz: loading it says so
  return arch_of(stored, path)


def check_file(path):
  """What a dry run checks of a local .npz: it exists and is an archive whose root
  kernel reads (only that member's data is read; its checksum is the real run's)."""
  _require(path)
  reading.read_npz(path, "model file", select=_is_root)


def _require(path):
  if not os.path.isfile(path):
    raise UserError(f"model file {path} does not exist: check model_path.")


def _is_root(key):
  return _SUFFIX.sub("standardized_conv2d", key) == ROOT


def head_classes(weights, path):
  kernel = weights.get(HEAD_KERNEL)
  if kernel is None:
    raise registry.NoHead(path, HEAD_KERNEL)
  return kernel.shape[-1]


def checked(location, num_classes, head="new", arch=None, *, cache=None):
  """(arch, num_classes, weights) of an official .npz file, checked against the
  architecture and head asked for; `weights` holds the head only for head="keep".

  Args:
    location: local path or URL of the file.
    num_classes: classes of the new head (head="new"), or None / the file's own
      head size (head="keep").
    head: "new" for a new head, "keep" for the file's head.
    arch: expected (num_units, width); None takes the file's.
  """
  path = weight_files.fetch(location, CHECKSUMS, cache)
  weights = _read_fetched(path)
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
  shapes = param_shapes(*found, num_classes)
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
  return found, num_classes, weights


def save(model, path):
  """Writes a native `ResNetV2`'s variables as an official-layout .npz file."""
  tmp = f"{path}.partial-{os.getpid()}.npz"  # np.savez adds .npz to other names
  np.savez(tmp, **{key: var.numpy() for key, var in model.params.items()})
  os.replace(tmp, path)
  return path


def _squeezed(shape):
  """A shape without its 1s: (1, 1, 1, C) and (C,) hold the same GN parameters."""
  return tuple(d for d in shape if d != 1)
