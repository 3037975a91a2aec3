"""VTAB-1k's 19 tasks through the TFDS source, without network: every builder and
version resolves with the pinned tensorflow-datasets, and every task's input path
(its run's config -> source -> labels and preprocessed images) runs on
tfds.testing.mock_data with the real feature spec, giving the label range and image
shape the task must give. The derived labels are checked on hand-made examples."""

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bit_train import hyperrule
from bit_train import specs
from bit_train.data import preprocess
from bit_train.data import sources
from bit_train.data.sources import tfds as tfds_source
from bit_train.data.sources import tfds_labels
from bit_train.errors import UserError
from experiments import plans
from experiments.suites import vtab

# CLEVR: example i has 3 + i objects, the nearest at depth CLEVR_DEPTHS[i].
CLEVR_DEPTHS = [7.5, 8.2, 8.7, 9.2, 9.7, 10.2, 50.0, 8.0]
CLEVR_DISTANCE = [0, 1, 2, 3, 4, 5, 5, 0]  # bins cut at 8.0, 8.5, 9.0, 9.5, 10.0
# KITTI: (type, depth) of each object; types 0-2 are car, van, truck.
KITTI_OBJECTS = [[(0, 5.0), (3, 2.0)], [(1, 10.0)], [(2, 30.0), (5, 1.0)], [(3, 4.0)]]
KITTI_DISTANCE = [0, 1, 2, 3]  # < 8 m, 8-20 m, > 20 m, no vehicle
DSPRITES_X = [0, 1, 2, 31]  # 32 positions in 16 bins: 0, 0, 1, 15
DSPRITES_ORIENTATION = [0, 2, 3, 39]  # 40 orientations in 16 bins of 2.5: 0, 0, 1, 15


def _clevr(i):
  n = 3 + i
  depth = np.full((n, 3), 60.0, np.float32)
  depth[n // 2, 2] = CLEVR_DEPTHS[i]
  return {"image": np.zeros((24, 36, 3), np.uint8), "file_name": f"{i}.png",
          "question_answer": {"question": [], "answer": []},
          "objects": {"color": [0] * n, "material": [0] * n, "shape": [0] * n,
                      "size": [0] * n, "rotation": [0.0] * n,
                      "3d_coords": np.zeros((n, 3), np.float32), "pixel_coords": depth}}


def _kitti(i):
  objects = KITTI_OBJECTS[i]
  n = len(objects)
  location = np.zeros((n, 3), np.float32)
  location[:, 2] = [depth for _, depth in objects]
  return {"image": np.zeros((20, 60, 3), np.uint8), "image/file_name": f"{i}.png",
          "objects": {"type": [t for t, _ in objects], "alpha": [0.0] * n,
                      "bbox": [tfds.features.BBox(0.1, 0.1, 0.5, 0.5)] * n,
                      "dimensions": np.ones((n, 3), np.float32), "location": location,
                      "occluded": [0] * n, "rotation_y": [0.0] * n, "truncated": [0.0] * n}}


def _dsprites(i):
  image = np.zeros((64, 64, 1), np.uint8)
  image[10:20, 10:20] = 1  # dSprites stores its pixels as 0/1
  return {"image": image, "label_orientation": DSPRITES_ORIENTATION[i],
          "label_scale": 0, "label_shape": 0, "label_x_position": DSPRITES_X[i],
          "label_y_position": 0, "value_orientation": 0.0, "value_scale": 0.0,
          "value_shape": 0.0, "value_x_position": 0.0, "value_y_position": 0.0}


def _pets(i):
  """mock_data's random head_bbox can have min > max, which TFDS rejects."""
  return {"image": np.zeros((30, 40, 3), np.uint8), "label": 36 - i, "species": 0,
          "file_name": f"{i}.jpg", "segmentation_mask": np.zeros((30, 40, 1), np.uint8),
          "head_bbox": tfds.features.BBox(0.1, 0.1, 0.5, 0.5)}


MAKERS = {"clevr": (_clevr, len(CLEVR_DEPTHS)), "kitti": (_kitti, len(KITTI_OBJECTS)),
          "dsprites": (_dsprites, len(DSPRITES_X)), "oxford_iiit_pet": (_pets, 4)}
EXPECTED = {"clevr_count": list(range(8)), "clevr_distance": CLEVR_DISTANCE,
            "kitti_distance": KITTI_DISTANCE, "dsprites_location": [0, 0, 1, 15],
            "dsprites_orientation": [0, 0, 1, 15], "oxford_iiit_pet": [36, 35, 34, 33]}


def _hand_made(make, count):
  """mock_data's as_dataset_fn serving `count` examples made by `make`, encoded and
  decoded with the builder's own features (as a prepared dataset would be)."""
  def as_dataset(self, split, decoders=None, read_config=None, **kwargs):
    del split, read_config, kwargs
    features = self.info.features
    rows = [features.encode_example(make(i)) for i in range(count)]
    specs = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype),
                                  features.get_serialized_info())
    ds = tf.data.Dataset.from_generator(lambda: iter(rows), output_signature=specs)
    return ds.map(lambda ex: features.decode_example(ex, decoders=decoders))
  return as_dataset


