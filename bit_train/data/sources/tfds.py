"""TFDS datasets as a DataSource: any name, split strings, data_dir, manual_dir.

The rules of this kind, each in one place:

  facts             TFDS metadata on disk, else the authors' table (KNOWN) when the
                    dataset is not prepared yet (the dry run), else an error;
  image size        image_size given by hand, else the metadata's fixed image
                    shape, else the table, else measured from the headers of 64
                    images of a seeded sample of the split (`_image_size`);
  label             label_key when set (a class feature, a binned one or a label
                    derived from other features: tfds_labels.py), else the
                    ClassLabel feature `label`, else the dataset's only ClassLabel
                    feature (`label_feature`);
  default eval split the authors' eval split for a tabled dataset, else `test`, else
                    `validation`, else the only split (`default_eval_split`);
  multi-label       a `real_label` feature (imagenet2012_real) holds ReaL labels.

The builder is made once per source and prepared (from manual_dir, or downloaded)
the first time data is read.
"""

import dataclasses
import difflib
import functools
import io
import types
import urllib.parse

from bit_train.data.sources import base
from bit_train.data.sources import tfds_labels
from bit_train.errors import UserError
from bit_train.errors import quote
from bit_train.lazy import tensorflow as tf

SIZE_SAMPLE = 64  # images read to measure a dataset's typical size
DOWNLOAD_PROBE_SECONDS = 10  # to connect to a download host before TFDS tries
MULTI_LABEL_KEY = "real_label"  # imagenet2012_real's ReaL labels
EVAL_SPLITS = ("test", "validation")  # the default eval split, in this order


@dataclasses.dataclass(frozen=True)
class Known:
  """A dataset from the authors' table: split sizes, image size, default splits."""
  split_sizes: dict
  num_classes: int
  image_size: tuple
  train_split: str
  eval_split: str


# Split sizes as TFDS prepares them; image sizes from the authors' table. Pets and
# Flowers are in the rule but were missing from the authors' split table.
KNOWN = {
    "cifar10": Known({"train": 50_000, "test": 10_000}, 10, (32, 32),
                     "train[:98%]", "test"),
    "cifar100": Known({"train": 50_000, "test": 10_000}, 100, (32, 32),
                      "train[:98%]", "test"),
    "oxford_iiit_pet": Known({"train": 3_680, "test": 3_669}, 37, (224, 224),
                             "train[:90%]", "test"),
    "oxford_flowers102": Known({"train": 1_020, "validation": 1_020, "test": 6_149},
                               102, (224, 224), "train", "test"),
    "imagenet2012": Known({"train": 1_281_167, "validation": 50_000}, 1000,
                          (224, 224), "train[:99%]", "validation"),
}


