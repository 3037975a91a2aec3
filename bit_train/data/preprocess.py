"""Image preprocessing of the BiT-HyperRule: encoded bytes -> float32 [0, 1] RGB.

Train: decode, resize to precrop x precrop (aspect ratio not kept), random crop
crop x crop, random left-right flip. Eval: resize straight to crop x crop.
Randomness is stateless: the same seed gives the same crop and flip, whatever the
number of parallel calls, so a seeded stream is reproducible.
"""

from bit_train.lazy import tensorflow as tf


def decode(encoded):
  """JPEG/PNG/GIF/BMP/WebP bytes -> uint8 [height, width, 3].

  Grayscale is repeated to three channels, alpha is dropped, CMYK JPEGs are
  converted, and an animated GIF gives its first frame.
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _to_unit_range(image):
  # Bilinear resizing (no antialiasing) interpolates between neighbours, so values
  # stay within [0, 255]. Multiplying is cheaper than dividing, and float32 255 * (1/255) rounds to exactly 1.0, so values stay
  # within [0, 1] (rounding is monotonic).
  return image * (1 / 255.0)


def train_image(encoded, seed, precrop, crop, flip=True):
  """Training view: resize to precrop, random crop to crop, random left-right flip.

  Every op here runs once per image, and on small images the per-op cost is most
  of the work (benchmarks/bench_data.py), so the view takes few ops: one draw
  gives both crop offsets and the flip, and the flip is applied to the decoded
  uint8 image before resizing. Half-pixel bilinear resizing commutes with a
  mirror, and the crop offset is uniform, so this is the same distribution of
  views as flipping the crop.

  Args:
    encoded: scalar string tensor, the encoded image.
    seed: int tensor of shape [2], the stateless seed of this example.
    precrop: size the image is resized to before cropping.
    crop: size of the random square crop.
    flip: False leaves every image unmirrored (the plan's `flip`).
  Returns:
    float32 [crop, crop, 3] in [0, 1].
  """
  offsets = precrop - crop + 1
  # Draws in [0, 2 * offsets): halving gives a uniform offset, parity a fair flip.
  draw = tf.random.stateless_uniform([3], seed, 0, 2 * offsets, tf.int32)
  image = decode(encoded)
  if flip:
    image = tf.reverse(image, tf.range(1, 1 + draw[2] % 2))  # axis [1] or none
  image = tf.image.resize(image, [precrop, precrop])
  top_left = draw // 2 * [1, 1, 0]  # (top, left, channel 0)
  image = tf.slice(image, top_left, [crop, crop, 3])
  return _to_unit_range(image)


def eval_resize(images, crop):
  """Evaluation view of decoded image(s) with values in [0, 255] (one image or a
  batch): float32 crop x crop in [0, 1], resized without cropping."""
  return _to_unit_range(tf.image.resize(images, [crop, crop]))


def eval_image(encoded, crop):
  """Evaluation view: float32 [crop, crop, 3] in [0, 1], resized without cropping."""
  return eval_resize(decode(encoded), crop)
