"""BiT's network: ResNet-v2 with Group Norm and Weight Standardisation, in TensorFlow.

The network is the BiT paper's (Kolesnikov et al., arXiv 1912.11370) and the authors'
code's (github.com/google-research/big_transfer, `bit_tf2/models.py`):

  root:  pad 3, 7x7/2 std-conv, pad 1 (zeros), 3x3/2 max pool
  block1..4 of pre-activation bottleneck units (strides 1, 2, 2, 2):
         a = GN, ReLU -> 1x1 conv; b = GN, ReLU, pad 1 -> 3x3 conv (stride);
         c = GN, ReLU -> 1x1 conv; the projection shortcut (unit01) takes the
         pre-activated input (after a's GN+ReLU)
  head:  GN, ReLU, global average pool (= pre-logits), dense (1x1 conv)

`ResNetV2` is a plain `tf.Module` holding one `tf.Variable` per official .npz key
(npz.py), so the variable paths are the .npz keys. Images are float32 NHWC in
[0, 1] (any height and width), mapped to [-1, 1] inside like the TF Hub modules.
The forward pass runs in `compute_dtype` (e.g. bfloat16); variables, normalisation
statistics, the head and the logits stay float32.
"""

import functools

import tensorflow as tf

from bit_train.models.bit import npz
from bit_train.models.bit.npz import GN_GROUPS, HEAD_BIAS, HEAD_KERNEL, PRE_HEAD, ROOT
from bit_train.models.bit.npz import groups_for