class TfdsSource(base.DataSource):
  """A TFDS dataset; `spec.dataset` is its name (`name/config:version` too)."""

  def __init__(self, spec, read=True):
    super().__init__(spec, read)
    self._builder = None
    self._prepared = False
    self.known = KNOWN.get(spec.dataset)

  def builder(self, prepare=True):
    """The dataset's builder, made once; prepared first when data is to be read."""
    if self._builder is None:
      self._builder = tfds_builder(self.spec)
    if prepare and self.read and not self._prepared:
      _prepare(self._builder, self.spec)
      self._prepared = True
    return self._builder

  def _fingerprint(self):
    """The dataset's name, config and version, and the split strings."""
    return {"tfds": self.builder().info.full_name, "train_split": self.facts.train_split,
            "eval_split": self.eval_split()}

  def default_eval_split(self):
    if self.known:
      return self.known.eval_split
    splits = list(self.builder().info.splits) if self.read else []
    if not splits:  # nothing on disk to ask (the dry run)
      return EVAL_SPLITS[0]
    for split in EVAL_SPLITS:
      if split in splits:
        return split
    if len(splits) == 1:
      return splits[0]
    name = self.spec.dataset
    raise UserError(f"dataset {name!r} has splits {', '.join(sorted(splits))}: choose "
                    f"the one to evaluate with eval_split (or {name}@<split>).")

  def shared_with_train(self):
    """Split strings select examples by position: their overlap, counted on the
    split sizes the facts came from (the table's in a dry run); when no sizes are
    known, only the same string counts."""
    train, evaluated = self.facts.train_split, self.eval_split()
    if self.read and self.builder().is_prepared():
      sizes = {name: s.num_examples for name, s in self.builder().info.splits.items()}
    else:  # a dry run reads no builder for this; a dataset described by hand has none
      sizes = self.known.split_sizes if self.known else None
    if not sizes:
      return (1, 1) if train == evaluated else None
    return shared_examples(evaluated, train, sizes), count_split(evaluated, sizes)

  @property
  def multilabel_key(self):
    features = self.builder().info.features
    return MULTI_LABEL_KEY if MULTI_LABEL_KEY in features else None

  def _examples(self, split, label_key):
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    builder = self.builder()
    image_key = _image_key(builder)
    label_key = label_feature(builder, label_key or self.spec.label_key)
    derived = tfds_labels.derived_label(builder, label_key)
    feature = None if derived else builder.info.features[label_key]
    multilabel = isinstance(feature, tfds.features.Sequence)
    class_names = derived.class_names if derived else tuple(
        getattr(getattr(feature, "feature", feature), "names", ()))
    _read_split(builder, split, image_key, label_key)  # a bad split fails now

    def read():
      examples = _read_split(builder, split, image_key, label_key)
      if not multilabel:
        return examples
      # Images without a label are left out; the labels become a multi-hot row.
      return examples.filter(lambda image, labels: tf.size(labels) > 0).map(
          lambda image, labels: (image, tf.reduce_max(
              tf.one_hot(labels, len(class_names), dtype=tf.int32), axis=0)))
    count = _count(builder, split)
    return base.Examples(
        name=f"{self.spec.dataset}@{split}", split=split, class_names=class_names,
        read=read, num_examples=None if multilabel else count,
        num_bytes=_split_bytes(builder, count), multilabel=multilabel,
        image_size=lambda: self._image_size(split))

  def _image_size(self, split, measure=True):
    """((height, width), where it came from); (None, None) when unknown."""
    builder = self.builder(prepare=False) if self.read or not self.known else None
    if builder is not None and builder.is_prepared():
      image = builder.info.features[_image_key(builder)]
      shape = getattr(image, "shape", None)
      if shape and None not in shape[:2]:
        return tuple(shape[:2]), f"TFDS metadata in {builder.data_dir}"
    if self.known:
      return self.known.image_size, "the authors' table of image sizes"
    if measure and builder is not None and builder.is_prepared():
      return _measure_image_size(builder, split, label_feature(
          builder, self.spec.label_key), self.spec.seed)
    return None, None

  def _find_facts(self):
    spec, known, name = self.spec, self.known, self.spec.dataset
    sources = {}
    sizes, num_classes, class_names = {}, None, ()
    train_split = spec.train_split or (known.train_split if known else "train")
    described = spec.num_examples is not None and spec.image_size is not None
    # A TFDS name's version and label resolve, also when the config gives the sizes;
    # a dataset described by hand under a name TFDS does not know is planned from
    # its description alone (a dry run; reading it fails as an unknown dataset).
    if self.read or not described or is_tfds_name(name):
      builder = self.builder()
      label_key = label_feature(builder, spec.label_key)
      derived = tfds_labels.derived_label(builder, label_key)
      if derived:
        sources["label"] = f"label_key={label_key}: {derived.about}"
    if self.read or not described:
      # The features are the builder's own, prepared or not.
      label = derived or builder.info.features[label_key]
      class_names = tuple(getattr(label, "class_names", None) or getattr(label, "names", ()))
      if builder.is_prepared():
        sizes = {split: s.num_examples for split, s in builder.info.splits.items()}
        num_classes = getattr(label, "num_classes", None)
        origin = f"TFDS metadata in {builder.data_dir}"
        sources.update(split_sizes=origin, num_classes=origin)
      elif known:
        sizes, num_classes = known.split_sizes, known.num_classes
        origin = ("the table of known split sizes (dataset not prepared in "
                  f"data_dir={spec.data_dir or 'default'})")
        sources.update(split_sizes=origin, num_classes=origin)
      else:
        raise UserError(
            f"dataset {name!r} is not prepared in data_dir="
            f"{spec.data_dir or 'default'} and its size is not in the table: prepare "
            f"it with `tfds build {name}` or describe it with num_examples and "
            "image_size.")
    image_size, origin = (None, None)
    if spec.image_size is None:  # else resolve() takes the given one
      image_size, origin = self._image_size(train_split)
    if origin:
      sources["image_size"] = origin
    num_examples = None
    if spec.num_examples is None:
      num_examples = count_split(train_split, sizes)
      sources["num_examples"] = f"split {train_split!r} of {sizes}"
    eval_split = self.eval_split()
    return base.resolve(spec, num_examples=num_examples, num_classes=num_classes,
                        image_size=image_size, train_split=train_split,
                        eval_split=eval_split, sources=sources, class_names=class_names)


