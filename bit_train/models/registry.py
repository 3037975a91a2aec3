"""Model families and named models: everything the factory knows about a model.

A *family* is one kind of network (BiT's ResNet-v2 today): how to build it with
random weights, how to read its weight files, and how to name its architectures.
A *named model* (`BiT-M-R50x1`) is a `ModelSpec`: its family, its architecture in
that family's terms, and where its weights live (TF Hub handles, .npz URLs).

A family's module registers the family and its models (`register_family`,
`register`); BiT's is `models/bit.py`. The factory asks only this registry, so a
new family (a ViT, say) is one new module plus its import in `models/__init__.py`;
`tests/test_models_family.py` adds a toy family that way and trains it.
"""

import dataclasses
import difflib
import os
from typing import Any, Callable

from bit_train.errors import UserError

PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
# Weights bundled in the package have TF Hub handles made from their .npz on first
# use: "bundled:<name>/feature_vector" or "bundled:<name>/classification".
BUNDLED_HANDLE = "bundled:"
# The family that reads a weight file at model_path when config.model names no
# registered model.
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
  # (arch, num_classes, *, seed, compute_dtype) -> a model with random weights
  build: Callable[..., Any]
  # (location, num_classes, head, arch, *, seed, compute_dtype) -> the model in a
  # weight file (model_source=npz); arch None takes the file's own.
  load: Callable[..., Any]
  # (config, spec or None) -> the architecture the config's fields ask for (the
  # named model's where they are unset), or None when neither says.
  config_arch: Callable[..., Any]
  # (path) -> the architecture stored in a local weight file, or None.
  file_arch: Callable[[str], Any]
  # arch -> words naming it, e.g. "R14x0.25 (units 1/1/1/1, width 0.25)".
  describe: Callable[[Any], str]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A named model: its family, architecture and where its weights are."""
  name: str  # e.g. BiT-M-R50x1
  family: str  # a registered Family's name
  arch: Any  # the family's description, compared with a model's `arch`
  feature_handle: str | None  # TF Hub feature-vector module
  classifier_handle: str | None  # TF Hub ILSVRC-2012 classification module
  npz_url: str | None  # the upstream weights (head of upstream_classes)
  upstream_classes: int
  # Models pre-trained on ImageNet-21k: the 21k classification module, and the
  # weights fine-tuned on ILSVRC-2012 (1000-class head), for head=keep.
  classifier21k_handle: str | None = None
  npz_ilsvrc2012_url: str | None = None
  bundled: bool = False  # weights ship inside the package (no download)


FAMILIES = {}
MODELS = {}


def register_family(family):
  FAMILIES[family.name] = family
  return family


def register(spec):
  if spec.family not in FAMILIES:
    raise ValueError(f"{spec.name}: register its family {spec.family!r} first")
  MODELS[spec.name] = spec
  return spec


def family(spec=None):
  """The Family of a named model; the default family for a file no name describes."""
  return FAMILIES[spec.family if spec is not None else DEFAULT_FAMILY]


def location(spec, source, head, num_classes=None):
  """Where the registry keeps a model's weights for a source and head choice.

  head="new" uses the feature-vector module or the upstream .npz; head="keep" the
  classifier whose head has `num_classes` classes (ILSVRC-2012 unless 21843 asks
  for the ImageNet-21k head). None when no such file or module exists.
  """
  if source == "hub":
    if head == "new":
      return spec.feature_handle
    return spec.classifier21k_handle if num_classes == 21843 else spec.classifier_handle
  if head == "keep" and num_classes == 1000 and spec.npz_ilsvrc2012_url:
    return spec.npz_ilsvrc2012_url
  return spec.npz_url


def model_location(config, num_classes=None):
  """Where the config's model comes from: model_path, else the registry's module or
  file for model_source and head (see `location`); None for model_source=native
  (random weights). A UserError when the registry has none."""
  if config.model_source == "native":
    return None
  if config.model_path:
    return config.model_path
  spec = lookup(config.model)
  found = location(spec, config.model_source, config.head, num_classes)
  if found is None:
    what = "classifier" if config.head == "keep" else "model"
    raise UserError(f"{spec.name} has no {config.model_source} {what} in the registry: "
                    "set model_source or model_path.")
  return found


def lookup(name):
  """The ModelSpec for a name (case-insensitive); UserError if unknown."""
  by_lower = {key.lower(): spec for key, spec in MODELS.items()}
  if name.lower() in by_lower:
    return by_lower[name.lower()]
  bundled = ", ".join(n for n, spec in MODELS.items() if spec.bundled)
  names = ", ".join(f.names for f in FAMILIES.values())
  raise UserError(f"unknown model {name!r}: use a registered name such as "
                  f"{next(iter(MODELS))} ({names}), the bundled {bundled}, or set "
                  f"model_path.{did_you_mean(name)}")


def did_you_mean(name):
  """' Did you mean BiT-S-R50x1?' for a name close to registered names, else ''."""
  close = difflib.get_close_matches(name, list(MODELS), n=3)
  return f" Did you mean {', '.join(close)}?" if close else ""
