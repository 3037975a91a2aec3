"""BiT: the ResNet-v2 family, its published names and where their weights are.

The family is three modules: this one (the names and the registry entry),
`npz.py` (the official weight files' layout, in NumPy) and `network.py` (the
network, in TensorFlow). The registry entry imports the network only when a model
is built or loaded, so what only plans a run or answers for a name — `--help`,
`--dry_run`, the experiments runner's planning and emission — imports no
TensorFlow.

The names (`BiT-{S,M}-R50x1` ...) are the published models of Kolesnikov et al.,
"Big Transfer (BiT)" (arXiv 1912.11370), with their TF Hub modules and .npz files,
and the miniature BiT this project pre-trains itself (experiments/miniature/
pretrain.py) and ships in the package, so a machine without network runs the
whole flow; its TF Hub modules are made from its .npz on first use
(`hub.bundled_module`).
"""

import os

from bit_train.errors import UserError
from bit_train.models import registry
from bit_train.models.bit import npz

ARCH_FIELDS = ("num_units", "width")  # the config fields that name an architecture
# Units per block and width factor of each published architecture.
ARCHS = {
    "R50x1": ((3, 4, 6, 3), 1), "R50x3": ((3, 4, 6, 3), 3),
    "R101x1": ((3, 4, 23, 3), 1), "R101x3": ((3, 4, 23, 3), 3),
    "R152x2": ((3, 8, 36, 3), 2), "R152x4": ((3, 8, 36, 3), 4),
}
HUB_ARCHS = ("R50x1", "R50x3", "R101x1", "R101x3", "R152x4")  # no R152x2 modules
HUB_ROOT = "https://tfhub.dev/google/bit"
NPZ_ROOT = "https://storage.googleapis.com/bit_models"


def arch(overrides, named, name):
  """(num_units, width) from the ARCH_FIELDS in `overrides` (a field's None: the
  named model's), else the named model's; None if neither says (an .npz file's
  own architecture is then used)."""
  units, width = overrides.get("num_units"), overrides.get("width")
  if named is not None:
    units = named.arch[0] if units is None else units
    width = named.arch[1] if width is None else width
  if units is None and width is None:
    return None
  if units is None or width is None:
    raise UserError(f"model {name!r} is not a known BiT name: set both num_units "
                    "and width (e.g. num_units=3/4/6/3,width=1).")
  return tuple(units), float(width)


def location(named, source, head, num_classes=None):
  """Where a named BiT's weights are for a source and head choice, or None.

  head="new" uses the feature-vector module or the upstream .npz; head="keep" the
  classifier whose head has `num_classes` classes (ILSVRC-2012 unless 21843 asks
  for BiT-M's ImageNet-21k head).
  """
  where = named.weights
  if source == "hub":
    if head == "new":
      return where.get("hub_features")
    return where.get("hub_21k" if num_classes == 21843 else "hub_classifier")
  if head == "keep" and num_classes == 1000 and where.get("npz_ilsvrc2012"):
    return where["npz_ilsvrc2012"]
  return where.get("npz")


# The network imports TensorFlow: only building or loading a model imports it.
def _build(arch, num_classes, **kw):
  from bit_train.models.bit import network  # pylint: disable=g-import-not-at-top
  return network.ResNetV2(*arch, num_classes, **kw)


def _load(location, num_classes, head="new", arch=None, **kw):
  from bit_train.models.bit import network  # pylint: disable=g-import-not-at-top
  return network.load_npz(location, num_classes, head, arch, **kw)


RESNET_V2 = registry.register_family(registry.Family(
    name="ResNet-v2", names=f"BiT-{{S,M}}-{{{','.join(ARCHS)}}}",
    arch_fields=ARCH_FIELDS, build=_build, load=_load, arch=arch, file_arch=npz.file_arch,
    check_file=npz.check_file,
    describe=lambda arch: npz.describe_arch(*arch), location=location))


def _published(upstream, name):
  """BiT-S (pre-trained on ILSVRC-2012) or BiT-M (ImageNet-21k) at one size."""
  units, width = ARCHS[name]
  hub = f"{HUB_ROOT}/{upstream.lower()}-{name.lower()}" if name in HUB_ARCHS else None
  imagenet21k = upstream == "M"
  where = {"npz": f"{NPZ_ROOT}/BiT-{upstream}-{name}.npz"}
  if hub:
    where.update(hub_features=f"{hub}/1",
                 hub_classifier=f"{hub}/ilsvrc2012_classification/1")
  if imagenet21k:
    where["npz_ilsvrc2012"] = f"{NPZ_ROOT}/BiT-M-{name}-ILSVRC2012.npz"
    if hub:
      where["hub_21k"] = f"{hub}/imagenet21k_classification/1"
  return registry.NamedModel(
      name=f"BiT-{upstream}-{name}", family=RESNET_V2.name, arch=(units, float(width)),
      upstream_classes=21843 if imagenet21k else 1000, weights=where)


def _bundled(name, num_units, width, upstream_classes):
  handle = f"{registry.BUNDLED_HANDLE}{name}"
  return registry.NamedModel(
      name=name, family=RESNET_V2.name, arch=(num_units, float(width)),
      upstream_classes=upstream_classes, bundled=True, weights={
          "hub_features": f"{handle}/feature_vector",
          "hub_classifier": f"{handle}/classification",
          "npz": os.path.join(registry.PRETRAINED_DIR, f"{name}.npz")})


for _upstream in ("S", "M"):
  for _arch in ARCHS:
    registry.register(_published(_upstream, _arch))
# The miniature BiT: pre-trained by this project on 4,500 real MNIST digits (see
# experiments/miniature/pretrain.py and the .json beside the weights).
registry.register(_bundled("BiT-MNIST-R14x0.25", (1, 1, 1, 1), 0.25, 10))
