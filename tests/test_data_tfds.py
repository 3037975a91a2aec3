"""TFDS sources: split strings, class names, measured sizes, few-shot, bad names/splits."""

import dataclasses
import time
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from bit_train import config as bit_config
from bit_train import hyperrule
from bit_train import specs
from bit_train.data import pipeline
from bit_train.data import sources
from bit_train.data.sources import tfds as tfds_source
from bit_train.errors import UserError

from helpers import TRAIN_LABELS, TinyShapes, tfds_config, tiny_shapes_sizes
from helpers import TINY_SHAPES_CLASSES as CLASSES


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  TinyShapes(data_dir=str(root)).download_and_prepare()
  return str(root)


def labels_of(dataset):
  return [int(label) for _, label in dataset.as_numpy_iterator()]


def test_split_strings_select_the_examples_tfds_would(data_dir):
  source = sources.for_training(specs.data_spec(tfds_config(
      dataset="tiny_shapes", data_dir=data_dir, train_split="train[:50%]",
      eval_split="test+train[50%:]")))
  direct = tfds.builder("tiny_shapes", data_dir=data_dir).as_dataset(split="train[:50%]")
  assert labels_of(source.train_examples().read()) == [int(e["label"]) for e in direct]
  assert len(labels_of(source.eval_examples().read())) == 15 + 30
  assert source.facts.num_examples == 30
  assert source.class_names == tuple(CLASSES)
  assert source.facts.num_classes == 3


def test_unknown_image_size_is_measured_from_a_seeded_sample(data_dir):
  facts = sources.describe(specs.data_spec(tfds_config(dataset="tiny_shapes", data_dir=data_dir)))
  sizes = tiny_shapes_sizes(len(TRAIN_LABELS), 0)
  # 64 sampled of 60: the whole split, so the median is the split's median.
  assert facts.image_size == (int(np.median([h for h, _ in sizes])),
                              int(np.median([w for _, w in sizes])))
  assert "measuring" in facts.sources["image_size"]
  assert facts == sources.describe(specs.data_spec(tfds_config(dataset="tiny_shapes", data_dir=data_dir)))


def test_few_shot_from_tfds_is_exact_and_deterministic(data_dir):
  def few_shot(seed):
    source = sources.for_training(specs.data_spec(tfds_config(
        dataset="tiny_shapes", data_dir=data_dir, examples_per_class=4,
        few_shot_seed=seed)))
    examples = list(source.train_examples().read().as_numpy_iterator())
    assert source.facts.num_examples == len(examples) == 12
    assert np.bincount([label for _, label in examples]).tolist() == [4, 4, 4]
    return [encoded for encoded, _ in examples]
  assert few_shot(0) == few_shot(0)
  assert few_shot(0) != few_shot(5)


def test_a_split_tfds_rejects_is_a_user_error(data_dir):
  for split in ("bogus", "train[:200%]"):
    with pytest.raises(UserError, match="split"):
      sources.for_training(specs.data_spec(tfds_config(dataset="tiny_shapes", data_dir=data_dir,
                                      eval_split=split)))


def test_unknown_name_and_missing_manual_dir_are_user_errors(tmp_path):
  with pytest.raises(UserError, match="unknown dataset 'cifar11'"):
    sources.for_training(specs.data_spec(tfds_config(dataset="cifar11", data_dir=str(tmp_path))))
  with pytest.raises(UserError, match="manual_dir"):
    sources.for_training(specs.data_spec(tfds_config(dataset="imagenet2012", data_dir=str(tmp_path))))


def test_known_datasets_get_the_authors_splits_including_pets_and_flowers():
  for name, splits in [("cifar10", ("train[:98%]", "test")),
                       ("oxford_iiit_pet", ("train[:90%]", "test")),
                       ("oxford_flowers102", ("train", "test")),
                       ("imagenet2012", ("train[:99%]", "validation"))]:
    facts = sources.describe(specs.data_spec(tfds_config(dataset=name)))
    assert (facts.train_split, facts.eval_split) == splits


def test_cifar10_through_mock_data_streams_encoded_images_and_names(monkeypatch):
  # mock_data replaces TFDS's download, so the check that its hosts answer (a
  # request to the real host) is replaced too: tests never touch the network.
  monkeypatch.setattr(tfds_source, "_check_downloads_can_start", lambda *args: None)
  with tfds.testing.mock_data(num_examples=12):
    source = sources.for_training(specs.data_spec(tfds_config(dataset="cifar10")))
    examples = list(source.train_examples().read().as_numpy_iterator())
  assert len(examples) == 12
  assert all(encoded[:4] == b"\x89PNG" for encoded, _ in examples)
  assert len(source.class_names) == source.facts.num_classes == 10
  assert source.facts.image_size == (32, 32)


