"""The DataSource interface every kind of dataset implements, and the rules they share.

A DataSource answers four questions about a dataset a DataSpec names:

  facts          DatasetFacts: what the plan needs (training examples after few-shot
                 selection, classes, typical image size, the splits, where each
                 fact came from) and the class names;
  examples(split, label_key)
                 the labelled examples of one split, read whole, in a fixed order
                 (an `Examples`);
  train_examples()
                 the training split, few-shot subset included (`examples_per_class`);
  eval_examples(split=None)
                 an evaluation split; None: the dataset's default eval split.

Images stay encoded (JPEG/PNG bytes) until preprocess.py decodes them, so the train
stream can cache the small encoded bytes rather than pixels. A kind of dataset
implements `_examples`, `default_eval_split` and `_find_facts`; the DataSpec's
fields (num_examples, num_classes, image_size, examples_per_class) are put on top of
what it finds by `resolve`, for every kind alike.
"""

import abc
import dataclasses
import functools
import hashlib
import os
import statistics

import numpy as np

from bit_train.errors import UserError
from bit_train.lazy import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class DatasetFacts:
  name: str
  num_examples: int  # in the training split, after any few-shot selection
  num_classes: int | None
  image_size: tuple | None  # typical (height, width)
  train_split: str
  eval_split: str
  sources: dict  # fact -> where it came from
  class_names: tuple = ()

  def describe(self):
    lines = [f"Dataset {self.name}: train split {self.train_split!r}, "
             f"eval split {self.eval_split!r}"]
    for fact, origin in self.sources.items():
      lines.append(f"  {fact:<13} from {origin}")
    return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Examples:
  """One split's labelled examples, read whole and in a fixed order.

  `read()` gives a finite tf.data.Dataset of (encoded image: string, label): an
  int32 class index, or an int32 multi-hot row when `multilabel` (ReaL).
  """
  name: str  # "cifar10@test", "/data/photos@holdout ...": for logs and results
  split: str
  class_names: tuple
  read: callable
  num_examples: int | None = None
  num_bytes: int | None = None  # encoded size, None when unknown
  files: tuple | None = None  # (paths, labels) when the examples are files
  multilabel: bool = False
  # () -> ((height, width), where it came from): measured only when asked.
  image_size: callable = None

  @property
  def num_classes(self):
    return len(self.class_names)

  def labels(self):
    """Every label, in order, as a numpy array (reads the labels, not the images)."""
    if self.files is not None:
      return np.asarray(self.files[1], int)
    batches = [labels for labels in self.read().map(
        lambda encoded, label: label).batch(4096).as_numpy_iterator()]
    return np.concatenate(batches) if batches else np.zeros([0], int)

  def subset(self, indices, name=None):
    """The examples at sorted `indices`, in their original order."""
    indices = sorted(indices)
    count = self.num_examples
    if count is None:
      count = len(self.labels())
    num_bytes = None if self.num_bytes is None else self.num_bytes * len(indices) // max(
        count, 1)
    if self.files is not None:
      paths, labels = self.files
      files = (tuple(paths[i] for i in indices), tuple(labels[i] for i in indices))
      return dataclasses.replace(self, name=name or self.name, read=functools.partial(
          file_examples, *files), num_examples=len(indices), num_bytes=num_bytes,
                                 files=files)
    chosen = np.zeros(count, bool)
    chosen[indices] = True
    full = self.read

    def read():
      keep = tf.constant(chosen)
      return full().enumerate().filter(lambda i, example: keep[i]).map(
          lambda i, example: example)
    return dataclasses.replace(self, name=name or self.name, read=read,
                               num_examples=len(indices), num_bytes=num_bytes,
                               files=None)

  def few_shot(self, k, seed, what="examples_per_class"):
    """Exactly k examples of every class (see few_shot_indices)."""
    indices = few_shot_indices(self.labels(), k, seed, self.class_names, what)
    return self.subset(indices)