def tfds_builder(spec):
  """The TFDS builder for spec.dataset; an unknown name is a UserError."""
  return _builder(spec.dataset, spec.data_dir)


@functools.lru_cache(maxsize=64)  # a suite's dry run asks for each task's ~36 times
def _builder(dataset, data_dir):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    return tfds.builder(dataset, data_dir=data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError):  # not a name TFDS knows
    raise UserError(f"unknown dataset {dataset!r}: give a TFDS name or "
                    "dataset=image_folder with data_dir=<folder>."
                    f"{did_you_mean(dataset)}") from None
  except AssertionError as e:  # a version this TFDS does not have
    raise UserError(f"dataset {dataset!r}: {version_problem(e)}") from None


def version_problem(error):
  """TFDS's reason a builder cannot be made ('... cannot be loaded at version 3.*.*,
  only: 4.0.0'), as one line with the fix."""
  text = quote(error, "all")
  reason = text[text.find("Dataset "):] if "Dataset " in text else text
  return (f"{reason.rstrip('.')}: name a version this tensorflow-datasets has "
          "(name:VERSION) or install the one that has it.")


def is_tfds_name(name):
  """Whether `name` (`name/config:version` too) may be a TFDS dataset: a registered
  name, or one in a community namespace (`huggingface:mnist`), which TFDS resolves."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    parsed, _ = tfds.core.naming.parse_builder_name_kwargs(name)
  except ValueError:  # e.g. a path
    return False
  return parsed.namespace is not None or parsed.name in _builder_names()


@functools.cache
def _builder_names():
  """The datasets the installed TFDS registers. Without the community datasets:
  listing those reads remote indexes through TensorFlow's file system, and a
  community name has a namespace anyway."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return tuple(tfds.list_builders(with_community_datasets=False))


def did_you_mean(name):
  """' Did you mean a, b?' naming close TFDS datasets, or ''."""
  close = difflib.get_close_matches(name, [*_builder_names(), "image_folder"], n=3)
  return f" Did you mean {', '.join(close)}?" if close else ""


def count_split(split, split_sizes):
  """Examples selected by a TFDS split string (`train[:98%]`, `train+test`)."""
  return sum(stop - start for _, start, stop in _ranges(split, split_sizes))


def shared_examples(split, other, split_sizes):
  """How many examples two TFDS split strings both select (`train[:98%]` and
  `train[90%:]` share 8 % of train)."""
  return sum(max(0, min(stop, b_stop) - max(start, b_start))
             for name, start, stop in _ranges(split, split_sizes)
             for b_name, b_start, b_stop in _ranges(other, split_sizes)
             if name == b_name)


def _ranges(split, split_sizes):
  """(split name, start, stop) of every part of a TFDS split string, by TFDS's own
  slicing arithmetic."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  infos = {name: types.SimpleNamespace(num_examples=n, shard_lengths=[n])
           for name, n in split_sizes.items()}
  try:
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
  except (ValueError, AssertionError) as e:
    raise UserError(f"split {split!r} is not valid for splits "
                    f"{sorted(split_sizes)}: {quote(e)}") from None
  # Bounds are absolute here; None means the split's start or end.
  return [(i.splitname, i.from_ or 0, split_sizes[i.splitname] if i.to is None else i.to)
          for i in instructions]


def _feature_key(builder, kind, preferred, what):
  """`preferred` when it is a feature of `kind`, else the only one of that kind."""
  features = builder.info.features
  if preferred in features and isinstance(features[preferred], kind):
    return preferred
  keys = [k for k, f in features.items() if isinstance(f, kind)]
  if len(keys) != 1:
    raise UserError(f"dataset {builder.name!r} has no single {what} feature to use "
                    f"(features: {', '.join(features)}): name one with label_key.")
  return keys[0]


def _image_key(builder):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  return _feature_key(builder, tfds.features.Image, "image", "Image")


def label_feature(builder, label_key=None):
  """The label feature: `label_key` when given (a class label, or a sequence of
  them), else `label`, else the dataset's only class label feature."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = builder.info.features
  if label_key is None:
    return _feature_key(builder, tfds.features.ClassLabel, "label", "ClassLabel")
  if tfds_labels.derived_label(builder, label_key) is not None:
    return label_key
  feature = features[label_key] if label_key in features else None
  inner = getattr(feature, "feature", feature)
  if not isinstance(inner, tfds.features.ClassLabel):
    labels = [k for k, f in features.items()
              if isinstance(getattr(f, "feature", f), tfds.features.ClassLabel)]
    known = labels + list(tfds_labels.DERIVED.get(builder.name, {}))
    raise UserError(f"label_key={label_key!r} is not a label of {builder.name!r}: use "
                    f"one of {', '.join(known) or '(none)'}, or FEATURE/C to bin a "
                    "class label into C classes.")
  return label_key


