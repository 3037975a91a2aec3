"""Transfer against training from scratch, in miniature: docs/experiments.md's table.

For k = 1, 5, 10 examples per class and the full training split of the digit scans
(scikit-learn's 1,797 8x8 scans, written as an image folder under R/digits), 3 seeds:
  transfer   bit-train fine-tunes the bundled BiT-MNIST-R14x0.25 (HyperRule, the
             demo's CPU budget from the quickstart config)
  scratch    the same network, config and budget from random initialisation
             (model_source=native)
  probe      a linear classifier on the frozen pre-logits of the bundled model,
             fitted on the same k examples (experiments/miniature/probe.py)
Every number is top-1 on the same held-out 10 % of every class (179 scans). Seed s
picks the few-shot examples (few_shot_seed=s) and the run's seed (seed=s).
"""

import os

from experiments.runs import Run, config_arg

MODEL = "BiT-MNIST-R14x0.25"
SHOTS = (1, 5, 10, "full")
SEEDS = (0, 1, 2)
CONFIG = "quickstart"
# variant -> (program, model_source)
VARIANTS = {"transfer": ("bit_train.train", "npz"),
            "scratch": ("bit_train.train", "native"),
            "probe": ("experiments.miniature.probe", "npz")}


def data_dir(root):
  return os.path.join(os.path.abspath(root), "digits")


def prepare(root):
  """Writes the digit scans the runs read (rewriting the same files takes a second)."""
  from experiments.miniature.write_digits import write_digits  # pylint: disable=g-import-not-at-top
  write_digits(data_dir(root))


def runs(root):
  runs = []
  for k in SHOTS:
    for seed in SEEDS:
      for variant, (program, source) in VARIANTS.items():
        fields = dict(data_dir=data_dir(root), model=MODEL, model_source=source,
                      seed=seed, few_shot_seed=seed,
                      examples_per_class=None if k == "full" else k)
        runs.append(Run(suite="miniature", dataset="digits", model=MODEL, shots=str(k),
                        seed=seed, variant=variant, program=program,
                        config=f"{CONFIG}:{config_arg(**fields)}"))
  return runs
