"""BiT: the ResNet-v2 family in one file: the network, its weight files, its names.

The network is the BiT paper's (Kolesnikov et al., arXiv 1912.11370) and the authors'
code's (github.com/google-research/big_transfer, `bit_tf2/models.py`):

  root:  pad 3, 7x7/2 std-conv, pad 1 (zeros), 3x3/2 max pool
  block1..4 of pre-activation bottleneck units (strides 1, 2, 2, 2):
         a = GN, ReLU -> 1x1 conv; b = GN, ReLU, pad 1 -> 3x3 conv (stride);
         c = GN, ReLU -> 1x1 conv; the projection shortcut (unit01) takes the
         pre-activated input (after a's GN+ReLU)
  head:  GN, ReLU, global average pool (= pre-logits), dense (1x1 conv)

`ResNetV2` is a plain `tf.Module` holding one `tf.Variable` per official .npz key, so
the variable paths are the .npz keys and reading a weight file is a name lookup
(`load_npz`; some files name a conv `standardized_conv2d_N`, read without the
suffix). Images are float32 NHWC in [0, 1] (any height and width), mapped to
[-1, 1] inside like the TF Hub modules. The forward pass runs in `compute_dtype`
(e.g. bfloat16); variables, normalisation statistics, the head and the logits stay
float32.

The names (`BiT-{S,M}-R50x1` ...) are the published models, with their TF Hub
modules and .npz files, and the miniature BiT this project pre-trains itself
(experiments/miniature/pretrain.py) and ships in the package, so a machine without
network runs the whole flow; its TF Hub modules are made from its .npz on first use
(`hub.bundled_module`).
"""

import functools
import os
import re

import numpy as np
import tensorflow as tf

from bit_train import reading
from bit_train.errors import UserError
from bit_train.models import registry
from bit_train.models import weights as weight_files

# ---------------------------------------------------------------------------
# The network.

GN_GROUPS = 32
GN_EPS = 1e-5
WS_EPS = 1e-10
ROOT = "resnet/root_block/standardized_conv2d/kernel"
PRE_HEAD = "resnet"  # its norm: resnet/group_norm/{gamma,beta}
HEAD_KERNEL = "resnet/head/conv2d/kernel"
HEAD_BIAS = "resnet/head/conv2d/bias"


def standardize(kernel):
  """Weight Standardisation: per output channel over (kh, kw, cin)."""
  return _standardize(tf.convert_to_tensor(kernel))


# Weight Standardisation and Group Norm carry their own gradient, the textbook
# normalisation gradient in a few ops: autodiff of their forward formulas builds a
# graph several times larger (each reduce_mean's gradient is a reshape, a tile and
# a division), and building and optimising the step's graph is most of the time to
# the first step. Both are tf.functions, traced once per shape and shared by every
# layer of that shape (benchmarks/bench_first_step.py measures the effect).
@tf.function(autograph=False)
@tf.custom_gradient
def _standardize(kernel):
  axes = [0, 1, 2]
  centred = kernel - tf.reduce_mean(kernel, axes, keepdims=True)
  inv_std = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), axes, keepdims=True)
                          + WS_EPS)
  w = centred * inv_std

  def grad(dw):
    # d/dk of (k - mean(k)) / std(k): inv_std * (dw - mean(dw) - w * mean(dw * w)).
    return inv_std * (dw - tf.reduce_mean(dw, axes, keepdims=True)
                      - w * tf.reduce_mean(dw * w, axes, keepdims=True))
  return w, grad


def group_norm_relu(x, gamma, beta, groups=GN_GROUPS):
  """ReLU(GroupNorm(x)) for NHWC `x`, statistics in float32.

  Statistics reduce over H, W per channel first and then over each group's
  channels, with var = E[x^2] - E[x]^2, and the normalisation and affine apply as
  one per-(example, channel) scale and offset: fewer passes over the activations
  and no 5-D reductions than reshaping to groups and calling tf.nn.moments
  (benchmarks/bench_models.py compares them). float32 statistics keep the
  one-pass variance accurate for BiT's activations.
  """
  return _group_norm_relu(groups)(x, tf.convert_to_tensor(gamma),
                                  tf.convert_to_tensor(beta))


def _per_channel(t, dtype=tf.float32):
  """[B, G, C/G] -> [B, 1, 1, C] in `dtype`."""
  return tf.cast(tf.reshape(t, [-1, 1, 1, t.shape[1] * t.shape[2]]), dtype)


