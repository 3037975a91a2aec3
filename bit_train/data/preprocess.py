"""Image preprocessing of the BiT-HyperRule: encoded bytes -> float32 [0, 1] RGB.

Train: decode, resize to precrop x precrop (aspect ratio not kept), random crop
crop x crop, random left-right flip. Eval: resize straight to crop x crop.
Randomness is stateless: the same seed gives the same crop and flip, whatever the
number of parallel calls, so a seeded stream is reproducible.
"""

import tensorflow as tf


def decode(encoded):
  """JPEG/PNG/GIF/BMP/WebP bytes -> uint8 [height, width, 3].

  Grayscale is repeated to three channels, alpha is dropped, CMYK JPEGs are
  converted, and an animated GIF gives its first frame.
  """
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image.set_shape([None, None, 3])
  return image


def _to_unit_range(image):
  # Bilinear resizing interpolates, so values already stay within [0, 255].
  return tf.clip_by_value(image / 255.0, 0.0, 1.0)


def train_image(encoded, seed, precrop, crop):
  """Training view: resize to precrop, random crop to crop, random flip.

  Args:
    encoded: scalar string tensor, the encoded image.
    seed: int tensor of shape [2], the stateless seed of this example.
    precrop: size the image is resized to before cropping.
    crop: size of the random square crop.
  Returns:
    float32 [crop, crop, 3] in [0, 1].
  """
  crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  image = tf.image.resize(decode(encoded), [precrop, precrop])
  image = tf.image.stateless_random_crop(image, [crop, crop, 3], crop_seed)
  image = tf.image.stateless_random_flip_left_right(image, flip_seed)
  return _to_unit_range(image)


def eval_resize(images, crop):
  """Evaluation view of decoded image(s) with values in [0, 255] (one image or a
  batch): float32 crop x crop in [0, 1], resized without cropping."""
  return _to_unit_range(tf.image.resize(images, [crop, crop]))


def eval_image(encoded, crop):
  """Evaluation view: float32 [crop, crop, 3] in [0, 1], resized without cropping."""
  return eval_resize(decode(encoded), crop)
