"""Labels a TFDS example does not hold as one class feature, and images stored in
another range: VTAB-1k's tasks as google-research/task_adaptation defines them
(task_adaptation/data/clevr.py, kitti.py, dsprites.py).

label_key names the label of a TFDS dataset:

  a class label feature   `label`, `label_azimuth`, ...: the feature itself
  FEATURE/C               a class label feature of K classes binned into C:
                          floor(label / (K / C)) (dsprites' `label_x_position/16`,
                          `label_orientation/16`)
  a derived label         computed from other features (DERIVED, by dataset):
    clevr  count_all                 objects in the scene - 3 (8 classes, 3-10 objects)
           closest_object_distance   the smallest depth of the objects' pixel_coords,
                                     cut at 8.0, 8.5, 9.0, 9.5, 10.0 (6 classes)
    kitti  closest_vehicle_distance  the depth (location z) of the nearest car, van
                                     or truck, cut at 8 and 20 m; class 3 when there
                                     is none (4 classes)

IMAGE_SCALE: datasets whose images store 0/1 (dsprites) are scaled to 0/255 like
every other dataset's.
"""

import dataclasses

import numpy as np

from bit_train.errors import UserError
from bit_train.lazy import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Label:
  """How an example's label is made: `fn(example) -> int32` and its classes."""
  fn: callable
  num_classes: int
  class_names: tuple
  about: str  # what the label is, for DatasetFacts.sources


def _bins(value, thresholds):
  """task_adaptation's binning: the index of the last threshold below `value`."""
  return tf.cast(tf.reduce_max(tf.where((np.asarray(thresholds) - value) < 0)), tf.int32)


def _clevr_count(example):
  return tf.size(example["objects"]["size"]) - 3


def _clevr_closest_distance(example):
  depth = tf.reduce_min(example["objects"]["pixel_coords"][:, 2])
  return _bins(depth, [0.0, 8.0, 8.5, 9.0, 9.5, 10.0, 100.0])


def _kitti_closest_vehicle_distance(example):
  objects = example["objects"]
  vehicles = tf.where(objects["type"] < 3)  # Car, Van, Truck
  depth = tf.gather(objects["location"][:, 2], vehicles)
  depth = tf.concat([depth, tf.constant([[1000.0]])], axis=0)  # no vehicle: class 3
  return _bins(tf.reduce_min(depth), [-100.0, 8.0, 20.0, 999.0])


def _named(count):
  return tuple(str(i) for i in range(count))


# dataset (builder name) -> label_key -> Label
DERIVED = {
    "clevr": {
        "count_all": Label(_clevr_count, 8, tuple(f"{n} objects" for n in range(3, 11)),
                           "objects in the scene - 3 (task_adaptation clevr count_all)"),
        "closest_object_distance": Label(
            _clevr_closest_distance, 6, _named(6),
            "closest object's depth in 6 bins (task_adaptation clevr "
            "closest_object_distance)"),
    },
    "kitti": {
        "closest_vehicle_distance": Label(
            _kitti_closest_vehicle_distance, 4, ("< 8 m", "8-20 m", "> 20 m", "none"),
            "closest vehicle's depth in 4 bins (task_adaptation kitti "
            "closest_vehicle_distance)"),
    },
}
IMAGE_SCALE = {"dsprites": 255}  # dataset -> factor taking its pixels to [0, 255]


def derived_label(builder, label_key):
  """The Label that label_key names beyond a plain class feature, or None."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if label_key is None:
    return None
  derived = DERIVED.get(builder.name, {})
  if label_key in derived:
    return derived[label_key]
  feature_key, slash, count = label_key.partition("/")
  if not slash:
    return None
  feature = builder.info.features[feature_key] if feature_key in builder.info.features else None
  if not isinstance(feature, tfds.features.ClassLabel):
    raise UserError(f"label_key={label_key!r}: {feature_key!r} is not a class label "
                    f"feature of {builder.name!r}; FEATURE/C bins a class label.")
  if not count.isdigit() or not 2 <= int(count) <= feature.num_classes:
    raise UserError(f"label_key={label_key!r}: bin {feature_key!r} ({feature.num_classes} "
                    f"classes) into C classes with 2 <= C <= {feature.num_classes}.")
  count = int(count)
  factor = feature.num_classes / count

  def binned(example):
    return tf.cast(tf.math.floordiv(tf.cast(example[feature_key], tf.float32), factor),
                   tf.int32)
  return Label(binned, count, _named(count),
               f"{feature_key} ({feature.num_classes} classes) in {count} bins")


def label_fn(builder, label_key):
  """example -> int32 label: the derived label, or the class feature `label_key`."""
  derived = derived_label(builder, label_key)
  if derived is not None:
    return derived.fn
  return lambda example: tf.cast(example[label_key], tf.int32)


def image_fn(builder, image_key):
  """example -> its encoded image, scaled to [0, 255] (decoded, scaled and encoded
  again as PNG) where the dataset stores another range."""
  scale = IMAGE_SCALE.get(builder.name)
  if scale is None:
    return lambda example: example[image_key]
  return lambda example: tf.io.encode_png(tf.io.decode_png(example[image_key]) * scale)
