"""Datasets as Sources: the facts the plan needs plus (encoded image, label) examples.

`from_config(config)` opens a TFDS dataset (any name, split strings, data_dir,
manual_dir) or an image folder (see folders.py), applies few-shot selection, and
returns a `Source`. Images stay encoded here (JPEG/PNG bytes); preprocess.py decodes
them, so the train stream can cache the small encoded bytes rather than pixels.
"""

import dataclasses
import io
import statistics
import urllib.parse

import numpy as np
import tensorflow as tf

from bit_train.data import catalog
from bit_train.data import folders
from bit_train.errors import UserError
from bit_train.errors import quote

SIZE_SAMPLE = 64  # images read to measure a TFDS dataset's typical size
DOWNLOAD_PROBE_SECONDS = 10  # to connect to a download host before TFDS tries


class Source:
  """A dataset ready to stream.

  Attributes:
    facts: catalog.DatasetFacts (num_examples after few-shot, num_classes,
      image_size, splits, where each fact came from, class_names).
    train_bytes: encoded size of the train examples, None when unknown.
    eval_bytes: the same for the eval examples.
    train_files: (paths, labels) when the train examples are files, which lets
      a stream read them in any order without holding them in memory; else None.
  """

  def __init__(self, facts, train_fn, eval_fn, train_bytes=None, eval_bytes=None,
               train_files=None):
    self.facts = facts
    self._train_fn, self._eval_fn = train_fn, eval_fn
    self.train_bytes, self.eval_bytes = train_bytes, eval_bytes
    self.train_files = train_files

  @property
  def class_names(self):
    return self.facts.class_names

  @property
  def num_classes(self):
    return self.facts.num_classes

  def train_examples(self):
    """Finite tf.data.Dataset of (encoded image: string, label: int32), fixed order."""
    return self._train_fn()

  def eval_examples(self):
    """Finite tf.data.Dataset of (encoded image: string, label: int32), fixed order."""
    return self._eval_fn()


def from_config(config):
  """The Source a config names: `dataset=image_folder` or a TFDS name."""
  if config.dataset == catalog.IMAGE_FOLDER:
    return _folder_source(config)
  return _tfds_source(config)


def few_shot_indices(labels, k, seed, class_names):
  """Indices of exactly k examples of every class, drawn with `seed`, sorted.

  The same seed gives the same examples, and a smaller k a subset of a larger k's.
  A class with fewer than k examples is a UserError naming it and the largest k
  that every class allows.
  """
  labels = np.asarray(labels, int)
  counts = np.bincount(labels, minlength=len(class_names))
  short = [f"{name} ({count})" for name, count in zip(class_names, counts) if count < k]
  if short:
    raise UserError(
        f"examples_per_class={k}, but some classes have fewer training examples: "
        f"{', '.join(short[:10])}{' ...' if len(short) > 10 else ''}; the largest "
        f"examples_per_class every class allows is {counts.min()}.")
  chosen = []
  for c in range(len(class_names)):
    members = np.flatnonzero(labels == c)
    chosen += np.random.default_rng([seed, c]).permutation(members)[:k].tolist()
  return sorted(chosen)


def typical_size(sizes):
  """The median (height, width) of some (height, width) pairs."""
  return (int(statistics.median(h for h, _ in sizes)),
          int(statistics.median(w for _, w in sizes)))


def _describe_sizes(sizes, what):
  """Where a measured size came from, as DatasetFacts.sources says it."""
  heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
  h, w = typical_size(sizes)
  return (f"measuring {what}: median {h}x{w} (heights {min(heights)}-"
          f"{max(heights)}, widths {min(widths)}-{max(widths)})")


# Image folders.


def file_examples(split):
  """(encoded, label) read from the split's files, in the split's order."""
  paths = tf.constant(split.paths, tf.string)
  labels = tf.constant(split.labels, tf.int32)
  return tf.data.Dataset.from_tensor_slices((paths, labels)).map(
      lambda path, label: (tf.io.read_file(path), label),
      num_parallel_calls=tf.data.AUTOTUNE)


