"""Friendly BiT model names -> architecture, TF Hub handles and .npz weight URL.

Besides the published BiT models, the registry names the miniature BiT this project
pre-trains itself (`experiments/miniature/pretrain.py`) and ships inside the
package, so a machine without network can run the whole flow. Its TF Hub modules
are not stored: their handles (`bundled:<name>/<kind>`) are made from the bundled
.npz on first use (`weights.bundled_hub_module`).
"""

import dataclasses
import difflib
import os

from bit_train.errors import UserError

# Units per block and width factor of each published architecture.
ARCHS = {
    "R50x1": ((3, 4, 6, 3), 1), "R50x3": ((3, 4, 6, 3), 3),
    "R101x1": ((3, 4, 23, 3), 1), "R101x3": ((3, 4, 23, 3), 3),
    "R152x2": ((3, 8, 36, 3), 2), "R152x4": ((3, 8, 36, 3), 4),
}
HUB_ARCHS = ("R50x1", "R50x3", "R101x1", "R101x3", "R152x4")  # no R152x2 modules
HUB_ROOT = "https://tfhub.dev/google/bit"
NPZ_ROOT = "https://storage.googleapis.com/bit_models"
PRETRAINED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
BUNDLED_HANDLE = "bundled:"  # + "<name>/feature_vector" or "<name>/classification"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  name: str  # e.g. BiT-M-R50x1
  family: str  # S (ILSVRC-2012) or M (ImageNet-21k)
  arch: str
  num_units: tuple
  width: int
  feature_handle: str | None  # TF Hub feature-vector module
  classifier_handle: str | None  # TF Hub ILSVRC-2012 classification module
  npz_url: str
  upstream_classes: int  # head size in the .npz file
  # BiT-M only: the ImageNet-21k classification module and the weights fine-tuned
  # on ILSVRC-2012 (1000-class head), for head=keep.
  classifier21k_handle: str | None = None
  npz_ilsvrc2012_url: str | None = None
  bundled: bool = False  # weights ship inside the package (no download)


def _spec(family, arch):
  units, width = ARCHS[arch]
  hub = f"{HUB_ROOT}/{family.lower()}-{arch.lower()}" if arch in HUB_ARCHS else None
  return ModelSpec(
      name=f"BiT-{family}-{arch}", family=family, arch=arch, num_units=units,
      width=width, feature_handle=hub and f"{hub}/1",
      classifier_handle=hub and f"{hub}/ilsvrc2012_classification/1",
      npz_url=f"{NPZ_ROOT}/BiT-{family}-{arch}.npz",
      upstream_classes=1000 if family == "S" else 21843,
      classifier21k_handle=hub and family == "M" and (
          f"{hub}/imagenet21k_classification/1") or None,
      npz_ilsvrc2012_url=family == "M" and (
          f"{NPZ_ROOT}/BiT-M-{arch}-ILSVRC2012.npz") or None)


def _bundled(name, num_units, width, upstream_classes):
  handle = f"{BUNDLED_HANDLE}{name}"
  return ModelSpec(
      name=name, family=name.split("-")[1], arch=name.split("-")[2],
      num_units=num_units, width=width, feature_handle=f"{handle}/feature_vector",
      classifier_handle=f"{handle}/classification",
      npz_url=os.path.join(PRETRAINED_DIR, f"{name}.npz"),
      upstream_classes=upstream_classes, bundled=True)


MODELS = {spec.name: spec for spec in
          (_spec(family, arch) for family in ("S", "M") for arch in ARCHS)}
# The miniature BiT: pre-trained by this project on 4,500 real MNIST digits (see
# experiments/miniature/pretrain.py and the .json beside the weights).
MODELS["BiT-MNIST-R14x0.25"] = _bundled("BiT-MNIST-R14x0.25", (1, 1, 1, 1), 0.25, 10)


def location(spec, source, head, num_classes=None):
  """Where the registry keeps a model's weights for a source and head choice.

  head="new" uses the feature-vector module or the upstream .npz; head="keep" the
  classifier whose head has `num_classes` classes (ILSVRC-2012 unless 21843 asks
  for BiT-M's ImageNet-21k head). None when no such file or module exists.
  """
  if source == "hub":
    if head == "new":
      return spec.feature_handle
    return spec.classifier21k_handle if num_classes == 21843 else spec.classifier_handle
  if head == "keep" and num_classes == 1000 and spec.family == "M":
    return spec.npz_ilsvrc2012_url
  return spec.npz_url


def lookup(name):
  """The ModelSpec for a friendly name (case-insensitive); UserError if unknown."""
  by_lower = {key.lower(): spec for key, spec in MODELS.items()}
  if name.lower() in by_lower:
    return by_lower[name.lower()]
  bundled = ", ".join(n for n, spec in MODELS.items() if spec.bundled)
  raise UserError(f"unknown model {name!r}: use a BiT name such as BiT-M-R50x1 "
                  f"(BiT-{{S,M}}-{{{','.join(ARCHS)}}}), the bundled {bundled}, or set "
                  f"model_path.{did_you_mean(name)}")


def did_you_mean(name):
  """' Did you mean BiT-S-R50x1?' for a name close to BiT names, else ''."""
  close = difflib.get_close_matches(name, list(MODELS), n=3)
  return f" Did you mean {', '.join(close)}?" if close else ""
