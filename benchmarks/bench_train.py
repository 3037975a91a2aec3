"""End-to-end training benchmark: R50x1 at 128 px, global batch 32, on this machine.

  .venv/bin/python benchmarks/bench_train.py [--steps 6] [--splits 1,2,4]

For each batch_split k a fresh process runs the real trainer (config -> source ->
plan -> Trainer) on a generated JPEG folder and reports:
  - time to the first step: from process start to the end of step 1, broken down
    into imports (Python start-up included), dataset scan (the folder's images are
    decoded once to check them), model build (Trainer: model, optimizer, eval
    stream), train stream, tracing (the first step beyond a steady one) and one step
  - training img/s over the steps after the first (tracing excluded)
  - peak memory (max RSS) before the first step and after the last; their
    difference is the memory the steps themselves need, mostly activations,
    which should fall roughly as 1/k.
Random-init native weights: speed and memory do not depend on the weights.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

FIRST_STEP_TARGET_S = 15  # R50x1 at 128 px, from process start (issue 14)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def max_rss_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(folder, batch_split, steps, started):
  """One measured run (in its own process so peak memory is its own)."""
  marks = {}
  import tensorflow as tf  # pylint: disable=unused-import
  from bit_train import config as bit_config, distribute, specs
  from bit_train.data import sources
  from bit_train.trainer import Trainer
  marks["imports"] = time.time()

  config = bit_config.apply_arg(bit_config.base_config(), (
      f"dataset=image_folder,data_dir={folder},model=BiT-M-R50x1,model_source=native,"
      f"batch_size=32,batch_split={batch_split},mixup_alpha=0.0,strategy=cpu,"
      f"supports=1/{steps + 1}/{steps + 2}"))
  strategy = distribute.create_strategy(specs.run_spec(config))
  source = sources.for_training(specs.data_spec(config))
  plan = specs.recipe(config).plan(source.facts.num_examples, source.facts.image_size)
  marks["dataset scan"] = time.time()
  trainer = Trainer(specs.from_config(config, evals=True), plan, source, strategy)
  marks["model build"] = time.time()
  trainer.start_data()
  marks["train stream"] = time.time()
  rss_before = max_rss_mb()
  times = []
  for step in range(steps):
    trainer.fit_step(step)  # what the loop runs; waits for the step
    times.append(time.time())
  measured = steps - 1
  step_s = (times[-1] - times[0]) / measured
  marks["first step"] = times[0]
  phases, last = {}, started
  for name, when in marks.items():
    phases[name] = when - last
    last = when
  # The first step's time beyond a steady step: tracing, graph optimisation and
  # the kernels' first-call set-up.
  phases["tracing"] = phases.pop("first step") - step_s
  phases["one step"] = step_s
  return {"batch_split": batch_split, "crop": plan.crop,
          "first_step_s": times[0] - started, "phases_s": phases,
          "img_per_s": plan.batch_size / step_s,
          "rss_before_mb": rss_before, "rss_peak_mb": max_rss_mb(),
          "step_mb": max_rss_mb() - rss_before}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=6)
  parser.add_argument("--splits", default="1,2,4")
  parser.add_argument("--child", nargs=3)  # folder, batch_split, start time
  args = parser.parse_args()
  if args.child:
    folder, split, started = args.child
    print("RESULT " + json.dumps(child(folder, int(split), args.steps, float(started))))
    return
  from bit_train.data.patterns import write_pattern_folder
  folder = write_pattern_folder(tempfile.mkdtemp(), per_class=40, size=64, fmt="jpg")
  rows = []
  for split in map(int, args.splits.split(",")):
    out = subprocess.run([sys.executable, __file__, "--steps", str(args.steps),
                          "--child", folder, str(split), str(time.time())],
                         capture_output=True, text=True, cwd=ROOT)
    line = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if not line:
      sys.exit(out.stderr[-3000:])
    rows.append(json.loads(line[0][7:]))
  print(f"R50x1, {rows[0]['crop']} px, global batch 32, {args.steps} steps, "
        f"{os.cpu_count()} CPU cores")
  print("| batch_split | img/s | first step (s) | max RSS before steps (MB) | "
        "max RSS after (MB) | added by steps (MB) | vs k=1 |")
  print("| --- | --- | --- | --- | --- | --- | --- |")
  for r in rows:
    print(f"| {r['batch_split']} | {r['img_per_s']:.1f} | {r['first_step_s']:.1f} | "
          f"{r['rss_before_mb']:.0f} | {r['rss_peak_mb']:.0f} | {r['step_mb']:.0f} | "
          f"{r['step_mb'] / rows[0]['step_mb']:.2f} |")
  for r in rows:
    print(f"time to first step, batch_split {r['batch_split']}: "
          f"{r['first_step_s']:.1f} s (target <= {FIRST_STEP_TARGET_S} s: "
          f"{'met' if r['first_step_s'] <= FIRST_STEP_TARGET_S else 'NOT MET'}) = " +
          " + ".join(f"{name} {s:.1f}" for name, s in r["phases_s"].items()))


if __name__ == "__main__":
  main()