def _config(task, data_dir):
  """The task's run config as the suite writes it, reading the whole mock split."""
  run = vtab.task_run("BiT-M-R50x1", task, 0)
  split = task.test.split("[")[0]
  flags = [f"--config.data_dir={data_dir}", f"--config.train_split={split}"]
  if task.manual:
    flags.append(f"--config.manual_dir={data_dir}")
  return plans.load_config(run.config, flags)


@pytest.mark.parametrize("task", vtab.TASKS, ids=lambda t: t.name)
def test_builder_version_and_label_resolve_with_the_pinned_tfds(task, tmp_path):
  builder = tfds.builder(task.builder, data_dir=str(tmp_path))
  label_key = tfds_source.label_feature(builder, None if task.label == "label" else task.label)
  derived = tfds_labels.derived_label(builder, label_key)
  classes = derived.num_classes if derived else builder.info.features[label_key].num_classes
  assert classes == task.num_classes
  shape = builder.info.features["image"].shape
  if None not in shape[:2]:
    assert tuple(shape[:2]) == task.image_size


@pytest.mark.parametrize("task", vtab.TASKS, ids=lambda t: t.name)
def test_each_task_input_path_on_mock_data(task, tmp_path, monkeypatch):
  # mock_data replaces TFDS's download, so the check that its hosts answer (a
  # network call) is skipped.
  monkeypatch.setattr(tfds_source, "_check_downloads_can_start", lambda *args: None)
  # mock_data serves examples but leaves the data_dir empty: the dataset is taken as
  # prepared (its metadata is the builder's own, the sizes the task's config).
  monkeypatch.setattr(tfds.core.DatasetBuilder, "is_prepared", lambda self: True)
  dataset = task.builder.split("/")[0].split(":")[0]
  make, count = MAKERS.get(dataset, (None, 6))
  fn = _hand_made(make, count) if make else None
  with tfds.testing.mock_data(num_examples=count, as_dataset_fn=fn):
    config = _config(task, str(tmp_path))
    source = sources.open_source(specs.data_spec(config))
    assert source.facts.num_classes == task.num_classes
    plan = specs.recipe(config).plan(source.facts.num_examples, source.facts.image_size)
    examples = list(source.train_examples().read().take(count).as_numpy_iterator())
  assert len(examples) == count
  labels = [int(label) for _, label in examples]
  assert all(0 <= label < task.num_classes for label in labels), labels
  if task.name in EXPECTED:
    assert labels == EXPECTED[task.name]
  for i, (encoded, _) in enumerate(examples):
    image = preprocess.train_image(encoded, tf.constant([i, 0]), plan.precrop, plan.crop,
                                   plan.flip)
    assert image.shape == (plan.crop, plan.crop, 3)
    assert 0.0 <= float(tf.reduce_min(image)) and float(tf.reduce_max(image)) <= 1.0
    if dataset == "dsprites":  # 0/1 pixels scaled to 0/255: the sprite is white
      assert float(tf.reduce_max(preprocess.eval_image(encoded, plan.crop))) == 1.0
  expected_crop = hyperrule.get_resolution(task.image_size)[1]
  assert plan.crop == expected_crop
  assert plan.precrop == (expected_crop if not task.random_crop else
                          hyperrule.get_resolution(task.image_size)[0])
  assert plan.flip == task.flip


def test_a_version_the_pinned_tfds_lacks_and_a_bad_label_are_one_line(tmp_path):
  config = plans.load_config(
      "transfer:dataset=oxford_iiit_pet:3.*.*,num_examples=1000,"
      f"image_size=224x224,data_dir={tmp_path}")
  with pytest.raises(UserError, match=r"^dataset 'oxford_iiit_pet:3\.\*\.\*': Dataset "
                     r"oxford_iiit_pet cannot be loaded at version 3\.\*\.\*, only: 4\.0\.0"):
    sources.describe(specs.data_spec(config))  # the sizes are given: the builder is checked all the same
  config = plans.load_config(
      f"transfer:dataset=kitti:3.2.0,label_key=closest_car,data_dir={tmp_path},"
      "num_examples=1000,image_size=375x1242")
  with pytest.raises(UserError, match="use one of closest_vehicle_distance, or FEATURE/C"):
    sources.describe(specs.data_spec(config))
  config = plans.load_config(
      f"transfer:dataset=dsprites,label_key=label_x_position/33,"
      f"data_dir={tmp_path},num_examples=1000,image_size=64x64")
  with pytest.raises(UserError, match=r"2 <= C <= 32"):
    sources.describe(specs.data_spec(config))