def file_examples(paths, labels):
  """(encoded, label) read from files, in the given order."""
  return tf.data.Dataset.from_tensor_slices(
      (tf.constant(paths, tf.string), tf.constant(labels, tf.int32))).map(
          tf.autograph.experimental.do_not_convert(
              lambda path, label: (tf.io.read_file(path), label)),
          num_parallel_calls=tf.data.AUTOTUNE)


def few_shot_indices(labels, k, seed, class_names, what="examples_per_class"):
  """Indices of exactly k examples of every class, drawn with `seed`, sorted.

  The same seed gives the same examples, and a smaller k a subset of a larger k's.
  A class with fewer than k examples is a UserError naming it and the largest k
  that every class allows (`what` names the setting that asked for k).
  """
  labels = np.asarray(labels, int)
  counts = np.bincount(labels, minlength=len(class_names))
  short = [f"{name} ({count})" for name, count in zip(class_names, counts) if count < k]
  if short:
    raise UserError(
        f"{what}={k}, but some classes have fewer training examples: "
        f"{', '.join(short[:10])}{' ...' if len(short) > 10 else ''}; the largest "
        f"{what} every class allows is {counts.min()}.")
  chosen = []
  for c in range(len(class_names)):
    members = np.flatnonzero(labels == c)
    chosen += np.random.default_rng([seed, c]).permutation(members)[:k].tolist()
  return sorted(chosen)


def typical_size(sizes):
  """The median (height, width) of some (height, width) pairs."""
  return (int(statistics.median(h for h, _ in sizes)),
          int(statistics.median(w for _, w in sizes)))


def describe_sizes(sizes, what):
  """Where a measured size came from, as DatasetFacts.sources says it."""
  heights, widths = [h for h, _ in sizes], [w for _, w in sizes]
  h, w = typical_size(sizes)
  return (f"measuring {what}: median {h}x{w} (heights {min(heights)}-"
          f"{max(heights)}, widths {min(widths)}-{max(widths)})")


def resolve(spec, *, num_examples, num_classes, image_size, train_split,
            eval_split, sources, class_names=()):
  """DatasetFacts from what a source found, with the spec's fields on top."""
  name = spec.dataset
  sources = dict(sources)
  if spec.num_examples is not None:
    num_examples = spec.num_examples
    sources["num_examples"] = "config (num_examples)"
  if spec.num_classes is not None:
    num_classes = spec.num_classes
    sources["num_classes"] = "config (num_classes)"
  if spec.image_size is not None:
    image_size = tuple(spec.image_size)
    sources["image_size"] = "config (image_size)"
  if num_classes is not None and num_classes < 2:
    named = f": {', '.join(map(repr, class_names))}" if class_names else ""
    raise UserError(
        f"{name!r} has {num_classes} class ({sources.get('num_classes', 'config')}"
        f"{named}): a classifier needs at least two classes: add another class.")
  if image_size is None:
    raise UserError(f"the image size of {name!r} is unknown: set image_size=HxW "
                    "(it is measured from the images once the data is on disk).")
  if spec.examples_per_class is not None:
    if num_classes is None:
      raise UserError("examples_per_class needs the number of classes: set num_classes.")
    num_examples = spec.examples_per_class * num_classes
    sources["num_examples"] = (f"few-shot: {spec.examples_per_class} per class "
                               f"x {num_classes} classes (seed {spec.few_shot_seed})")
  return DatasetFacts(name=name, num_examples=num_examples, num_classes=num_classes,
                      image_size=tuple(image_size), train_split=train_split,
                      eval_split=eval_split, sources=sources,
                      class_names=tuple(class_names))


