"""BiT-HyperRule: the fine-tuning recipe, chosen from dataset size and image size.

The four functions users know from the authors' code keep their names and meaning:
`get_resolution`, `get_mixup`, `get_schedule`, `get_lr`. A `Recipe` holds the user's
overrides (None: the rule decides); `Recipe.plan` (or `plan()`) gathers the rule's
answers and the overrides into one immutable `Plan` that the rest of the run follows.

Pure standard-library code, so it can be audited against the paper (arXiv 1912.11370).
"""

import dataclasses

from bit_train.errors import UserError

REFERENCE_BATCH = 512  # the batch size the recipe's learning rate is stated for
REFERENCE_LR = 0.003
SMALL_IMAGE_AREA = 96 * 96
RESOLUTION_RULES = ("code", "paper")
LR_SCALINGS = ("linear", "none")
MANY_EPOCHS = 200  # a schedule this long over the data is worth a note


def get_resolution(original_resolution, rule="code"):
  """(H, W) of the dataset's images -> (precrop, crop) training sizes.

  Small images (area < 96*96) are resized to 160 and cropped to 128. Larger ones go
  to 512/480 as in the authors' code (`rule="code"`), or 448/384 as the paper's text
  says (`rule="paper"`).
  """
  if rule not in RESOLUTION_RULES:
    raise UserError(f"resolution_rule={rule!r} is not known: use one of "
                    f"{', '.join(RESOLUTION_RULES)}.")
  height, width = original_resolution
  if height * width < SMALL_IMAGE_AREA:
    return (160, 128)
  return (512, 480) if rule == "code" else (448, 384)


def get_mixup(dataset_size):
  """MixUp alpha: none for small datasets, 0.1 from 20k examples on."""
  return 0.0 if dataset_size < 20_000 else 0.1


def get_schedule(dataset_size):
  """The schedule "supports": (warmup steps, decay points..., total steps)."""
  if dataset_size < 20_000:
    return [100, 200, 300, 400, 500]
  if dataset_size < 500_000:
    return [500, 3000, 6000, 9000, 10000]
  return [500, 6000, 12000, 18000, 20000]


def lr_at(step, supports, base_lr):
  """Learning rate at `step` for a schedule given by its supports; None when done.

  Linear warmup over supports[0] steps, then base_lr divided by 10 for every decay
  point s with s < step; training stops at step >= supports[-1].
  """
  if step < supports[0]:
    return base_lr * step / supports[0]
  if step >= supports[-1]:
    return None
  for decay_point in supports[1:-1]:
    if decay_point < step:
      base_lr /= 10
  return base_lr


def get_lr(step, dataset_size, base_lr=REFERENCE_LR):
  """The authors' learning rate function: None once training is over."""
  return lr_at(step, get_schedule(dataset_size), base_lr)


