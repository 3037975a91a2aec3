"""The paper's standard and few-shot transfer suites on the authors' datasets.

Every run is the transfer config with the HyperRule deciding the recipe; the
datasets' splits are the authors' (the table of known datasets in
bit_train/data/sources/tfds.py). Weights come from the authors' .npz files (every
architecture has one; R152x2 has no TF Hub module).
"""

from experiments.runs import Run, config_arg

ARCHS = ("R50x1", "R50x3", "R101x1", "R101x3", "R152x2", "R152x4")
MODELS = tuple(f"BiT-{family}-{arch}" for family in "SM" for arch in ARCHS)
DATASETS = ("cifar10", "cifar100", "oxford_iiit_pet", "oxford_flowers102", "imagenet2012")
FEW_SHOTS = (1, 5, 10, 25)
IMAGENET_FEW_SHOTS = (1, 5)
FEW_SHOT_SEEDS = (0, 1, 2, 3, 4)  # the authors' README: at least 5 runs per few-shot row
CONFIG = "transfer"
# Flowers-102's train split holds exactly 10 images per class.
MAX_SHOTS = {"oxford_flowers102": 10}


def transfer_run(suite, model, dataset, shots, seed):
  fields = dict(dataset=dataset, model=model, model_source="npz", seed=seed)
  blocked = ""
  if shots != "full":
    fields.update(examples_per_class=shots, few_shot_seed=seed)
    most = MAX_SHOTS.get(dataset)
    if most is not None and shots > most:
      blocked = (f"{dataset}'s train split has only {most} examples per class; "
                 f"{shots}-shot needs a larger split")
  return Run(suite=suite, dataset=dataset, model=model, shots=str(shots), seed=seed,
             config=f"{CONFIG}:{config_arg(**fields)}", blocked=blocked)


def standard_runs():
  """Full data, one seed. ILSVRC-2012 from BiT-M only: BiT-S was trained on it."""
  return [transfer_run("standard", model, dataset, "full", 0)
          for model in MODELS for dataset in DATASETS
          if not (dataset == "imagenet2012" and model.startswith("BiT-S"))]


def fewshot_runs():
  """Few-shot subsets picked by few_shot_seed = seed, 5 seeds; ILSVRC-2012 from BiT-M."""
  runs = []
  for model in MODELS:
    for dataset in DATASETS:
      if dataset == "imagenet2012" and model.startswith("BiT-S"):
        continue
      shots = IMAGENET_FEW_SHOTS if dataset == "imagenet2012" else FEW_SHOTS
      runs += [transfer_run("fewshot", model, dataset, k, seed)
               for k in shots for seed in FEW_SHOT_SEEDS]
  return runs