def group_norm_relu_forward(x, gamma, beta, groups):
  """ReLU(GroupNorm(x)), and the values its gradient reuses. Differentiable by
  autodiff too (benchmarks/bench_group_norm.py times that against the model's)."""
  channels = x.shape[-1]
  per_group = channels // groups

  def group_mean(t):  # [B, C] -> [B, G, 1]
    return tf.reduce_mean(tf.reshape(t, [-1, groups, per_group]), 2, keepdims=True)

  x32 = tf.cast(x, tf.float32)
  mean = group_mean(tf.reduce_mean(x32, [1, 2]))
  var = group_mean(tf.reduce_mean(tf.square(x32), [1, 2])) - tf.square(mean)
  inv_std = tf.math.rsqrt(tf.maximum(var, 0.) + GN_EPS)
  gamma_g = tf.reshape(gamma, [groups, per_group])
  scale = inv_std * gamma_g  # y = relu(x * scale + offset), per (example, channel)
  offset = tf.reshape(beta, [groups, per_group]) - mean * scale
  y = tf.nn.relu(x * _per_channel(scale, x.dtype) + _per_channel(offset, x.dtype))
  return y, (x32, mean, inv_std, gamma_g, scale)


@functools.lru_cache(maxsize=None)
def _group_norm_relu(groups):
  """ReLU(GroupNorm(x)) with `groups` groups, and its gradient (see above)."""

  @tf.function(autograph=False)
  @tf.custom_gradient
  def gn_relu(x, gamma, beta):
    y, (x32, mean, inv_std, gamma_g, scale) = group_norm_relu_forward(x, gamma, beta,
                                                                      groups)

    def grad(dy):
      channels = x.shape[-1]
      per_group = channels // groups
      dz = tf.raw_ops.ReluGrad(gradients=dy, features=y)
      dz32 = tf.cast(dz, tf.float32)
      # Sums over H, W of the gradients of the per-channel scale and offset.
      d_offset = tf.reshape(tf.reduce_sum(dz32, [1, 2]), [-1, groups, per_group])
      d_scale = tf.reshape(tf.reduce_sum(dz32 * x32, [1, 2]), [-1, groups, per_group])
      d_scale -= mean * d_offset  # offset depends on scale too
      d_gamma = tf.reshape(tf.reduce_sum(d_scale * inv_std, 0), [channels])
      d_beta = tf.reshape(tf.reduce_sum(d_offset, 0), [channels])
      # Through the group statistics, means over n values each: var = E[x^2] -
      # mean^2 gives d_var = -k / 2 with k = d_inv_std * inv_std^3; with d_mean =
      # mean * k + what the offset passes back, x gets (d_mean - x * k) / n.
      k = tf.reduce_sum(d_scale * gamma_g, 2, keepdims=True) * tf.square(inv_std) * inv_std
      d_mean = mean * k - tf.reduce_sum(d_offset * scale, 2, keepdims=True)
      inv_n = 1. / (per_group * _pixels(x))  # values per group and example
      ones = tf.ones([1, per_group])  # broadcasts [B, G, 1] to every channel
      # The statistics' share in float32: its two terms nearly cancel.
      through_stats = (_per_channel(ones * (d_mean * inv_n))
                       - x32 * _per_channel(ones * (k * inv_n)))
      return (dz * _per_channel(scale, x.dtype) + tf.cast(through_stats, x.dtype),
              d_gamma, d_beta)
    return y, grad

  return gn_relu


def _pixels(x):
  """H * W of NHWC `x`: a number when the shape says it, else a tensor."""
  if x.shape[1] is not None and x.shape[2] is not None:
    return float(x.shape[1] * x.shape[2])
  return tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)


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


def _initial_value(key, shape, seed):
  """Random std-conv kernels (WS removes their scale), GN identity, zero head."""
  if key.endswith("/gamma"):
    return tf.ones(shape)
  if key.endswith(("/beta", "/bias")) or key == HEAD_KERNEL:
    return tf.zeros(shape)
  return tf.random.stateless_normal(shape, seed=seed)