@dataclasses.dataclass(frozen=True)
class Plan:
  """Everything the recipe decides for one run. Immutable; saved with the run."""
  dataset: str
  num_examples: int
  image_size: tuple
  precrop: int
  crop: int
  mixup_alpha: float
  supports: tuple  # (warmup, *decay points, total)
  base_lr: float  # learning rate after warmup, at this run's batch size
  batch_size: int  # global batch, summed over replicas and micro-batches
  batch_split: int  # micro-batches per update (gradient accumulation)
  resolution_rule: str
  lr_scaling: str
  overridden: tuple  # plan fields the user set instead of the rule
  flip: bool  # random left-right flips (False for orientation-bound data)

  @property
  def warmup_steps(self):
    return self.supports[0]

  @property
  def decay_points(self):
    return self.supports[1:-1]

  @property
  def total_steps(self):
    return self.supports[-1]

  @property
  def epochs(self):
    """Passes over the training examples the schedule makes."""
    return self.total_steps * self.batch_size / self.num_examples

  @property
  def micro_batch_size(self):
    return self.batch_size // self.batch_split

  def lr(self, step):
    """Learning rate at `step`, None when training is over."""
    return lr_at(step, self.supports, self.base_lr)

  def to_dict(self):
    record = dataclasses.asdict(self)
    record["image_size"] = list(self.image_size)
    record["supports"] = list(self.supports)
    record["overridden"] = list(self.overridden)
    return record

  def describe(self):
    """The plan as lines a person reads; an override says what the rule would pick."""
    rule_precrop, rule_crop = get_resolution(self.image_size, self.resolution_rule)
    rule = {"resolution": f"{rule_precrop}/{rule_crop}",
            "mixup_alpha": get_mixup(self.num_examples),
            "supports": list(get_schedule(self.num_examples)),
            "batch_size": REFERENCE_BATCH, "flip": "random left-right flips",
            "base_lr": f"{REFERENCE_LR:g} at batch {REFERENCE_BATCH}"}

    def mark(*fields):
      if not set(fields) & set(self.overridden):
        return ""
      return f"  (set by you; the HyperRule: {rule[fields[0]]})"
    h, w = self.image_size
    epochs = self.epochs
    return "\n".join([
        f"BiT-HyperRule plan for {self.dataset or 'dataset'}",
        f"  examples (n)     {self.num_examples:,}",
        f"  image size       {h}x{w}",
        f"  resolution       resize to {self.precrop}, random crop {self.crop}"
        f" (rule: {self.resolution_rule}){mark('resolution', 'precrop', 'crop')}",
        f"  flip             {'random left-right' if self.flip else 'none'}{mark('flip')}",
        f"  mixup_alpha      {self.mixup_alpha}{mark('mixup_alpha')}",
        f"  supports         {list(self.supports)}: warmup {self.warmup_steps}, "
        f"decays at {list(self.decay_points)}, {self.total_steps:,} steps "
        f"(~{epochs:.1f} epochs){mark('supports')}",
        f"  batch            {self.batch_size} global, batch_split "
        f"{self.batch_split} -> {self.micro_batch_size} per micro-batch"
        f"{mark('batch_size')}",
        f"  lr used          {self.base_lr:.3g} after warmup{self._lr_origin()}"
        f"{mark('base_lr')}",
    ])

  def _lr_origin(self):
    """How the learning rate used follows from base_lr (stated at batch 512)."""
    if self.lr_scaling != "linear" or self.batch_size == REFERENCE_BATCH:
      return f" (lr_scaling: {self.lr_scaling})"
    stated = self.base_lr * REFERENCE_BATCH / self.batch_size
    return (f" = base_lr {stated:g} x batch {self.batch_size}/{REFERENCE_BATCH} "
            "(lr_scaling: linear)")

  def warnings(self):
    """What in this plan may waste a run, each as one line with what to do."""
    found = []
    if self.lr_scaling == "linear" and self.batch_size < REFERENCE_BATCH:
      stated = self.base_lr * REFERENCE_BATCH / self.batch_size
      keep = (f"set batch_size={REFERENCE_BATCH},batch_split="
              f"{REFERENCE_BATCH // self.micro_batch_size} (micro-batches of "
              f"{self.micro_batch_size}, the same memory per step)"
              if REFERENCE_BATCH % self.micro_batch_size == 0 else
              f"set batch_size={REFERENCE_BATCH} with a batch_split that fits memory")
      found.append(
          f"batch_size={self.batch_size} scales the learning rate down to "
          f"{self.base_lr:.2g} ({stated:g} x {self.batch_size}/{REFERENCE_BATCH}), "
          f"which may be too small to learn in {self.total_steps:,} steps: to keep "
          f"the recipe's {stated:g} at batch {REFERENCE_BATCH}, {keep}.")
    if self.batch_size > self.num_examples:
      found.append(
          f"batch_size={self.batch_size} is {self.batch_size / self.num_examples:.1f}x "
          f"the {self.num_examples:,} training examples: each step sees every image "
          f"~{self.batch_size / self.num_examples:.0f} times, "
          f"{self.total_steps * self.batch_size:,} images in {self.total_steps:,} "
          "steps.")
    epochs = self.epochs
    if epochs >= MANY_EPOCHS:
      found.append(
          f"{self.total_steps:,} steps of batch {self.batch_size} are ~{epochs:,.0f} "
          f"epochs of {self.num_examples:,} examples (the HyperRule's schedule for "
          f"{'fewer than 20k' if self.num_examples < 20_000 else 'this many'} "
          "examples): the time it takes is estimated once the first steps are timed.")
    return found


