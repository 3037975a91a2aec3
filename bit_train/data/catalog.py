"""Facts about datasets that the plan needs, from metadata wherever it exists.

`describe(config)` answers: how many training examples, how many classes, what
typical image size, and where each answer came from (TFDS metadata on disk, the
table of known datasets below, a measurement, or the config). Images are read only
to measure a size no metadata gives (image folders, unknown TFDS datasets).
`resolve()` puts the config's fields on top of what a source found.
"""

import dataclasses
import difflib
import types

from bit_train.errors import UserError

IMAGE_FOLDER = "image_folder"


@dataclasses.dataclass(frozen=True)
class Known:
  """A dataset from the authors' table: split sizes, image size, default splits."""
  split_sizes: dict
  num_classes: int
  image_size: tuple
  train_split: str
  minival_split: str
  eval_split: str


# Split sizes as TFDS prepares them; image sizes from the authors' table. Pets and
# Flowers are in the rule but were missing from the authors' split table.
KNOWN = {
    "cifar10": Known({"train": 50_000, "test": 10_000}, 10, (32, 32),
                     "train[:98%]", "train[98%:]", "test"),
    "cifar100": Known({"train": 50_000, "test": 10_000}, 100, (32, 32),
                      "train[:98%]", "train[98%:]", "test"),
    "oxford_iiit_pet": Known({"train": 3_680, "test": 3_669}, 37, (224, 224),
                             "train[:90%]", "train[90%:]", "test"),
    "oxford_flowers102": Known({"train": 1_020, "validation": 1_020, "test": 6_149},
                               102, (224, 224), "train", "validation", "test"),
    "imagenet2012": Known({"train": 1_281_167, "validation": 50_000}, 1000,
                          (224, 224), "train[:99%]", "train[99%:]", "validation"),
}


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


def count_split(split, split_sizes):
  """Examples selected by a TFDS split string (`train[:98%]`, `train+test`),
  with TFDS's own slicing arithmetic."""
  import tensorflow_datasets as tfds
  infos = {name: types.SimpleNamespace(num_examples=n, shard_lengths=[n])
           for name, n in split_sizes.items()}
  try:
    instructions = tfds.core.ReadInstruction.from_spec(split).to_absolute(infos)
  except (ValueError, AssertionError) as e:
    raise UserError(f"split {split!r} is not valid for splits "
                    f"{sorted(split_sizes)}: {e}".replace("\n", " ")) from None
  total = 0
  for instr in instructions:
    # Bounds are absolute here; None means the split's start or end.
    start = instr.from_ or 0
    stop = split_sizes[instr.splitname] if instr.to is None else instr.to
    total += max(0, stop - start)
  return total


def tfds_builder(config):
  """The TFDS builder for config.dataset; an unknown name is a UserError."""
  import tensorflow_datasets as tfds
  try:
    return tfds.builder(config.dataset, data_dir=config.data_dir)
  except (tfds.core.registered.DatasetNotFoundError, ValueError):  # not a name TFDS knows
    raise UserError(f"unknown dataset {config.dataset!r}: give a TFDS name or "
                    f"dataset={IMAGE_FOLDER} with data_dir=<folder>."
                    f"{did_you_mean(config.dataset)}") from None


def is_tfds_name(name):
  """Whether `name` (`name/config:version` too) may be a TFDS dataset: a registered
  name, or one in a community namespace (`huggingface:mnist`), which TFDS resolves."""
  import tensorflow_datasets as tfds
  try:
    parsed, _ = tfds.core.naming.parse_builder_name_kwargs(name)
  except ValueError:  # e.g. a path
    return False
  return parsed.namespace is not None or parsed.name in tfds.list_builders()


def did_you_mean(name):
  """' Did you mean a, b?' naming close TFDS datasets, or ''."""
  import tensorflow_datasets as tfds
  close = difflib.get_close_matches(name, tfds.list_builders() + [IMAGE_FOLDER], n=3)
  return f" Did you mean {', '.join(close)}?" if close else ""


