"""Does precision=mixed_bfloat16 reach float32's accuracy? The quickstart's real transfer.

  .venv/bin/python benchmarks/bench_bf16_accuracy.py [--seeds 0,1,2,3] [--shots full]

The miniature BiT transfer of the quickstart (the quickstart config: the bundled
BiT-MNIST-R14x0.25 fine-tuned on scikit-learn's digit scans, 200 steps of 64 at
32 px) run by bit-train in each precision for every seed, scored on the same
held-out 10 % of every class (179 scans). model_source=npz, since TF Hub modules
run in float32 whatever the precision. Prints top-1 per run, each precision's mean
and seed spread, and whether bfloat16's mean lies within float32's seed range.
This measures accuracy, not speed: it runs wherever bfloat16 is slow too.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PRECISIONS = ("float32", "mixed_bfloat16")


def top1(data, workdir, precision, seed, shots):
  config = (f"quickstart:data_dir={data},model_source=npz,"
            f"precision={precision},seed={seed},few_shot_seed={seed}")
  if shots != "full":
    config += f",examples_per_class={shots}"
  began = time.time()
  result = subprocess.run([sys.executable, "-m", "bit_train.train", "--config", config,
                           "--workdir", workdir], cwd=ROOT, capture_output=True, text=True)
  if result.returncode:
    sys.exit(f"bit-train failed ({config}):\n{result.stderr[-2000:]}")
  with open(os.path.join(workdir, "metrics.json")) as f:
    return json.load(f)["top1"], time.time() - began


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seeds", default="0,1,2,3")
  parser.add_argument("--shots", default="full", help="examples per class, or full")
  parser.add_argument("--data", default="workdirs/digits")
  args = parser.parse_args()
  os.chdir(ROOT)
  subprocess.run([sys.executable, "experiments/miniature/write_digits.py", args.data],
                 check=True)
  seeds = [int(s) for s in args.seeds.split(",")]
  runs = {p: [] for p in PRECISIONS}
  with tempfile.TemporaryDirectory() as tmp:
    for seed in seeds:  # the precisions alternate, so shared-machine load hits both
      for precision in PRECISIONS:
        accuracy, seconds = top1(args.data, os.path.join(tmp, f"{precision}-{seed}"),
                                 precision, seed, args.shots)
        runs[precision].append(accuracy)
        print(json.dumps({"precision": precision, "seed": seed, "top1": accuracy,
                          "seconds": round(seconds)}), flush=True)
  f32, bf16 = (np.array(runs[p]) for p in PRECISIONS)
  for name, values in zip(PRECISIONS, (f32, bf16)):
    print(f"{name:15s} top-1 {100 * values.mean():.1f} ± {100 * values.std(ddof=1):.1f} % "
          f"(min {100 * values.min():.1f}, max {100 * values.max():.1f}; "
          f"{len(values)} seeds)")
  diffs = bf16 - f32
  within = f32.min() <= bf16.mean() <= f32.max()
  print(f"bfloat16 - float32 per seed: {', '.join(f'{100 * d:+.1f}' for d in diffs)} "
        f"points (mean {100 * diffs.mean():+.1f}); bfloat16's mean is "
        f"{'within' if within else 'OUTSIDE'} float32's seed range "
        f"[{100 * f32.min():.1f}, {100 * f32.max():.1f}]")
  print(json.dumps({"shots": args.shots, "seeds": seeds, "top1": runs,
                    "mean_difference": float(diffs.mean()),
                    "within_seed_range": bool(within)}))


if __name__ == "__main__":
  main()