def check_batch_split(batch_size, batch_split):
  """Both positive, and batch_split micro-batches make up the batch exactly."""
  if batch_size < 1 or batch_split < 1:
    raise UserError(f"batch_size={batch_size}, batch_split={batch_split}: both "
                    "must be positive.")
  if batch_size % batch_split:
    raise UserError(f"batch_size={batch_size} is not divisible by batch_split="
                    f"{batch_split}: choose a batch_split that divides it.")


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The recipe fields a user sets; None leaves the choice to the rule. `plan`
  applies the rule to one dataset.

  `base_lr` is the learning rate at the reference batch of 512. With
  lr_scaling="linear" a smaller (or larger) global batch scales it by batch/512.
  """
  batch_size: int = REFERENCE_BATCH
  batch_split: int = 1
  base_lr: float = REFERENCE_LR
  resolution_rule: str = "code"
  lr_scaling: str = "linear"
  precrop: int | None = None
  crop: int | None = None
  mixup_alpha: float | None = None
  supports: tuple | None = None
  flip: bool | None = None

  def __post_init__(self):
    check_batch_split(self.batch_size, self.batch_split)

  @property
  def micro_batch_size(self):
    return self.batch_size // self.batch_split

  def plan(self, num_examples, image_size, dataset=""):
    """The Plan for a dataset of `num_examples` images of typical `image_size`."""
    if num_examples < 1:
      raise UserError(f"num_examples={num_examples}: the dataset has no examples.")
    if self.lr_scaling not in LR_SCALINGS:
      raise UserError(f"lr_scaling={self.lr_scaling!r} is not known: use one of "
                      f"{', '.join(LR_SCALINGS)}.")
    precrop, crop, mixup_alpha, supports, flip = (
        self.precrop, self.crop, self.mixup_alpha, self.supports, self.flip)
    batch_size, base_lr = self.batch_size, self.base_lr
    overridden = []
    rule_precrop, rule_crop = get_resolution(image_size, self.resolution_rule)
    if precrop is not None or crop is not None:
      overridden += [f for f, v in (("precrop", precrop), ("crop", crop))
                     if v is not None]
    precrop = rule_precrop if precrop is None else precrop
    crop = rule_crop if crop is None else crop
    if crop < 1 or precrop < crop:
      raise UserError(f"precrop={precrop}, crop={crop}: need 0 < crop <= precrop.")
    if mixup_alpha is None:
      mixup_alpha = get_mixup(num_examples)
    else:
      overridden.append("mixup_alpha")
      if mixup_alpha < 0:
        raise UserError(f"mixup_alpha={mixup_alpha}: must be >= 0 (0 turns MixUp off).")
    if supports is None:
      supports = get_schedule(num_examples)
    else:
      overridden.append("supports")
      supports = tuple(int(s) for s in supports)
      if (len(supports) < 2 or supports[0] < 0
          or any(a >= b for a, b in zip(supports, supports[1:]))):
        raise UserError(f"supports={list(supports)}: need at least (warmup, total) "
                        "steps, strictly increasing, warmup >= 0.")
    if base_lr <= 0:
      raise UserError(f"base_lr={base_lr}: must be positive.")
    if base_lr != REFERENCE_LR:
      overridden.append("base_lr")
    if batch_size != REFERENCE_BATCH:
      overridden.append("batch_size")
    if flip is None:
      flip = True
    else:
      overridden.append("flip")
    if self.lr_scaling == "linear":
      base_lr = base_lr * batch_size / REFERENCE_BATCH
    return Plan(
        dataset=dataset, num_examples=int(num_examples),
        image_size=tuple(int(s) for s in image_size), precrop=int(precrop),
        crop=int(crop), mixup_alpha=float(mixup_alpha), supports=tuple(supports),
        base_lr=float(base_lr), batch_size=int(batch_size),
        batch_split=int(self.batch_split), resolution_rule=self.resolution_rule,
        lr_scaling=self.lr_scaling, overridden=tuple(overridden), flip=bool(flip))


def plan(num_examples, image_size, *, dataset="", **recipe):
  """Applies the HyperRule to one dataset; any Recipe field given here overrides it."""
  return Recipe(**recipe).plan(num_examples, image_size, dataset)
