"""BiT: the ResNet-v2 family and its named models (published and bundled).

The family builds `resnetv2.ResNetV2` (architecture = (units per block, width
factor), from the config's num_units/width where set) and reads the official .npz
files (`npz.load_npz_model`). The named models are the published BiT-S/BiT-M
ResNets, with their TF Hub modules and .npz files, and the miniature BiT this
project pre-trains itself (`experiments/miniature/pretrain.py`) and ships inside
the package, so a machine without network can run the whole flow. Its TF Hub
modules are not stored: their handles (`bundled:<name>/<kind>`) are made from the
bundled .npz on first use (`hub_export.bundled_hub_module`).
"""

import os

from bit_train.errors import UserError
from bit_train.models import npz
from bit_train.models import registry
from bit_train.models import resnetv2

# Units per block and width factor of each published architecture.
ARCHS = {
    "R50x1": ((3, 4, 6, 3), 1), "R50x3": ((3, 4, 6, 3), 3),
    "R101x1": ((3, 4, 23, 3), 1), "R101x3": ((3, 4, 23, 3), 3),
    "R152x2": ((3, 8, 36, 3), 2), "R152x4": ((3, 8, 36, 3), 4),
}
HUB_ARCHS = ("R50x1", "R50x3", "R101x1", "R101x3", "R152x4")  # no R152x2 modules
HUB_ROOT = "https://tfhub.dev/google/bit"
NPZ_ROOT = "https://storage.googleapis.com/bit_models"


def config_arch(config, spec=None):
  """(num_units, width) from num_units/width, else from the named model; None if
  neither is known (then an .npz file's own architecture is used)."""
  units, width = config.get("num_units"), config.get("width")
  if spec is not None:  # only unset (None) fields come from the named model
    units = spec.arch[0] if units is None else units
    width = spec.arch[1] if width is None else width
  if units is None and width is None:
    return None
  if units is None or width is None:
    raise UserError(f"model {config.model!r} is not a known BiT name: set both "
                    "num_units and width (e.g. num_units=3/4/6/3,width=1).")
  return tuple(units), float(width)


RESNET_V2 = registry.register_family(registry.Family(
    name="ResNet-v2", names=f"BiT-{{S,M}}-{{{','.join(ARCHS)}}}",
    build=lambda arch, num_classes, **kw: resnetv2.ResNetV2(*arch, num_classes, **kw),
    load=npz.load_npz_model, config_arch=config_arch, file_arch=npz.file_arch,
    describe=lambda arch: npz.describe_arch(*arch)))


def _published(upstream, arch):
  """BiT-S (pre-trained on ILSVRC-2012) or BiT-M (ImageNet-21k) at one size."""
  units, width = ARCHS[arch]
  hub = f"{HUB_ROOT}/{upstream.lower()}-{arch.lower()}" if arch in HUB_ARCHS else None
  imagenet21k = upstream == "M"
  return registry.ModelSpec(
      name=f"BiT-{upstream}-{arch}", family=RESNET_V2.name, arch=(units, float(width)),
      feature_handle=hub and f"{hub}/1",
      classifier_handle=hub and f"{hub}/ilsvrc2012_classification/1",
      npz_url=f"{NPZ_ROOT}/BiT-{upstream}-{arch}.npz",
      upstream_classes=21843 if imagenet21k else 1000,
      classifier21k_handle=hub and imagenet21k and (
          f"{hub}/imagenet21k_classification/1") or None,
      npz_ilsvrc2012_url=imagenet21k and (
          f"{NPZ_ROOT}/BiT-M-{arch}-ILSVRC2012.npz") or None)


def _bundled(name, num_units, width, upstream_classes):
  handle = f"{registry.BUNDLED_HANDLE}{name}"
  return registry.ModelSpec(
      name=name, family=RESNET_V2.name, arch=(num_units, float(width)),
      feature_handle=f"{handle}/feature_vector",
      classifier_handle=f"{handle}/classification",
      npz_url=os.path.join(registry.PRETRAINED_DIR, f"{name}.npz"),
      upstream_classes=upstream_classes, bundled=True)


for _upstream in ("S", "M"):
  for _arch in ARCHS:
    registry.register(_published(_upstream, _arch))
# The miniature BiT: pre-trained by this project on 4,500 real MNIST digits (see
# experiments/miniature/pretrain.py and the .json beside the weights).
registry.register(_bundled("BiT-MNIST-R14x0.25", (1, 1, 1, 1), 0.25, 10))
