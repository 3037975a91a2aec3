"""VTAB-1k: 19 tasks from TFDS with the task_adaptation splits, fine-tuned with the
HyperRule for 1,000 examples (500 steps, no MixUp; 160/128 for images under 96x96,
else 512/480).

For every task: `train800` is `train[:800]`; `val200` is the 200 examples after the
task's own train split (a share of TFDS's train split, given below as a percentage
of its size) or `validation[:200]`; the final run trains on `train800val200` (the
two joined, 1,000 examples) and is scored on the task's test split. These are the
split strings of google-research/task_adaptation's data modules.

Image sizes: fixed sizes are TFDS's feature shapes; for variable-size tasks a
typical size (the rule asks only whether the area is under 96x96, and every such
task is far above it). num_examples, num_classes and image_size are given to the
trainer, so the suite plans without any data on disk.

What bit_train cannot run yet is marked `blocked` with the reason: it reads a
dataset's class label `label` (or its only ClassLabel) from 3-channel images, while
some tasks predict another feature, a label derived from object features, or a
binned attribute, on single-channel images.
"""

import dataclasses

from experiments.runs import Run, config_arg
from experiments.suites import paper

EXAMPLES = 1000


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  builder: str  # TFDS name:version as task_adaptation loads it
  group: str  # natural | specialized | structured
  num_classes: int
  image_size: tuple
  label: str  # the TFDS feature the task predicts (or what it is derived from)
  val: str  # "validation" or "<p>% of <N>": val200 starts after p % of TFDS train
  test: str = "test"
  manual: str = ""  # where a manual download goes (TFDS manual_dir), if needed
  blocked: str = ""

  @property
  def val200(self):
    if self.val == "validation":
      return "validation[:200]"
    if self.val == "test":
      return "test[:200]"
    percent, size = self.val.split("% of ")
    start = int(percent) * int(size) // 100
    return f"train[{start}:{start + 200}]"

  @property
  def train800(self):
    return "train[:800]"

  @property
  def train800val200(self):
    return f"{self.train800}+{self.val200}"


def _derived(label, why):
  return f"label {label}: {why}; bit_train reads the class label `label` only"


TASKS = (
    # natural
    Task("caltech101", "caltech101:3.*.*", "natural", 102, (300, 200), "label",
         "90% of 3060"),
    Task("cifar100", "cifar100:3.*.*", "natural", 100, (32, 32), "label",
         "90% of 50000"),
    Task("dtd", "dtd:3.*.*", "natural", 47, (500, 500), "label", "validation"),
    Task("oxford_flowers102", "oxford_flowers102:2.*.*", "natural", 102, (500, 500),
         "label", "validation"),
    Task("oxford_iiit_pet", "oxford_iiit_pet:3.*.*", "natural", 37, (400, 500), "label",
         "80% of 3680"),
    Task("sun397", "sun397/tfds:4.*.*", "natural", 397, (300, 400), "label",
         "validation"),
    Task("svhn", "svhn_cropped:3.*.*", "natural", 10, (32, 32), "label",
         "90% of 73257"),
    # specialized
    Task("patch_camelyon", "patch_camelyon:2.*.*", "specialized", 2, (96, 96), "label",
         "validation"),
    Task("eurosat", "eurosat/rgb:2.*.*", "specialized", 10, (64, 64), "label",
         "60% of 27000", test="train[21600:]"),
    Task("resisc45", "resisc45:3.*.*", "specialized", 45, (256, 256), "label",
         "60% of 31500", test="train[25200:]",
         manual="NWPU-RESISC45.rar from the dataset's authors into the TFDS manual_dir"),
    Task("diabetic_retinopathy",
         "diabetic_retinopathy_detection/btgraham-300:3.*.*", "specialized", 5,
         (300, 300), "label", "validation",
         manual="the Kaggle competition's files into the TFDS manual_dir"),
    # structured
    Task("clevr_count", "clevr:3.*.*", "structured", 8, (320, 480),
         "objects (count - 3)", "90% of 70000", test="validation",
         blocked=_derived("count of objects - 3", "derived from the objects feature")),
    Task("clevr_distance", "clevr:3.*.*", "structured", 6, (320, 480),
         "objects (closest distance, 6 bins)", "90% of 70000", test="validation",
         blocked=_derived("closest object distance", "derived from the objects feature")),
    Task("dmlab", "dmlab:2.0.1", "structured", 6, (360, 480), "label", "validation"),
    Task("kitti_distance", "kitti:3.2.0", "structured", 4, (375, 1242),
         "objects (closest vehicle distance, 4 bins)", "validation",
         blocked=_derived("closest vehicle distance", "derived from the objects feature")),
    Task("dsprites_location", "dsprites:2.*.*", "structured", 16, (64, 64),
         "label_x_position (32 -> 16 bins)", "80% of 737280", test="train[90%:]",
         blocked=_derived("label_x_position", "binned 32 -> 16, single-channel images")),
    Task("dsprites_orientation", "dsprites:2.*.*", "structured", 16, (64, 64),
         "label_orientation (40 -> 16 bins)", "80% of 737280", test="train[90%:]",
         blocked=_derived("label_orientation", "binned 40 -> 16, single-channel images")),
    Task("smallnorb_azimuth", "smallnorb:2.*.*", "structured", 18, (96, 96),
         "label_azimuth", "test", test="test[50%:]",
         blocked=_derived("label_azimuth", "single-channel images")),
    Task("smallnorb_elevation", "smallnorb:2.*.*", "structured", 9, (96, 96),
         "label_elevation", "test", test="test[50%:]",
         blocked=_derived("label_elevation", "single-channel images")),
)
TASK_BY_NAME = {t.name: t for t in TASKS}
GROUPS = ("natural", "specialized", "structured")


def task_run(model, task, seed):
  fields = dict(dataset=task.builder, model=model, model_source="npz", seed=seed,
                train_split=task.train800val200, eval_split=task.test,
                num_examples=EXAMPLES, num_classes=task.num_classes,
                image_size=task.image_size)
  return Run(suite="vtab", dataset=task.name, model=model, shots="full", seed=seed,
             config=f"{paper.CONFIG}:{config_arg(**fields)}", blocked=task.blocked)


def runs(models=paper.MODELS, seeds=(0,)):
  return [task_run(model, task, seed) for model in models for task in TASKS
          for seed in seeds]