class ResNetV2(tf.Module):
  """BiT ResNet-v2 of any `num_units` (4-tuple) and width factor.

  `initial_values` maps .npz keys to arrays (e.g. official weights); other keys are
  initialised randomly from `seed`, and the head (kernel and bias) with zeros.
  """

  def __init__(self, num_units=(3, 4, 6, 3), width=1, num_classes=1000, *,
               initial_values=None, seed=0, compute_dtype=tf.float32, name="resnet"):
    super().__init__(name=name)
    self.num_units = tuple(int(u) for u in num_units)
    self.width = width
    self.num_classes = int(num_classes)
    self.compute_dtype = tf.as_dtype(compute_dtype)
    initial_values = initial_values or {}
    self.params = {}
    for i, (key, shape) in enumerate(param_shapes(self.num_units, width,
                                                  self.num_classes).items()):
      value = initial_values.get(key)
      if value is None:
        value = _initial_value(key, shape, seed=[seed, i])
      self.params[key] = tf.Variable(tf.cast(tf.reshape(value, shape), tf.float32),
                                     name=key)

  @property
  def arch(self):
    """(num_units, width): the architecture as the config's num_units/width say it."""
    return self.num_units, float(self.width)

  @property
  def head_variables(self):
    return self.params[HEAD_KERNEL], self.params[HEAD_BIAS]

  @property
  def feature_dim(self):
    return self.params[HEAD_KERNEL].shape[2]

  def _kernel(self, key):
    """The weight-standardised kernel `key`, in the compute dtype."""
    return tf.cast(standardize(self.params[key]), self.compute_dtype)

  def _conv(self, x, key, stride=1, pad=0):
    """Zero-pads by `pad`, then a VALID std-conv.

    Stride 1 with a (2*pad+1)-wide kernel is exactly "SAME"; otherwise an explicit
    tf.pad. Explicit padding inside tf.nn.conv2d is avoided: its gradients take a
    slower path on CPUs.
    """
    kernel = self._kernel(key)
    if pad and stride == 1 and kernel.shape[0] == 2 * pad + 1:
      return tf.nn.conv2d(x, kernel, 1, "SAME")
    if pad:
      x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.nn.conv2d(x, kernel, stride, "VALID")

  def _norm(self, x, prefix):
    channels = x.shape[-1]
    return group_norm_relu(x, self.params[f"{prefix}/group_norm/gamma"],
                           self.params[f"{prefix}/group_norm/beta"],
                           groups_for(channels))

  def _unit(self, x, prefix, stride):
    shortcut = x
    x = self._norm(x, f"{prefix}/a")
    proj = f"{prefix}/a/proj/standardized_conv2d/kernel"
    if proj in self.params:  # the projection sees the pre-activated input
      shortcut = self._conv(x, proj, stride)
    x = self._conv(x, f"{prefix}/a/standardized_conv2d/kernel")
    x = self._conv(self._norm(x, f"{prefix}/b"), f"{prefix}/b/standardized_conv2d/kernel",
                   stride, pad=1)
    x = self._conv(self._norm(x, f"{prefix}/c"), f"{prefix}/c/standardized_conv2d/kernel")
    return x + shortcut

  def pre_logits(self, images):
    """float32 features [B, C] of float32 images [B, H, W, 3] in [0, 1]."""
    x = tf.cast(images, self.compute_dtype) * 2. - 1.
    x = self._conv(x, ROOT, stride=2, pad=3)
    x = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])  # zeros, not -inf
    x = tf.nn.max_pool2d(x, 3, 2, "VALID")
    for b, units in enumerate(self.num_units, 1):
      for u in range(1, units + 1):
        x = self._unit(x, f"resnet/block{b}/unit{u:02d}", 2 if b > 1 and u == 1 else 1)
    x = self._norm(x, PRE_HEAD)
    return tf.reduce_mean(tf.cast(x, tf.float32), axis=[1, 2])

  def __call__(self, images, training=False):
    """float32 logits [B, num_classes]; `training` changes nothing (no BN, no dropout)."""
    del training
    kernel = self.params[HEAD_KERNEL]
    return tf.matmul(self.pre_logits(images),
                     tf.reshape(kernel, kernel.shape[2:])) + self.params[HEAD_BIAS]


# ---------------------------------------------------------------------------
# Weight files: the official .npz layout, one array per ResNetV2 variable.

# sha256 of weight files, by file name: checked when downloaded, and for local
# files of that name. Files not listed are used unverified.
CHECKSUMS = {
    # experiments/miniature/pretrain.py; bundled in bit_train/models/pretrained/
    "BiT-MNIST-R14x0.25.npz": "82d85cab684a000e89a3a446eb8e9a28bf7a2dfb50a382f74727884d7fecb0b7",
}
_SUFFIX = re.compile(r"standardized_conv2d_\d+")
_UNIT_CONV = re.compile(r"resnet/block(\d)/unit(\d+)/a/standardized_conv2d/kernel")


def read_npz(location, cache=None):
  """{key: array} from an official .npz file, keys without conv suffixes."""
  return _read_fetched(weight_files.fetch(location, CHECKSUMS, cache))


def _read_fetched(path):
  """read_npz of a local path that weight_files.fetch has given (and checked)."""
  if not os.path.isfile(path):
    raise UserError(f"model file {path} does not exist: check model_path.")
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


def _is_root(key):
  return _SUFFIX.sub("standardized_conv2d", key) == ROOT


def head_classes(weights, path):
  kernel = weights.get(HEAD_KERNEL)
  if kernel is None:
    raise registry.NoHead(path, HEAD_KERNEL)
  return kernel.shape[-1]