def _check_downloads_can_start(builder, where):
  """A UserError when a host the dataset downloads from does not answer.

  TFDS retries every failed connection with back-off (minutes when offline), so
  each host of the dataset's known URLs is asked once first, through the same
  proxies (requests reads them from the environment).
  """
  import requests  # pylint: disable=g-import-not-at-top
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


def _prepare(builder, spec):
  """Prepares a TFDS dataset that is not on disk yet; mistakes become UserErrors."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if builder.is_prepared():
    return
  where = f"data_dir={spec.data_dir or 'default'}"
  if getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None):
    if not spec.manual_dir:
      raise UserError(f"{builder.name} is not prepared in {where} and must be built "
                      "from files you download yourself: set manual_dir=<folder> "
                      f"holding them (see `tfds build {builder.name}`).")
    if not tf.io.gfile.isdir(spec.manual_dir):
      raise UserError(f"manual_dir={spec.manual_dir!r} is not a folder.")
  else:
    _check_downloads_can_start(builder, where)
  try:
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=spec.manual_dir))
  except Exception as e:  # noqa: downloads fail in many ways; each is the user's to fix
    raise UserError(f"cannot prepare dataset {builder.name!r} in {where}: "
                    f"{quote(e)}") from e


def _read_split(builder, split, image_key, label_key, shuffle_seed=None):
  """(encoded, label) examples of a TFDS split; a split TFDS rejects is a UserError."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  read_config = tfds.ReadConfig(shuffle_seed=shuffle_seed)
  try:
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_seed is not None,
                            decoders={image_key: tfds.decode.SkipDecoding()},
                            read_config=read_config)
  except (ValueError, KeyError, AssertionError) as e:
    raise UserError(f"split {split!r} of {builder.name!r} is not valid: "
                    f"{quote(e)}") from None
  image = tfds_labels.image_fn(builder, image_key)
  label = tfds_labels.label_fn(builder, label_key)
  return ds.map(lambda ex: (image(ex), label(ex)), num_parallel_calls=tf.data.AUTOTUNE)


def _measure_image_size(builder, split, label_key, seed=0):
  """(typical (height, width), how it was measured) from a seeded sample of images.

  Only the image headers are decoded (PIL opens images lazily).
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image_key = _image_key(builder)
  sample = _read_split(builder, split, image_key, label_key, shuffle_seed=seed)
  sizes = []
  for encoded, _ in sample.take(SIZE_SAMPLE).as_numpy_iterator():
    with Image.open(io.BytesIO(encoded)) as image:
      sizes.append(image.size[::-1])
  if not sizes:
    raise UserError(f"split {split!r} of {builder.name!r} has no images.")
  return base.typical_size(sizes), base.describe_sizes(
      sizes, f"the headers of {len(sizes)} images of split {split!r} (seed {seed})")


def _count(builder, split):
  sizes = {name: s.num_examples for name, s in builder.info.splits.items()}
  return count_split(split, sizes) if sizes else None


def _split_bytes(builder, num_examples):
  """Encoded bytes of num_examples, from the dataset's average; None if unknown."""
  total = sum(s.num_examples for s in builder.info.splits.values())
  if not total or not builder.info.dataset_size or num_examples is None:
    return None
  return int(builder.info.dataset_size) * num_examples // total
