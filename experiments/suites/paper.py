"""The paper's standard and few-shot transfer suites on the authors' datasets.

Every run is the transfer config with the HyperRule deciding the recipe; the
datasets' splits are the authors' (the table of known datasets in
bit_train/data/sources/tfds.py). Weights come from the authors' .npz files (every
architecture has one; R152x2 has no TF Hub module).
"""

from bit_train.models import registry
from experiments.runs import Run, config_arg

# The published BiT-S and BiT-M models, as the model registry names them.
MODELS = tuple(name for name, named in registry.MODELS.items() if not named.bundled)
DATASETS = ("cifar10", "cifar100", "oxford_iiit_pet", "oxford_flowers102", "imagenet2012")
FEW_SHOTS = (1, 5, 10, 25)
IMAGENET_FEW_SHOTS = (1, 5)
FEW_SHOT_SEEDS = (0, 1, 2, 3, 4)  # the authors' README: at least 5 runs per few-shot row
SEEDS = (0, 1, 2)  # full data: the paper reports the median of 3 fine-tuning runs
CONFIG = "transfer"
# ILSVRC-2012 runs are also scored on ReaL labels and ImageNet-V2 (collect's columns);
# `--set extra_evals=` leaves them out.
ILSVRC_EXTRA_EVALS = "imagenet2012_real@validation;imagenet_v2@test"
# Flowers-102's train split holds exactly 10 images per class.
MAX_SHOTS = {"oxford_flowers102": 10}


def transfer_run(suite, model, dataset, shots, seed, note=""):
  fields = dict(dataset=dataset, model=model, model_source="npz", seed=seed)
  if dataset == "imagenet2012":
    fields.update(extra_evals=ILSVRC_EXTRA_EVALS)
  blocked = ""
  if shots != "full":
    fields.update(examples_per_class=shots, few_shot_seed=seed)
    most = MAX_SHOTS.get(dataset)
    if most is not None and shots > most:
      blocked = (f"{dataset}'s train split has only {most} examples per class; "
                 f"{shots}-shot needs a larger split")
  return Run(suite=suite, dataset=dataset, model=model, shots=str(shots), seed=seed,
             config=f"{CONFIG}:{config_arg(**fields)}", blocked=blocked, note=note)


def standard_runs(seeds=SEEDS):
  """Full data, 3 seeds; every model on every dataset. BiT-S on ILSVRC-2012 is
  fine-tuned with a new head like every other run (the paper's Table 2 row)."""
  return [transfer_run("standard", model, dataset, "full", seed)
          for model in MODELS for dataset in DATASETS for seed in seeds]


def fewshot_seeds(dataset, shots):
  """(seeds, note): one seed when every seed would draw the same examples (the
  train split holds exactly `shots` per class)."""
  if MAX_SHOTS.get(dataset) == shots:
    return FEW_SHOT_SEEDS[:1], (
        f"{dataset}'s train split holds exactly {shots} examples per class: every "
        "seed draws the same examples, so this is one run")
  return FEW_SHOT_SEEDS, ""


def fewshot_runs():
  """Few-shot subsets picked by few_shot_seed = seed, 5 seeds (one where the draw
  cannot differ); ILSVRC-2012 from BiT-M."""
  runs = []
  for model in MODELS:
    for dataset in DATASETS:
      if dataset == "imagenet2012" and model.startswith("BiT-S"):
        continue
      shots = IMAGENET_FEW_SHOTS if dataset == "imagenet2012" else FEW_SHOTS
      for k in shots:
        seeds, note = fewshot_seeds(dataset, k)
        runs += [transfer_run("fewshot", model, dataset, k, seed, note) for seed in seeds]
  return runs
