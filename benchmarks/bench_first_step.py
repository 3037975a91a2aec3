"""Where the first step's time goes: tracing the step's graph in Python against its
first run (graph optimisation, kernels' set-up), with and without Grappler.

R50x1 (native), 128 px, batch 32, the real trainer on a generated JPEG folder, one
process per variant (TensorFlow's optimizer options are process-wide):

  .venv/bin/python benchmarks/bench_first_step.py

prints, per variant: imports, set-up (dataset scan, model build, train stream), the
Python tracing of the step (`get_concrete_function`), its first call, a steady step
and the graph's operation count. `--variants default` runs one. Not a test.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = {"default": {}, "no_grappler": {"disable_meta_optimizer": True}}


def child(folder, variant, started):
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  from bit_train import config as bit_config, distribute, specs  # pylint: disable=import-outside-toplevel
  from bit_train import mixup  # pylint: disable=import-outside-toplevel
  from bit_train.data import sources  # pylint: disable=import-outside-toplevel
  from bit_train.trainer import Trainer  # pylint: disable=import-outside-toplevel
  imported = time.time()
  tf.config.optimizer.set_experimental_options(VARIANTS[variant])
  config = bit_config.apply_arg(bit_config.base_config(), (
      f"dataset=image_folder,data_dir={folder},model=BiT-M-R50x1,model_source=native,"
      "batch_size=32,batch_split=1,mixup_alpha=0.0,strategy=cpu,supports=1/5/6"))
  source = sources.for_training(specs.data_spec(config))
  plan = specs.recipe(config).plan(source.facts.num_examples, source.facts.image_size)
  trainer = Trainer(specs.from_config(config, evals=True), plan, source, distribute.create_strategy(specs.run_spec(config)))
  trainer.start_data()
  set_up = time.time()
  # The one-micro-batch step's tf.function, traced without running it.
  graph = trainer.train_step.get_concrete_function(
      trainer.train_iter, tf.constant(plan.lr(0), tf.float32),
      mixup.sample_lambda(plan.mixup_alpha, config.seed, 0)).graph
  traced = time.time()
  trainer.fit_step(0)
  first = time.time()
  trainer.fit_step(1)
  second = time.time()
  trainer.fit_step(2)
  steady = (time.time() - second + second - first) / 2
  print(f"| {variant} | {imported - started:.1f} | {set_up - imported:.1f} | "
        f"{traced - set_up:.1f} | {first - traced:.1f} | {steady:.2f} | "
        f"{first - started:.1f} | {len(graph.get_operations()):,} |", flush=True)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--child", nargs=3)  # folder, variant, start time
  args = parser.parse_args()
  if args.child:
    child(args.child[0], args.child[1], float(args.child[2]))
    return
  from bit_train.data.patterns import write_pattern_folder  # pylint: disable=import-outside-toplevel
  folder = write_pattern_folder(tempfile.mkdtemp(), per_class=40, size=64, fmt="jpg")
  print("R50x1, 128 px, batch 32; seconds\n")
  print("| variant | imports | set-up | tracing (Python) | first call | steady step | "
        "to the end of step 1 | graph ops |")
  print("| --- | --- | --- | --- | --- | --- | --- | --- |")
  for variant in args.variants.split(","):
    out = subprocess.run([sys.executable, __file__, "--child", folder, variant,
                          str(time.time())], capture_output=True, text=True, cwd=ROOT)
    rows = [l for l in out.stdout.splitlines() if l.startswith("|")]
    if not rows:
      sys.exit(out.stderr[-3000:])
    print(rows[0], flush=True)


if __name__ == "__main__":
  main()
