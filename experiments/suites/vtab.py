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

Labels (task_adaptation's definitions): most tasks predict TFDS's class label;
smallNORB predicts its `label_azimuth` / `label_elevation`; dSprites bins
`label_x_position` (32 -> 16) and `label_orientation` (40 -> 16); CLEVR and KITTI
derive theirs from the objects feature (bit_train/data/sources/tfds_labels.py).

Augmentation: the paper (Section 3.3) omits random crops or flips where they destroy
the label. dSprites location and orientation train without random crops and without
flips (a mirror moves the x position and turns the orientation); DMLab trains
without random crops. Without a random crop the image is resized straight to the
crop size (precrop = crop).
"""

import dataclasses

from bit_train import hyperrule
from experiments.runs import Run, config_arg
from experiments.suites import paper

EXAMPLES = 1000
SHOTS = "vtab1k"  # the protocol, in the run's name and the references' key
SEEDS = (0, 1, 2)  # the paper reports the median of 3 fine-tuning runs


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  builder: str  # TFDS name:version as task_adaptation loads it
  group: str  # natural | specialized | structured
  num_classes: int
  image_size: tuple
  label: str  # the label_key: a TFDS class feature, FEATURE/C (binned) or a derived label
  val: str  # "validation" or "<p>% of <N>": val200 starts after p % of TFDS train
  test: str = "test"
  manual: str = ""  # where a manual download goes (TFDS manual_dir), if needed
  random_crop: bool = True  # False: resized straight to the crop size
  flip: bool = True  # random left-right flips

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


TASKS = (
    # natural
    Task("caltech101", "caltech101:3.*.*", "natural", 102, (300, 200), "label",
         "90% of 3060"),
    Task("cifar100", "cifar100:3.*.*", "natural", 100, (32, 32), "label",
         "90% of 50000"),
    Task("dtd", "dtd:3.*.*", "natural", 47, (500, 500), "label", "validation"),
    Task("oxford_flowers102", "oxford_flowers102:2.*.*", "natural", 102, (500, 500),
         "label", "validation"),
    Task("oxford_iiit_pet", "oxford_iiit_pet:4.*.*", "natural", 37, (400, 500), "label",
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
    Task("clevr_count", "clevr:3.*.*", "structured", 8, (320, 480), "count_all",
         "90% of 70000", test="validation"),
    Task("clevr_distance", "clevr:3.*.*", "structured", 6, (320, 480),
         "closest_object_distance", "90% of 70000", test="validation"),
    Task("dmlab", "dmlab:2.0.1", "structured", 6, (360, 480), "label", "validation",
         random_crop=False),
    Task("kitti_distance", "kitti:3.2.0", "structured", 4, (375, 1242),
         "closest_vehicle_distance", "validation"),
    Task("dsprites_location", "dsprites:2.*.*", "structured", 16, (64, 64),
         "label_x_position/16", "80% of 737280", test="train[90%:]", random_crop=False,
         flip=False),
    Task("dsprites_orientation", "dsprites:2.*.*", "structured", 16, (64, 64),
         "label_orientation/16", "80% of 737280", test="train[90%:]", random_crop=False,
         flip=False),
    Task("smallnorb_azimuth", "smallnorb:2.*.*", "structured", 18, (96, 96),
         "label_azimuth", "test", test="test[50%:]"),
    Task("smallnorb_elevation", "smallnorb:2.*.*", "structured", 9, (96, 96),
         "label_elevation", "test", test="test[50%:]"),
)
TASK_BY_NAME = {t.name: t for t in TASKS}
GROUPS = ("natural", "specialized", "structured")


def task_run(model, task, seed):
  fields = dict(dataset=task.builder, model=model, model_source="npz", seed=seed,
                train_split=task.train800val200, eval_split=task.test,
                num_examples=EXAMPLES, num_classes=task.num_classes,
                image_size=task.image_size,
                label_key=None if task.label == "label" else task.label)
  if not task.random_crop:
    crop = hyperrule.get_resolution(task.image_size)[1]
    fields.update(precrop=crop, crop=crop)
  if not task.flip:
    fields.update(flip=False)
  return Run(suite="vtab", dataset=task.name, model=model, shots=SHOTS, seed=seed,
             config=f"{paper.CONFIG}:{config_arg(**fields)}")


def runs(models=paper.MODELS, seeds=SEEDS):
  return [task_run(model, task, seed) for model in models for task in TASKS
          for seed in seeds]