def _on_disk_facts(builder):
  """(split sizes, num_classes, image size) from a prepared TFDS dataset."""
  info = builder.info
  sizes = {name: split.num_examples for name, split in info.splits.items()}
  label = info.features["label"] if "label" in info.features else None
  image = info.features["image"] if "image" in info.features else None
  num_classes = getattr(label, "num_classes", None)
  shape = getattr(image, "shape", None)
  image_size = tuple(shape[:2]) if shape and None not in shape[:2] else None
  names = tuple(label.names) if label is not None and hasattr(label, "names") else ()
  return sizes, num_classes, image_size, names


def describe(config):
  """DatasetFacts for the config's dataset. Config fields override every source."""
  name = config.dataset
  known = KNOWN.get(name)
  sources = {}
  described = config.num_examples is not None and config.image_size is not None
  sizes, num_classes, image_size, class_names = {}, None, None, ()
  train_split = config.train_split or (known.train_split if known else "train")
  if name == IMAGE_FOLDER:
    if not described:
      from bit_train.data import sources as data_sources  # noqa: reads the folder
      return data_sources.folder_facts(config)
  elif not described:
    builder = tfds_builder(config)
    if builder.is_prepared():
      sizes, num_classes, image_size, class_names = _on_disk_facts(builder)
      origin = f"TFDS metadata in {builder.data_dir}"
      sources.update(split_sizes=origin, num_classes=origin)
      if image_size:
        sources["image_size"] = origin
      elif not known and config.image_size is None:
        from bit_train.data import sources as data_sources  # noqa: reads images
        image_size, sources["image_size"] = data_sources.measure_tfds_image_size(
            builder, train_split, config.seed)
    elif known:
      sizes, num_classes = known.split_sizes, known.num_classes
      origin = ("the table of known split sizes (dataset not prepared in "
                f"data_dir={config.data_dir or 'default'})")
      sources.update(split_sizes=origin, num_classes=origin)
    else:
      raise UserError(
          f"dataset {name!r} is not prepared in data_dir={config.data_dir or 'default'}"
          " and its size is not in the table: prepare it with `tfds build "
          f"{name}` or describe it with num_examples and image_size.")
  if image_size is None and known:
    image_size = known.image_size
    sources["image_size"] = "the authors' table of image sizes"
  eval_split = config.eval_split or (known.eval_split if known else "test")
  if config.num_examples is not None:
    num_examples = None
  else:
    num_examples = count_split(train_split, sizes)
    sources["num_examples"] = f"split {train_split!r} of {sizes}"
  return resolve(config, num_examples=num_examples, num_classes=num_classes,
                 image_size=image_size, train_split=train_split,
                 eval_split=eval_split, sources=sources, class_names=class_names)


def resolve(config, *, num_examples, num_classes, image_size, train_split,
            eval_split, sources, class_names=()):
  """DatasetFacts from what a source found, with the config's fields on top."""
  name = config.dataset
  sources = dict(sources)
  if config.num_examples is not None:
    num_examples = config.num_examples
    sources["num_examples"] = "config (num_examples)"
  if config.num_classes is not None:
    num_classes = config.num_classes
    sources["num_classes"] = "config (num_classes)"
  if config.image_size is not None:
    image_size = tuple(config.image_size)
    sources["image_size"] = "config (image_size)"
  if num_classes is not None and num_classes < 2:
    named = f": {', '.join(map(repr, class_names))}" if class_names else ""
    raise UserError(
        f"{name!r} has {num_classes} class ({sources.get('num_classes', 'config')}"
        f"{named}): a classifier needs at least two classes: add another class.")
  if image_size is None:
    raise UserError(f"the image size of {name!r} is unknown: set image_size=HxW "
                    "(it is measured from the images once the data is on disk).")
  if config.examples_per_class is not None:
    if num_classes is None:
      raise UserError("examples_per_class needs the number of classes: set num_classes.")
    num_examples = config.examples_per_class * num_classes
    sources["num_examples"] = (f"few-shot: {config.examples_per_class} per class "
                               f"x {num_classes} classes (seed {config.few_shot_seed})")
  return DatasetFacts(name=name, num_examples=num_examples, num_classes=num_classes,
                      image_size=tuple(image_size), train_split=train_split,
                      eval_split=eval_split, sources=sources,
                      class_names=tuple(class_names))
