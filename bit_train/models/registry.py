"""Model families and named models: everything the factory knows about a model.

A *family* is one kind of network (BiT's ResNet-v2 today): how to build it with
random weights, how to read its weight files, how to name its architectures and
where its named models' weights are. A *named model* (`BiT-M-R50x1`) is a
`NamedModel`: its family, its architecture in that family's terms, and the family's
record of where its weights live.

A family is one module or package that registers the family and its models
(`register_family`, `register`); BiT's is `models/bit/`. The factory asks only this
registry, so a new family (a ViT, say) is one new module plus its import in
`models/__init__.py`;
`tests/test_models_family.py` adds a toy family that way and trains it.
"""

import dataclasses
import difflib
import os
from typing import Any, Callable, Mapping

from bit_train.errors import UserError

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
# Weights bundled in the package have TF Hub handles made from their weight file on
# first use: "bundled:<name>/feature_vector" or "bundled:<name>/classification".
BUNDLED_HANDLE = "bundled:"
# The family that reads a weight file at model_path when the model's name is not
# a registered one.
DEFAULT_FAMILY = "ResNet-v2"


@dataclasses.dataclass(frozen=True)
class Family:
  """One kind of network, as the factory uses it.

  Every model a family makes takes float32 NHWC images in [0, 1] and has
  `__call__(images, training=False)` -> logits, `pre_logits(images)`,
  `trainable_variables`, `head_variables`, `num_classes` and `arch`. The trainer and
  the evaluators trace models without AutoGraph: control flow on tensors in a
  model's code must be tf.cond / tf.while_loop, not Python `if` / `while`.
  """
  name: str  # e.g. "ResNet-v2"; names architectures in logs and metrics.json
  names: str  # its models' names for messages, e.g. "BiT-{S,M}-{R50x1,...}"
  arch_fields: tuple  # the config fields that set an architecture, e.g. num_units
  # (arch, num_classes, *, seed, compute_dtype) -> a model with random weights
  build: Callable[..., Any]
  # (location, num_classes, head, arch, *, seed, compute_dtype) -> the model in a
  # weight file (model_source=npz); arch None takes the file's own.
  load: Callable[..., Any]
  # ({arch field: value or None}, NamedModel or None, name) -> the architecture the
  # fields ask for (the named model's where they are None), or None when neither says.
  arch: Callable[..., Any]
  # (path) -> the architecture stored in a local weight file, or None.
  file_arch: Callable[[str], Any]
  # (path) -> None: a dry run's check of a local weight file, reading as little as
  # it can: one UserError line when the file is missing or not the family's format.
  check_file: Callable[[str], None]
  # arch -> words naming it, e.g. "R14x0.25 (units 1/1/1/1, width 0.25)".
  describe: Callable[[Any], str]
  # (NamedModel, source, head, num_classes) -> where its weights are for that
  # model_source (hub | npz) and head (new | keep), or None when it has none.
  location: Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class NamedModel:
  """A named model: its family, architecture and where its weights are."""
  name: str  # e.g. BiT-M-R50x1
  family: str  # a registered Family's name
  arch: Any  # the family's description, compared with a model's `arch`
  upstream_classes: int  # classes of the head it was pre-trained with
  weights: Mapping[str, str] = dataclasses.field(default_factory=dict)  # the family's
  bundled: bool = False  # weights ship inside the package (no download)


class NoHead(UserError):
  """A weight file without the classifier head the caller needs. `problem` is the
  message without its fix, for tools whose fix is another than head=new."""

  def __init__(self, path, key):
    self.problem = f"model file {path} has no head ({key})"
    super().__init__(f"{self.problem}: use head=new.")


FAMILIES = {}
MODELS = {}


def register_family(family):
  FAMILIES[family.name] = family
  return family


def register(named):
  if named.family not in FAMILIES:
    raise ValueError(f"{named.name}: register its family {named.family!r} first")
  MODELS[named.name] = named
  return named


def family(named=None):
  """The Family of a named model; the default family for a file no name describes."""
  return FAMILIES[named.family if named is not None else DEFAULT_FAMILY]


def location(named, source, head, num_classes=None):
  """Where the registry keeps a named model's weights for a source and head
  choice (see Family.location); None when no such file or module exists."""
  return family(named).location(named, source, head, num_classes)


def lookup(name):
  """The NamedModel for a name (case-insensitive); UserError if unknown."""
  by_lower = {key.lower(): named for key, named in MODELS.items()}
  if name.lower() in by_lower:
    return by_lower[name.lower()]
  bundled = ", ".join(n for n, named in MODELS.items() if named.bundled)
  names = ", ".join(f.names for f in FAMILIES.values())
  raise UserError(f"unknown model {name!r}: use a registered name such as "
                  f"{next(iter(MODELS))} ({names}), the bundled {bundled}, or set "
                  f"model_path.{did_you_mean(name)}")


def did_you_mean(name):
  """' Did you mean BiT-S-R50x1?' for a name close to registered names, else ''."""
  close = difflib.get_close_matches(name, list(MODELS), n=3)
  return f" Did you mean {', '.join(close)}?" if close else ""
