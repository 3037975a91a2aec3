"""Transfer against training from scratch, in miniature: the table in the README.

  python experiments/miniature/transfer_table.py [--seeds 3] [--out experiments/miniature/results]

For k = 1, 5, 10 examples per class and the full training split of the digit scans
(scikit-learn, written as an image folder), at least 3 seeds each:
  transfer   bit-train fine-tunes the bundled BiT-MNIST-R14x0.25 (HyperRule, the
             demo's CPU budget from configs/quickstart.py)
  scratch    the same network, config and budget from random initialisation
             (model_source=native)
  probe      a linear classifier (logistic regression) on the frozen pre-logits of
             the bundled model, fitted on the same k examples
Every number is top-1 on the same held-out 10 % of every class (179 scans). Seed s
picks the few-shot examples (few_shot_seed=s) and the run's seed (seed=s). Writes
transfer.md (the table, the command, the run time) and transfer.json (every run).
This is a measurement, not a test: it takes minutes.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bit_train import console  # pylint: disable=wrong-import-position

console.quiet_native_logs(script=True)  # before TensorFlow is imported
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from write_digits import write_digits  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODEL = "BiT-MNIST-R14x0.25"


def fine_tune(data, workdir, k, seed, source):
  """Top-1 of one bit-train run (a subprocess, as a user runs it)."""
  config = (f"configs/quickstart.py:data_dir={data},model={MODEL},"
            f"model_source={source},seed={seed},few_shot_seed={seed}")
  if k != "full":
    config += f",examples_per_class={k}"
  result = subprocess.run([sys.executable, "-m", "bit_train.train", "--config", config,
                           "--workdir", workdir], cwd=ROOT, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f"bit-train failed ({config}):\n{result.stderr[-2000:]}")
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)["top1"]


def linear_probe(data, k, seed):
  """Top-1 of logistic regression on the bundled model's frozen pre-logits."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from bit_train import config as bit_config  # pylint: disable=g-import-not-at-top
  from bit_train.data import preprocess  # pylint: disable=g-import-not-at-top
  from bit_train.data import sources  # pylint: disable=g-import-not-at-top
  from bit_train.models import create_model  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, os.path.join(ROOT, "configs"))
  import quickstart  # pylint: disable=g-import-not-at-top
  config = quickstart.get_config(f"data_dir={data},model_source=npz,few_shot_seed={seed}"
                                 + ("" if k == "full" else f",examples_per_class={k}"))
  bit_config.validate(config)
  source = sources.from_config(config)
  model = create_model(config, source.num_classes)

  def features(dataset):
    batches = dataset.map(lambda e, y: (preprocess.eval_image(e, config.crop), y)).batch(256)
    xs, ys = zip(*[(model.pre_logits(x).numpy(), y.numpy()) for x, y in batches])
    return np.concatenate(xs), np.concatenate(ys)

  train_x, train_y = features(source.train_examples().read())
  eval_x, eval_y = features(source.eval_examples().read())
  probe = LogisticRegression(max_iter=5000, C=1.0).fit(train_x, train_y)
  del tf
  return float(np.mean(probe.predict(eval_x) == eval_y))


def mean_std(values):
  return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}"


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--shots", default="1,5,10,full")
  parser.add_argument("--data", default="workdirs/digits")
  parser.add_argument("--out", default="experiments/miniature/results")
  args = parser.parse_args()
  os.chdir(ROOT)
  start = time.time()
  write_digits(args.data)
  shots = [s if s == "full" else int(s) for s in args.shots.split(",")]
  runs = []
  with tempfile.TemporaryDirectory() as tmp:
    for k in shots:
      for seed in range(args.seeds):
        row = {"k": k, "seed": seed}
        for source, column in (("npz", "transfer"), ("native", "scratch")):
          row[column] = fine_tune(args.data, os.path.join(tmp, f"{column}-{k}-{seed}"),
                                  k, seed, source)
        row["probe"] = linear_probe(args.data, k, seed)
        runs.append(row)
        print(json.dumps(row), flush=True)
  minutes = (time.time() - start) / 60
  command = "python experiments/miniature/transfer_table.py " + " ".join(sys.argv[1:])
  lines = [
      "| examples per class | transfer (fine-tune) | scratch (same budget) | "
      "linear probe (frozen) |",
      "| --- | --- | --- | --- |"]
  for k in shots:
    rows = [r for r in runs if r["k"] == k]
    lines.append(f"| {k} | " + " | ".join(
        mean_std([r[c] for r in rows]) for c in ("transfer", "scratch", "probe")) + " |")
  text = "\n".join(lines + [
      "", f"Top-1 % on the 179 held-out scans, mean ± standard deviation over "
      f"{args.seeds} seeds. `{command.strip()}`: {minutes:.0f} min on "
      f"{os.cpu_count()} CPU cores."])
  os.makedirs(args.out, exist_ok=True)
  with open(os.path.join(args.out, "transfer.md"), "w") as f:
    f.write(text + "\n")
  with open(os.path.join(args.out, "transfer.json"), "w") as f:
    json.dump({"command": command.strip(), "minutes": round(minutes, 1),
               "runs": runs}, f, indent=1)
  print(text)


if __name__ == "__main__":
  main()