def test_a_tfds_stream_too_big_to_cache_resumes_by_reading_at_most_one_epoch(data_dir):
  # The global seed the trainer sets for seed=0: tf.data's shuffle used to fail
  # under it (comparing the epoch's seed tensor as a Python bool).
  tf.random.set_seed(0)
  source = sources.for_training(specs.data_spec(tfds_config(dataset="tiny_shapes", data_dir=data_dir)))
  n = source.facts.num_examples
  reads = []
  train = source.train_examples()

  def counted():
    def count(label):
      reads.append(1)
      return label
    return train.read().map(
        lambda encoded, label: (encoded, tf.py_function(count, [label], tf.int32)))
  # Too big to cache, and TFDS gives no files: read in order.
  streamed = dataclasses.replace(train, read=counted, num_bytes=1 << 50)
  plan = hyperrule.plan(n, (40, 40), batch_size=6, precrop=24, crop=16)
  stream = lambda skip: pipeline.train_dataset(  # noqa: E731
      streamed, plan, seed=1, skip=skip)
  # n batches of 6: six epochs.
  labels = np.concatenate([l for _, l in stream(0).take(n).as_numpy_iterator()])
  epochs = labels.reshape(6, n)
  assert all(np.bincount(e).tolist() == [n // 3] * 3 for e in epochs)
  assert len({e.tobytes() for e in epochs}) == 6  # reshuffled every epoch
  del reads[:]
  skip = 5 * n + 6
  first = next(iter(stream(skip)))[1].numpy()
  assert np.array_equal(first, labels[skip:skip + 6])
  assert len(reads) < 2 * n  # one epoch and what the stream reads ahead, not 5


def fake_builder(features=(), splits=()):
  info = types.SimpleNamespace(features=dict(features), splits={s: None for s in splits})
  return types.SimpleNamespace(name="fake", info=info)


@pytest.mark.parametrize("splits,expected", [
    (("train", "validation", "test"), "test"), (("train", "validation"), "validation"),
    (("unlabelled",), "unlabelled")])
def test_the_default_eval_split_is_test_then_validation_then_the_only_split(
    splits, expected, monkeypatch):
  source = tfds_source.TfdsSource(specs.data_spec(tfds_config(dataset="not_in_the_table")))
  monkeypatch.setattr(source, "builder", lambda prepare=True: fake_builder(splits=splits))
  assert source.default_eval_split() == expected
  monkeypatch.setattr(source, "builder", lambda prepare=True: fake_builder(
      splits=("train", "extra")))
  with pytest.raises(UserError, match="choose the one to evaluate with eval_split"):
    source.default_eval_split()


def test_the_label_is_label_key_else_label_else_the_only_class_label():
  label, other = tfds.features.ClassLabel(num_classes=2), tfds.features.ClassLabel(
      num_classes=3)
  real = tfds.features.Sequence(tfds.features.ClassLabel(num_classes=3))
  assert tfds_source.label_feature(fake_builder({"label": label, "b": other})) == "label"
  assert tfds_source.label_feature(fake_builder({"a": other, "real": real})) == "a"
  assert tfds_source.label_feature(fake_builder({"a": label, "b": other}), "b") == "b"
  assert tfds_source.label_feature(fake_builder({"a": label, "real": real}),
                                   "real") == "real"
  with pytest.raises(UserError, match="no single ClassLabel.*name one with label_key"):
    tfds_source.label_feature(fake_builder({"a": label, "b": other}))
  with pytest.raises(UserError, match="label_key='c' is not a label of .*: use one of a, "
                     "b, or FEATURE/C to bin a class label"):
    tfds_source.label_feature(fake_builder({"a": label, "b": other}), "c")


def test_unprepared_tfds_dataset_fails_fast_when_downloads_cannot_start(
    tmp_path, monkeypatch):
  # A proxy nobody listens on: no download can start, and nothing leaves the machine.
  for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
    monkeypatch.setenv(name, "http://127.0.0.1:9")
  for name in ("NO_PROXY", "no_proxy"):
    monkeypatch.delenv(name, raising=False)
  config = bit_config.base_config()
  config.dataset, config.data_dir = "mnist", str(tmp_path)
  start = time.monotonic()
  with pytest.raises(UserError, match=r"cannot be downloaded.*tfds build mnist"):
    sources.for_training(specs.data_spec(config))
  assert time.monotonic() - start < 30  # not minutes of retries