GN_EPS = 1e-5
WS_EPS = 1e-10


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
  channels, and the normalisation and affine apply as one per-(example, channel)
  scale and offset: fewer passes over the activations and no 5-D reductions than
  reshaping to groups and calling tf.nn.moments (benchmarks/bench_models.py
  compares them).

  No float32 copy of a bfloat16 activation is made: TensorFlow's CPU reductions
  of bfloat16 accumulate in float32 and round only their result, so a bfloat16
  `x` is centred on its channels' (rounded) means first and the squares summed
  about them (two passes: the rounded sums then carry no cancellation), and the
  gradient's sums reduce the bfloat16 tensors the same way. float32 sums are
  exact enough for one pass (var = E[x^2] - E[x]^2).
  """
  return _group_norm_relu(groups)(x, tf.convert_to_tensor(gamma),
                                  tf.convert_to_tensor(beta))


def _per_channel(t, dtype=tf.float32):
  """[B, G, C/G] -> [B, 1, 1, C] in `dtype`."""
  return tf.cast(tf.reshape(t, [-1, 1, 1, t.shape[1] * t.shape[2]]), dtype)


def _per_group_channel(t, groups):
  """[B, 1, 1, C] or [B, C] in any dtype -> float32 [B, G, C/G]."""
  return tf.reshape(tf.cast(t, tf.float32), [-1, groups, t.shape[-1] // groups])


def group_norm_relu_forward(x, gamma, beta, groups):
  """ReLU(GroupNorm(x)), and the values its gradient reuses. Differentiable by
  autodiff too (benchmarks/bench_group_norm.py times that against the model's)."""
  per_group = x.shape[-1] // groups
  mean_c = tf.reduce_mean(x, [1, 2], keepdims=True)  # per (example, channel)
  if x.dtype == tf.float32:
    centred, shift = x, tf.zeros([1, 1, 1])
    mean_c = _per_group_channel(mean_c, groups)
  else:  # the statistics of x - shift, shift = the channel's mean rounded to x's dtype
    centred, shift = x - mean_c, _per_group_channel(mean_c, groups)
    # plus what the rounding left over: the channel's mean to float32's precision
    mean_c = shift + _per_group_channel(tf.reduce_mean(centred, [1, 2]), groups)
  # E[(x - shift)^2] per channel, then the group's variance about its mean.
  # (EuclideanNorm would sum the squares in one pass, but XLA has no kernel for it.)
  sq_c = _per_group_channel(tf.reduce_mean(tf.square(centred), [1, 2]), groups)
  mean = tf.reduce_mean(mean_c, 2, keepdims=True)  # [B, G, 1]
  shift_off = shift - mean
  var = tf.reduce_mean(sq_c + 2. * shift_off * (mean_c - shift) + tf.square(shift_off),
                       2, keepdims=True)
  inv_std = tf.math.rsqrt(tf.maximum(var, 0.) + GN_EPS)
  gamma_g = tf.reshape(gamma, [groups, per_group])
  scale = inv_std * gamma_g  # y = relu(x * scale + offset), per (example, channel)
  offset = tf.reshape(beta, [groups, per_group]) - mean * scale
  y = tf.nn.relu(x * _per_channel(scale, x.dtype) + _per_channel(offset, x.dtype))
  return y, (centred, shift_off, inv_std, gamma_g, scale)


@functools.lru_cache(maxsize=None)
def _group_norm_relu(groups):
  """ReLU(GroupNorm(x)) with `groups` groups, and its gradient (see above)."""

  @tf.function(autograph=False)
  @tf.custom_gradient
  def gn_relu(x, gamma, beta):
    y, (centred, shift_off, inv_std, gamma_g, scale) = group_norm_relu_forward(
        x, gamma, beta, groups)

    def grad(dy):
      channels = x.shape[-1]
      per_group = channels // groups
      dz = tf.raw_ops.ReluGrad(gradients=dy, features=y)
      # Sums over H, W of dz and of dz * x_hat, x_hat = (centred + shift_off) * inv_std:
      # the gradients of beta and gamma, per example.
      d_beta_b = _per_group_channel(tf.reduce_sum(dz, [1, 2]), groups)
      d_gamma_b = inv_std * (_per_group_channel(tf.reduce_sum(dz * centred, [1, 2]),
                                                groups) + shift_off * d_beta_b)
      d_gamma = tf.reshape(tf.reduce_sum(d_gamma_b, 0), [channels])
      d_beta = tf.reshape(tf.reduce_sum(d_beta_b, 0), [channels])
      # The textbook gradient, d_x_hat = dz * gamma over n values per group:
      # dx = inv_std * (d_x_hat - mean(d_x_hat) - x_hat * mean(d_x_hat * x_hat)),
      # as dz * scale - centred * k - (per-channel constant).
      inv_n = 1. / (per_group * _pixels(x))
      mean_d = tf.reduce_sum(gamma_g * d_beta_b, 2, keepdims=True) * inv_n
      k = (tf.square(inv_std) * inv_n
           * tf.reduce_sum(gamma_g * d_gamma_b, 2, keepdims=True))
      ones = tf.ones([1, per_group])  # broadcasts [B, G, 1] to every channel
      return (dz * _per_channel(scale, x.dtype)
              - centred * _per_channel(ones * k, x.dtype)
              - _per_channel(ones * (inv_std * mean_d + k * shift_off), x.dtype),
              d_gamma, d_beta)
    return y, grad

  return gn_relu


def _pixels(x):
  """H * W of NHWC `x`: a number when the shape says it, else a tensor."""
  if x.shape[1] is not None and x.shape[2] is not None:
    return float(x.shape[1] * x.shape[2])
  return tf.cast(tf.shape(x)[1] * tf.shape(x)[2], tf.float32)


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
    for i, (key, shape) in enumerate(npz.param_shapes(self.num_units, width,
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



def load_npz(location, num_classes, head="new", arch=None, *, cache=None,
             seed=0, compute_dtype=tf.float32):
  """A `ResNetV2` holding the weights of an official .npz file (arguments as
  npz.checked's)."""
  found, num_classes, weights = npz.checked(location, num_classes, head, arch,
                                            cache=cache)
  return ResNetV2(*found, num_classes, initial_values=weights, seed=seed,
                  compute_dtype=compute_dtype)
