"""The benchmark's baseline: BiT ResNet-v2 written with stock tf_keras layers.

`tf_keras.layers.GroupNormalization` and a `Conv2D` whose kernel is standardised in
its call: the straightforward way to write BiT in Keras 2, which is also how the
authors' TF2 code is built. Same architecture and variable shapes as
`bit_train.models.bit.ResNetV2`, so weights copy across by order.
"""

import tensorflow as tf
import tf_keras

from bit_train.models.bit import network
from bit_train.models.bit import npz

layers = tf_keras.layers


class StandardizedConv2D(layers.Conv2D):
  """Conv2D (no bias) whose kernel is weight-standardised in its call."""

  def call(self, inputs):
    return self.convolution_op(inputs, network.standardize(self.kernel))


def _name(key):
  return key.replace("/", ".")


def _gn_relu(x, channels, prefix):
  x = layers.GroupNormalization(npz.groups_for(channels), epsilon=network.GN_EPS,
                                name=_name(f"{prefix}/group_norm"))(x)
  return layers.ReLU()(x)


def _conv(x, filters, size, prefix, stride=1):
  return StandardizedConv2D(filters, size, stride, use_bias=False,
                            name=_name(f"{prefix}/standardized_conv2d"))(x)


def _unit(x, cin, mid, stride, prefix):
  shortcut = x
  x = _gn_relu(x, cin, f"{prefix}/a")
  if stride > 1 or cin != 4 * mid:  # the projection sees the pre-activated input
    shortcut = _conv(x, 4 * mid, 1, f"{prefix}/a/proj", stride)
  x = _conv(x, mid, 1, f"{prefix}/a")
  x = layers.ZeroPadding2D(1)(_gn_relu(x, mid, f"{prefix}/b"))
  x = _conv(x, mid, 3, f"{prefix}/b", stride)
  x = _conv(_gn_relu(x, mid, f"{prefix}/c"), 4 * mid, 1, f"{prefix}/c")
  return layers.Add()([x, shortcut])


def baseline_resnetv2(num_units, width, num_classes, image_size):
  """A functional tf_keras model: images in [0, 1] -> logits."""
  images = tf_keras.Input((image_size, image_size, 3))
  x = layers.Rescaling(2., offset=-1.)(images)
  x = _conv(layers.ZeroPadding2D(3)(x), int(64 * width), 7, "resnet/root_block", 2)
  x = layers.MaxPool2D(3, 2)(layers.ZeroPadding2D(1)(x))
  cin = int(64 * width)
  for b, units in enumerate(num_units, 1):
    mid = int(64 * width * 2**(b - 1))
    for u in range(units):
      x = _unit(x, cin, mid, 2 if b > 1 and u == 0 else 1,
                f"resnet/block{b}/unit{u + 1:02d}")
      cin = 4 * mid
  x = layers.GlobalAveragePooling2D()(_gn_relu(x, cin, "resnet"))
  logits = layers.Dense(num_classes, kernel_initializer="zeros",
                        name=_name("resnet/head/conv2d"))(x)
  return tf_keras.Model(images, logits)


def copy_weights(native, baseline):
  """Gives the baseline the native model's weights, matched by .npz key."""
  for layer in baseline.layers:
    for var in layer.weights:
      key = f"{layer.name.replace('.', '/')}/{var.name.split('/')[-1].split(':')[0]}"
      var.assign(tf.reshape(native.params[key], var.shape))