def _folder_source(config):
  folder = folders.scan(config.data_dir, config.train_split, config.eval_split,
                        config.holdout_fraction)
  train = folder.train
  if config.examples_per_class is not None:
    train = train.take(few_shot_indices(train.labels, config.examples_per_class,
                                        config.few_shot_seed, folder.class_names))
  origin = f"the class folders in {folder.root}"
  facts = catalog.resolve(
      config, num_examples=len(train.paths), num_classes=len(folder.class_names),
      image_size=typical_size(train.sizes), train_split=folder.train_split,
      eval_split=folder.eval_split, class_names=folder.class_names,
      sources={"num_examples": f"the {len(train.paths)} readable train images in "
                               f"{origin}",
               "num_classes": origin,
               "image_size": _describe_sizes(
                   train.sizes, f"the headers of all {len(train.paths)} train images")})
  return Source(facts, lambda: file_examples(train), lambda: file_examples(folder.eval),
                train.num_bytes, folder.eval.num_bytes,
                train_files=(train.paths, train.labels))


def folder_facts(config):
  """DatasetFacts of an image folder (catalog.describe calls this)."""
  return _folder_source(config).facts


# TFDS datasets.


def _feature_keys(builder):
  """(image key, label key) of a TFDS dataset's features."""
  import tensorflow_datasets as tfds
  features = builder.info.features

  def find(preferred, kind):
    if preferred in features and isinstance(features[preferred], kind):
      return preferred
    keys = [k for k, f in features.items() if isinstance(f, kind)]
    if len(keys) != 1:
      raise UserError(f"dataset {builder.name!r} has no single {kind.__name__} "
                      f"feature to use (features: {', '.join(features)}).")
    return keys[0]
  return (find("image", tfds.features.Image),
          find("label", tfds.features.ClassLabel))


def _check_downloads_can_start(builder, where):
  """A UserError when a host the dataset downloads from does not answer.

  TFDS retries every failed connection with back-off (minutes when offline), so
  each host of the dataset's known URLs is asked once first, through the same
  proxies (requests reads them from the environment).
  """
  import requests
  first_url = {}
  for url in sorted(builder.url_infos or ()):
    if url.startswith(("http://", "https://")):
      first_url.setdefault(urllib.parse.urlsplit(url).netloc, url)
  for host, url in first_url.items():
    try:
      requests.head(url, timeout=DOWNLOAD_PROBE_SECONDS).close()
    except requests.RequestException as e:
      raise UserError(
          f"{builder.name} is not prepared in {where} and cannot be downloaded: {host} "
          f"does not answer ({type(e).__name__}). Prepare it on a machine with "
          f"network access (`tfds build {builder.name} --data_dir=DIR`), copy DIR "
          "here and set data_dir to it.") from None


def _prepare(builder, config):
  """Prepares a TFDS dataset that is not on disk yet; mistakes become UserErrors."""
  import tensorflow_datasets as tfds
  if builder.is_prepared():
    return
  where = f"data_dir={config.data_dir or 'default'}"
  if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
    if not config.manual_dir:
      raise UserError(f"{builder.name} is not prepared in {where} and must be built "
                      "from files you download yourself: set manual_dir=<folder> "
                      f"holding them (see `tfds build {builder.name}`).")
    if not tf.io.gfile.isdir(config.manual_dir):
      raise UserError(f"manual_dir={config.manual_dir!r} is not a folder.")
  else:
    _check_downloads_can_start(builder, where)
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=config.manual_dir))
  except Exception as e:  # noqa: downloads fail in many ways; each is the user's to fix
    first = quote(e)
    raise UserError(f"cannot prepare dataset {builder.name!r} in {where}: {first}") from e