def load_npz(location, num_classes, head="new", arch=None, *, cache=None,
                   seed=0, compute_dtype=tf.float32):
  """A `ResNetV2` holding the weights of an official .npz file.

  Args:
    location: local path or URL of the file.
    num_classes: classes of the new head (head="new"), or None / the file's own
      head size (head="keep").
    head: "new" for a zero-initialised head, "keep" for the file's head.
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
  return ResNetV2(*found, num_classes, initial_values=weights, seed=seed,
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


# ---------------------------------------------------------------------------
# The family and its names.

ARCH_FIELDS = ("num_units", "width")  # the config fields that name an architecture
# Units per block and width factor of each published architecture.
ARCHS = {
    "R50x1": ((3, 4, 6, 3), 1), "R50x3": ((3, 4, 6, 3), 3),
    "R101x1": ((3, 4, 23, 3), 1), "R101x3": ((3, 4, 23, 3), 3),
    "R152x2": ((3, 8, 36, 3), 2), "R152x4": ((3, 8, 36, 3), 4),
}
HUB_ARCHS = ("R50x1", "R50x3", "R101x1", "R101x3", "R152x4")  # no R152x2 modules
HUB_ROOT = "https://tfhub.dev/google/bit"
NPZ_ROOT = "https://storage.googleapis.com/bit_models"


def arch(overrides, named, name):
  """(num_units, width) from the ARCH_FIELDS in `overrides` (a field's None: the
  named model's), else the named model's; None if neither says (an .npz file's
  own architecture is then used)."""
  units, width = overrides.get("num_units"), overrides.get("width")
  if named is not None:
    units = named.arch[0] if units is None else units
    width = named.arch[1] if width is None else width
  if units is None and width is None:
    return None
  if units is None or width is None:
    raise UserError(f"model {name!r} is not a known BiT name: set both num_units "
                    "and width (e.g. num_units=3/4/6/3,width=1).")
  return tuple(units), float(width)


def location(named, source, head, num_classes=None):
  """Where a named BiT's weights are for a source and head choice, or None.

  head="new" uses the feature-vector module or the upstream .npz; head="keep" the
  classifier whose head has `num_classes` classes (ILSVRC-2012 unless 21843 asks
  for BiT-M's ImageNet-21k head).
  """
  where = named.weights
  if source == "hub":
    if head == "new":
      return where.get("hub_features")
    return where.get("hub_21k" if num_classes == 21843 else "hub_classifier")
  if head == "keep" and num_classes == 1000 and where.get("npz_ilsvrc2012"):
    return where["npz_ilsvrc2012"]
  return where.get("npz")


RESNET_V2 = registry.register_family(registry.Family(
    name="ResNet-v2", names=f"BiT-{{S,M}}-{{{','.join(ARCHS)}}}",
    arch_fields=ARCH_FIELDS,
    build=lambda arch, num_classes, **kw: ResNetV2(*arch, num_classes, **kw),
    load=load_npz, arch=arch, file_arch=file_arch,
    describe=lambda arch: describe_arch(*arch), location=location))


def _published(upstream, name):
  """BiT-S (pre-trained on ILSVRC-2012) or BiT-M (ImageNet-21k) at one size."""
  units, width = ARCHS[name]
  hub = f"{HUB_ROOT}/{upstream.lower()}-{name.lower()}" if name in HUB_ARCHS else None
  imagenet21k = upstream == "M"
  where = {"npz": f"{NPZ_ROOT}/BiT-{upstream}-{name}.npz"}
  if hub:
    where.update(hub_features=f"{hub}/1",
                 hub_classifier=f"{hub}/ilsvrc2012_classification/1")
  if imagenet21k:
    where["npz_ilsvrc2012"] = f"{NPZ_ROOT}/BiT-M-{name}-ILSVRC2012.npz"
    if hub:
      where["hub_21k"] = f"{hub}/imagenet21k_classification/1"
  return registry.NamedModel(
      name=f"BiT-{upstream}-{name}", family=RESNET_V2.name, arch=(units, float(width)),
      upstream_classes=21843 if imagenet21k else 1000, weights=where)


def _bundled(name, num_units, width, upstream_classes):
  handle = f"{registry.BUNDLED_HANDLE}{name}"
  return registry.NamedModel(
      name=name, family=RESNET_V2.name, arch=(num_units, float(width)),
      upstream_classes=upstream_classes, bundled=True, weights={
          "hub_features": f"{handle}/feature_vector",
          "hub_classifier": f"{handle}/classification",
          "npz": os.path.join(registry.PRETRAINED_DIR, f"{name}.npz")})


for _upstream in ("S", "M"):
  for _arch in ARCHS:
    registry.register(_published(_upstream, _arch))
# The miniature BiT: pre-trained by this project on 4,500 real MNIST digits (see
# experiments/miniature/pretrain.py and the .json beside the weights).
registry.register(_bundled("BiT-MNIST-R14x0.25", (1, 1, 1, 1), 0.25, 10))
