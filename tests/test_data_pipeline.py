"""Preprocessing statistics, the train and eval streams, and MixUp."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from bit_train import config as bit_config
from bit_train import hyperrule
from bit_train import mixup
from bit_train import specs
from bit_train.data import pipeline
from bit_train.data import preprocess
from bit_train.data import sources

from helpers import encode, random_image, write_folder
from helpers import ROOT


def in_memory_source(images, labels):
  """Examples of encoded images held in memory."""
  encoded = tf.constant([encode(image) for image in images])
  labels = tf.constant(labels, tf.int32)
  return sources.Examples(
      name="memory", split="train", class_names=tuple("abcd"),
      read=lambda: tf.data.Dataset.from_tensor_slices((encoded, labels)),
      num_examples=len(images), num_bytes=1)


def random_source(count, size=(40, 48), seed=0):
  rng = np.random.default_rng(seed)
  return in_memory_source([random_image(rng, *size) for _ in range(count)],
                          [i % 4 for i in range(count)])


def small_plan(num_examples, batch_size=8, batch_split=1, precrop=40, crop=32):
  return hyperrule.plan(num_examples, (40, 48), batch_size=batch_size,
                        batch_split=batch_split, precrop=precrop, crop=crop)


def many_views(image, count, precrop, crop, seed=0, flip=True):
  """`count` training views of one image, as numpy [count, crop, crop, 3]."""
  encoded = tf.constant(encode(image))
  views = tf.data.Dataset.range(count).map(lambda i: preprocess.train_image(
      encoded, tf.stack([tf.constant(seed, tf.int64), i]), precrop, crop, flip))
  return np.stack(list(views.as_numpy_iterator()))


@pytest.mark.parametrize("flip", [True, False])
def test_flip_happens_about_half_the_time_or_never_when_off(flip):
  pixels = np.zeros((40, 40, 3), np.uint8)
  pixels[:, 20:] = 255  # dark left half, bright right half
  views = many_views(Image.fromarray(pixels), 400, 40, 32, flip=flip)
  flipped = views[:, :, :4].mean(axis=(1, 2, 3)) > views[:, :, -4:].mean(axis=(1, 2, 3))
  if flip:
    assert 0.4 < flipped.mean() < 0.6
  else:
    assert not flipped.any()


def test_crop_positions_cover_every_offset_uniformly():
  rows = np.repeat(np.arange(40, dtype=np.uint8)[:, None] * 6, 40, axis=1)
  image = Image.fromarray(np.stack([rows] * 3, axis=-1))
  views = many_views(image, 400, 40, 32)  # resize 40 -> 40 keeps the rows exact
  offsets = np.rint(views[:, 0, 0, 0] * 255 / 6).astype(int)
  assert set(offsets) == set(range(40 - 32 + 1))
  assert abs(offsets.mean() - 4) < 0.6
  assert np.array_equal(views, many_views(image, 400, 40, 32))  # seeded


def test_every_view_is_a_crop_of_the_resized_image_or_its_mirror():
  # The flip is applied before resizing (fewer ops); it must still give exactly
  # the crops of the precrop-resized image, mirrored or not.
  image = random_image(np.random.default_rng(3), 30, 36)
  resized = tf.image.resize(np.asarray(image), [40, 40]).numpy() / 255
  crops = [resized[y:y + 32, x:x + 32] for y in range(9) for x in range(9)]
  candidates = np.stack(crops + [c[:, ::-1] for c in crops])
  views = many_views(image, 300, 40, 32)
  gaps = np.abs(views[:, None] - candidates[None]).max(axis=(2, 3, 4))
  best = gaps.argmin(axis=1)
  assert gaps.min(axis=1).max() < 1e-5
  assert 0.4 < (best >= len(crops)).mean() < 0.6  # mirrored about half the time


def test_pixel_values_map_onto_exactly_zero_to_one():
  # Scaling multiplies by a rounded 1/255: 255 must still give exactly 1.0.
  values = tf.constant(np.linspace(0, 255, 100_001), tf.float32)
  unit = preprocess._to_unit_range(values).numpy()  # pylint: disable=protected-access
  assert unit[0] == 0.0 and unit[-1] == 1.0 and unit.max() == 1.0
  assert np.all(np.diff(unit) >= 0)


def test_train_stream_shapes_value_range_and_determinism():
  source = random_source(20)
  plan = small_plan(20)
  take = lambda seed: list(  # noqa: E731
      pipeline.train_dataset(source, plan, seed=seed).take(6).as_numpy_iterator())
  batches = take(0)
  for images, labels in batches:
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.float32
    assert labels.shape == (8,) and labels.dtype == np.int32
    assert 0.0 <= images.min() and images.max() <= 1.0
  # 6 batches of 8 over 20 examples: the stream repeats, every epoch shuffled.
  labels = np.concatenate([l for _, l in batches])
  assert np.bincount(labels[:20], minlength=4).tolist() == [5] * 4
  assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, take(0)))
  assert not np.array_equal(batches[0][0], take(1)[0][0])


@pytest.mark.parametrize("block", [10_000, 4])  # the epoch in one block, or many
def test_every_epoch_is_a_permutation_whether_cached_read_from_files_or_streamed(
    tmp_path, monkeypatch, block):
  monkeypatch.setattr(pipeline, "SHUFFLE_BLOCK", block)
  root = write_folder(tmp_path, {"a": 6, "b": 6, "c": 6}, size=(20, 20))
  config = bit_config.base_config()
  config.update(dataset="image_folder", data_dir=root, holdout_fraction=0.2)
  folder = sources.for_training(specs.data_spec(config))
  n = folder.facts.num_examples
  # Too big to cache and no files: read in order through a shuffle buffer.
  train = folder.train_examples()
  in_order = dataclasses.replace(train, num_bytes=1 << 50, files=None)
  for source, cache_bytes in [(train, None), (train, 0), (in_order, None)]:
    batches = pipeline.train_dataset(source, small_plan(n, batch_size=3, precrop=20,
                                                        crop=16), cache_bytes=cache_bytes)
    labels = np.concatenate([l for _, l in batches.take(2 * n // 3).as_numpy_iterator()])
    for epoch in (labels[:n], labels[n:]):
      assert np.bincount(epoch).tolist() == [n // 3] * 3
    assert not np.array_equal(labels[:n], labels[n:])  # reshuffled
    resumed = pipeline.train_dataset(source, small_plan(n, batch_size=3, precrop=20,
                                                        crop=16),
                                     cache_bytes=cache_bytes, skip=n)
    assert np.array_equal(next(iter(resumed))[1], labels[n:n + 3])


def test_a_resumed_stream_continues_exactly_from_a_checkpoint_or_a_skip(tmp_path):
  source = random_source(200)
  dataset = pipeline.train_dataset(source, small_plan(200), seed=3)
  iterator = iter(dataset)
  for _ in range(30):  # past the first epoch
    next(iterator)
  path = tf.train.Checkpoint(data=iterator).save(str(tmp_path / "ckpt"))
  expected = [next(iterator) for _ in range(3)]
  resumed = iter(pipeline.train_dataset(source, small_plan(200), seed=3))
  tf.train.Checkpoint(data=resumed).restore(path)
  for (images, labels), (want_images, want_labels) in zip(
      [next(resumed) for _ in range(3)], expected):
    assert np.array_equal(labels, want_labels) and np.array_equal(images, want_images)
  saved = sum(f.stat().st_size for f in tmp_path.iterdir())
  assert saved < 100_000  # a position, not the images
  skipped = pipeline.train_dataset(source, small_plan(200), seed=3, skip=30 * 8)
  for (images, labels), (want_images, want_labels) in zip(skipped.take(3), expected):
    assert np.array_equal(labels, want_labels) and np.array_equal(images, want_images)


def test_train_stream_batches_per_replica_and_shards_per_worker():
  source = random_source(16)
  plan = small_plan(16, batch_size=16, batch_split=2)  # micro-batch of 8
  context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1,
                                       num_replicas_in_sync=4)
  images, labels = next(iter(pipeline.train_dataset(source, plan, context)))
  assert images.shape[0] == 2  # 8 per micro-batch over 4 replicas
  for _, labels in pipeline.train_dataset(source, plan, context).take(8):
    assert set(labels.numpy()) <= {1, 3}  # worker 1 reads every other example


@pytest.mark.parametrize("count,batch_size", [(10, 4), (8, 4), (3, 8)])
def test_eval_keeps_every_example_with_padding_and_mask(count, batch_size):
  source = random_source(count)
  plan = small_plan(count)
  seen = []
  for images, labels, mask in pipeline.eval_dataset(source, plan.crop, batch_size):
    assert images.shape == (batch_size, 32, 32, 3) and mask.shape == (batch_size,)
    real = mask.numpy().astype(bool)
    assert np.all(real[:real.sum()]) and not np.any(images.numpy()[~real])
    seen += labels.numpy()[real].tolist()
  assert seen == [i % 4 for i in range(count)]


def test_eval_over_workers_counts_every_example_once():
  source, plan = random_source(11), small_plan(11)
  total = 0
  for worker in range(2):
    context = tf.distribute.InputContext(2, worker, 2)
    total += sum(float(mask.numpy().sum()) for _, _, mask in
                 pipeline.eval_dataset(source, plan.crop, 4, context))
  assert total == 11


def test_the_eval_stream_is_not_autotuned():
  """Each evaluation deletes its iterator, which with tf.data autotuning waits idle
  for the autotuner's next wake-up: up to 9 s at the end of a 20 s evaluation
  (docs/performance.md, "The loop against its bare step"). Timing is a benchmark's job; this
  guards the setting that removed the wait."""
  source, plan = random_source(5), small_plan(5)
  assert pipeline.eval_dataset(source, plan.crop, 4).options().autotune.enabled is False


def test_mixup_lambda_follows_beta_and_is_a_function_of_seed_and_step():
  lams = np.array([float(mixup.sample_lambda(0.1, 0, step)) for step in range(300)])
  assert np.all((0 <= lams) & (lams <= 1)) and len(set(lams)) > 250
  assert 0.4 < lams.mean() < 0.6  # Beta(a, a) is symmetric around 1/2
  assert np.mean((lams < 0.1) | (lams > 0.9)) > 0.6  # small alpha: mostly near 0 or 1
  assert float(mixup.sample_lambda(0.1, 0, 7)) == float(mixup.sample_lambda(0.1, 0, 7))
  assert float(mixup.sample_lambda(0.1, 0, 7)) != float(mixup.sample_lambda(0.1, 1, 7))
  assert float(mixup.sample_lambda(0.0, 0, 7)) == 1.0


def test_mix_pairs_each_example_with_the_reversed_batch():
  rng = np.random.default_rng(0)
  images = tf.constant(rng.random((4, 5, 5, 3)), tf.float32)
  onehot = tf.one_hot([0, 1, 2, 1], 3)
  lam = mixup.sample_lambda(0.1, 3, 11)
  mixed_images, mixed_labels = mixup.mix(images, onehot, lam)
  lam = float(lam)
  np.testing.assert_allclose(mixed_images, lam * images + (1 - lam) * images[::-1],
                             rtol=1e-6)
  np.testing.assert_allclose(mixed_labels[0], lam * onehot[0] + (1 - lam) * onehot[3])
  np.testing.assert_allclose(tf.reduce_sum(mixed_labels, 1), 1.0, rtol=1e-6)
  unmixed = mixup.mix(images, onehot, mixup.sample_lambda(0.0, 3, 11))
  assert np.array_equal(unmixed[0], images) and np.array_equal(unmixed[1], onehot)


def test_one_lambda_is_shared_by_replicas_and_micro_batches():
  # A fresh process: logical CPU devices must be set before TensorFlow starts.
  script = """
import json
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from bit_train import mixup
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

@tf.function
def train_step(step):
  lam = mixup.sample_lambda(0.1, 5, step)  # once per global step, as the trainer does
  seen = []
  for _ in range(2):  # two micro-batches of a batch split, on every replica
    seen.append(strategy.run(lambda lam: tf.identity(lam), args=(lam,)))
  own = strategy.run(lambda: mixup.sample_lambda(0.1, 5, step))  # drawn per replica
  return lam, seen + [own]

lam, seen = train_step(tf.constant(3, tf.int64))
values = [float(v) for s in seen for v in strategy.experimental_local_results(s)]
print(json.dumps({"step": float(lam), "replicas": values}))
"""
  result = subprocess.run([sys.executable, "-c", script], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  record = json.loads(result.stdout.strip().splitlines()[-1])
  assert len(record["replicas"]) == 6  # 2 replicas x (2 micro-batches + 1 own draw)
  assert set(record["replicas"]) == {record["step"]}
  assert 0 < record["step"] < 1