class DataSource(abc.ABC):
  """One dataset, as a specs.DataSpec names it (dataset, data_dir, splits,
  label_key, ...).

  Opening a source reads as little as its facts need; `read=False` (the dry run)
  reads no data where metadata or a table knows the facts. Subclasses implement
  `_find_facts`, `default_eval_split` and `_examples`.
  """

  def __init__(self, spec, read=True):
    self.spec = spec
    self.read = read
    self._train = None

  @functools.cached_property
  def facts(self):
    """DatasetFacts, with the spec's fields on top (see `resolve`)."""
    return self._find_facts()

  @property
  def class_names(self):
    return self.facts.class_names

  @property
  def num_classes(self):
    return self.facts.num_classes

  @abc.abstractmethod
  def _find_facts(self):
    """DatasetFacts of the dataset (by calling `resolve`)."""

  @abc.abstractmethod
  def default_eval_split(self):
    """The split evaluated when none is named: the one rule of this kind."""

  @abc.abstractmethod
  def _examples(self, split, label_key):
    """The Examples of one split (see `examples`)."""

  def examples(self, split, label_key=None):
    """The Examples of one split; `label_key` picks another label feature. The
    spec's image_size, when set, is the split's typical size."""
    found = self._examples(split, label_key)
    if self.spec.image_size is not None:
      size = tuple(self.spec.image_size)
      found = dataclasses.replace(found, image_size=lambda: (size, "config (image_size)"))
    return found

  def train_examples(self):
    """The training split, with exactly examples_per_class of every class if set."""
    if self._train is None:
      spec = self.spec
      examples = self.examples(self.facts.train_split)
      if spec.examples_per_class is not None:
        examples = examples.few_shot(spec.examples_per_class, spec.few_shot_seed)
      self._train = examples
    return self._train

  def identity(self):
    """What the training data is, for a resumed run to compare (workdir.check_same_run):
    the class names in order and a fingerprint of the data (`_fingerprint`)."""
    return {"class_names": list(self.class_names or ()), **self._fingerprint()}

  def _fingerprint(self):
    """Files: their number per class and a digest of every (path, size, label) of the
    training split. Other kinds override it with what names their data."""
    examples = self.train_examples()
    if examples.files is None:
      return {"name": self.facts.name, "train_split": self.facts.train_split}
    paths, labels = examples.files
    root = os.path.commonpath(paths) if paths else ""
    digest = hashlib.sha256()
    for path, label in sorted(zip(paths, labels)):
      size = os.path.getsize(path) if os.path.exists(path) else -1
      digest.update(f"{os.path.relpath(path, root)}\0{size}\0{label}\n".encode(
          "utf-8", "surrogateescape"))
    counts = np.bincount(np.asarray(labels, int), minlength=len(self.class_names or ()))
    return {"files_per_class": [int(c) for c in counts],
            "files_digest": digest.hexdigest()[:16]}

  def shared_with_train(self):
    """(how many evaluation examples are training examples, how many there are), or
    None when that cannot be known. Files: by their real path (a link to a training
    image is one). Other kinds override it with what identifies their examples."""
    trained, evaluated = self.train_examples().files, self.eval_examples().files
    if trained is None or evaluated is None:
      return None
    seen = {os.path.realpath(path) for path in trained[0]}
    return sum(os.path.realpath(path) in seen for path in evaluated[0]), len(evaluated[0])

  def trained_eval_warning(self):
    """A warning when the evaluation split holds training examples, else None: its
    top-1 then measures memory."""
    shared = self.shared_with_train()
    if not shared or not shared[0]:
      return None
    seen, total = shared
    return (f"{seen:,} of the {total:,} images of the evaluation split "
            f"{self.eval_split()!r} are training images (train split "
            f"{self.facts.train_split!r}): its top-1 measures memory, not accuracy on "
            "new images; set eval_split to images the run does not train on.")

  def eval_split(self):
    """The split evaluated when none is named: spec.eval_split, else the kind's
    default (`default_eval_split`)."""
    return self.spec.eval_split or self.default_eval_split()

  def eval_examples(self, split=None, label_key=None):
    """An evaluation split: `split`, else `eval_split()`."""
    return self.examples(split or self.eval_split(), label_key)

  @property
  def multilabel_key(self):
    """The label feature holding several labels per image (ReaL), or None."""
    return None