def _read_split(builder, split, image_key, label_key, shuffle_seed=None):
  """(encoded, label) examples of a TFDS split; a split TFDS rejects is a UserError."""
  import tensorflow_datasets as tfds
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed)
  try:
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                            decoders={image_key: tfds.decode.SkipDecoding()},
                            read_config=read_config)
  except (ValueError, KeyError, AssertionError) as e:
    first = quote(e)
    raise UserError(f"split {split!r} of {builder.name!r} is not valid: {first}") from None
  return ds.map(lambda ex: (ex[image_key], tf.cast(ex[label_key], tf.int32)),
                num_parallel_calls=tf.data.AUTOTUNE)


def prepared_tfds(config):
  """The TFDS builder of config.dataset, prepared (from manual_dir) if need be."""
  builder = catalog.tfds_builder(config)
  _prepare(builder, config)
  return builder


def tfds_split(builder, split, label_key=None):
  """(encoded image, int32 label) of one split of a prepared TFDS dataset.

  The label is the dataset's class label, or the feature `label_key` (e.g. a
  Sequence of labels) cast to int32. No train split is needed, so evaluation
  sets such as imagenet_v2 open this way.
  """
  image_key, class_key = _feature_keys(builder)
  return _read_split(builder, split, image_key, label_key or class_key)


def measure_tfds_image_size(builder, split, seed=0):
  """(typical (height, width), how it was measured) from a seeded sample of images.

  Only the image headers are decoded (PIL opens images lazily).
  """
  from PIL import Image
  image_key, label_key = _feature_keys(builder)
  sample = _read_split(builder, split, image_key, label_key, shuffle_seed=seed)
  sizes = []
  for encoded, _ in sample.take(SIZE_SAMPLE).as_numpy_iterator():
    with Image.open(io.BytesIO(encoded)) as image:
      sizes.append(image.size[::-1])
  if not sizes:
    raise UserError(f"split {split!r} of {builder.name!r} has no images.")
  return typical_size(sizes), _describe_sizes(
      sizes, f"the headers of {len(sizes)} images of split {split!r} (seed {seed})")


def _tfds_source(config):
  builder = prepared_tfds(config)
  image_key, label_key = _feature_keys(builder)
  label = builder.info.features[label_key]
  facts = catalog.describe(config)
  if not facts.class_names and label.names:
    facts = dataclasses.replace(facts, class_names=tuple(label.names))
  if facts.num_classes is None:
    facts = dataclasses.replace(facts, num_classes=label.num_classes)

  def read_train():
    return _read_split(builder, facts.train_split, image_key, label_key)

  def read_eval():
    return _read_split(builder, facts.eval_split, image_key, label_key)
  read_eval()  # a bad split string fails now, not when evaluation starts

  if config.examples_per_class is not None:
    labels = np.concatenate([l for _, l in read_train().batch(4096).as_numpy_iterator()])
    chosen = np.zeros(len(labels), bool)
    chosen[few_shot_indices(labels, config.examples_per_class, config.few_shot_seed,
                            facts.class_names or range(facts.num_classes))] = True
    chosen = tf.constant(chosen)
    full_train = read_train

    def read_train():  # noqa: the few-shot subset of the full split, in split order
      return full_train().enumerate().filter(
          lambda i, example: chosen[i]).map(lambda i, example: example)
  else:
    read_train()
  return Source(facts, read_train, read_eval,
                _split_bytes(builder, facts.num_examples),
                _split_bytes(builder, _count(builder, facts.eval_split)))


def _count(builder, split):
  sizes = {name: s.num_examples for name, s in builder.info.splits.items()}
  return catalog.count_split(split, sizes) if sizes else None


def _split_bytes(builder, num_examples):
  """Encoded bytes of num_examples, from the dataset's average; None if unknown."""
  total = sum(s.num_examples for s in builder.info.splits.values())
  if not total or not builder.info.dataset_size or num_examples is None:
    return None
  return int(builder.info.dataset_size) * num_examples // total
