"""The trainer's loop and evaluation against their bare steps, side by side in one process.

  .venv/bin/python benchmarks/bench_loop.py [--repeats 3]

Rows, each a ratio with its target (issue 14):
  train 32/1     R50x1, 128 px, batch 32, batch_split 1: `Trainer.fit_step` (what the
                 loop runs each step: the real train stream from a JPEG folder, the
                 step, the host reads of loss and finiteness) against the bare step
                 of bench_models.py (forward, backward, SGD-momentum update on one
                 constant batch) of the same model. Target >= 0.95.
  train 512/16   batch 512 in 16 micro-batches of 32 against 16 bare steps of 32. At
                 64 px (R50x1 at 128 px takes ~30 s a step on 2 cores): the same
                 parameters on a quarter of the pixels, so any per-step overhead of
                 the accumulation weighs 4x more than at 128 px. Target >= 0.95.
  eval           `Trainer.evaluate` (a new iterator over the eval stream decoded
                 from JPEGs, the eval step, the sums read back) over 288 images,
                 against as many bare forward passes at the same batch (32) and
                 resolution (128 px). Target >= 0.9.
What the loop adds besides (a log line with 3 scalars every log_every steps,
checkpoints, periodic evaluations) depends on the config, not on the step.

Other processes may share the cores, so in every repeat each pair is timed back to
back; the ratio is given for the best rate of each, and as the median and range of
the repeats' paired ratios; once per wall time and once per CPU time of this
process (all threads: the input pipeline's included), the steadier of the two when
the machine is shared.
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
import tensorflow as tf

import bench_models  # benchmarks/, the script's own folder
from bit_train import config as bit_config
from bit_train import distribute
from bit_train import specs
from bit_train.data import sources
from bit_train.data.patterns import write_pattern_folder
from bit_train.trainer import Trainer

TARGETS = {"train": 0.95, "eval": 0.9}


def make_trainer(folder, batch, split, crop, precision="float32"):
  config = bit_config.apply_arg(bit_config.base_config(), (
      f"dataset=image_folder,data_dir={folder},model=BiT-M-R50x1,model_source=native,"
      f"batch_size={batch},batch_split={split},mixup_alpha=0.0,strategy=cpu,"
      f"precrop={crop},crop={crop},supports=1/1000/2000,precision={precision}"))
  source = sources.for_training(specs.data_spec(config))
  plan = specs.recipe(config).plan(source.facts.num_examples, source.facts.image_size)
  trainer = Trainer(specs.from_config(config, evals=True), plan, source, distribute.create_strategy(specs.run_spec(config)))
  trainer.start_data()
  return trainer


def bare_steps(trainer):
  """The bare training step and forward pass of the trainer's own model, on one
  constant micro-batch."""
  plan = trainer.plan
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(size=(plan.micro_batch_size, plan.crop, plan.crop,
                                         3)), tf.float32)
  labels = tf.constant(rng.integers(0, trainer.num_classes, plan.micro_batch_size))
  return bench_models.make_steps(trainer.model, trainer.variables, images, labels,
                                 jit=False)


def rate(fn, items):
  """items per second of one call of fn (which waits for its result): of wall time,
  and of this process's CPU time (all its threads), which other processes on the
  shared cores disturb much less."""
  wall, cpu = time.perf_counter(), time.process_time()
  fn()
  return (items / (time.perf_counter() - wall), items / (time.process_time() - cpu))


def train_pair(trainer, steps):
  """(bare, trainer) functions doing `steps` global steps' worth of images."""
  bare, _ = bare_steps(trainer)
  split = trainer.plan.batch_split
  counter = iter(range(10**9))

  def run_bare():
    for _ in range(steps * split):
      loss = bare()
    loss.numpy()

  def run_trainer():
    for _ in range(steps):
      trainer.fit_step(next(counter))
  return run_bare, run_trainer, steps * trainer.plan.batch_size


def eval_pair(trainer, batches):
  """(bare, trainer) functions evaluating `batches` batches of the micro-batch size."""
  _, forward = bare_steps(trainer)

  def run_bare():
    for _ in range(batches):
      out = forward()
    out.numpy()

  def run_trainer():
    assert trainer.evaluate()[0].metrics.count == batches * trainer.plan.micro_batch_size
  return run_bare, run_trainer, batches * trainer.plan.micro_batch_size


def summary(name, bare, trainer, target):
  paired = np.array(trainer) / np.array(bare)
  best = max(trainer) / max(bare)
  row = {"row": name, "bare_img_per_s": max(bare), "trainer_img_per_s": max(trainer),
         "ratio": best, "paired_median": float(np.median(paired)),
         "paired_min": float(paired.min()), "paired_max": float(paired.max()),
         "target": target}
  print(f"{name:20s} bare {max(bare):6.2f} img/s  trainer {max(trainer):6.2f} img/s  "
        f"ratio {best:.3f} (paired: median {np.median(paired):.3f}, "
        f"{paired.min():.3f}-{paired.max():.3f})  target >= {target}  "
        f"{'met' if best >= target else 'NOT MET'}", flush=True)
  return row


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--steps", type=int, default=3, help="timed steps at batch 32")
  parser.add_argument("--rows", default="train32,train512,eval")
  args = parser.parse_args()
  rows = args.rows.split(",")
  root = tempfile.mkdtemp()
  # 120 train and 288 eval 64x64 JPEGs (3 classes); 288 = 9 eval batches of 32.
  write_pattern_folder(os.path.join(root, "train"), per_class=40, size=64, fmt="jpg")
  write_pattern_folder(os.path.join(root, "test"), per_class=96, size=64, fmt="jpg",
                       seed=1)
  pairs = {}
  if "train32" in rows or "eval" in rows:
    small = make_trainer(root, 32, 1, 128)
    if "train32" in rows:
      pairs["train 32/1"] = (*train_pair(small, args.steps), TARGETS["train"])
    if "eval" in rows:
      pairs["eval"] = (*eval_pair(small, 9), TARGETS["eval"])
  if "train512" in rows:
    pairs["train 512/16"] = (*train_pair(make_trainer(root, 512, 16, 64), 1),
                             TARGETS["train"])
  for name, (bare, trainer, items, _) in pairs.items():  # trace and warm up
    bare()
    trainer()
  rates = {(name, clock): ([], []) for name in pairs for clock in ("wall", "cpu")}
  for repeat in range(args.repeats):
    for name, (bare, trainer, items, _) in pairs.items():
      for i, fn in enumerate((bare, trainer)):
        wall, cpu = rate(fn, items)
        rates[name, "wall"][i].append(wall)
        rates[name, "cpu"][i].append(cpu)
    print(f"repeat {repeat + 1} (wall img/s, bare/trainer): " + ", ".join(
        f"{name} {r[0][-1]:.2f}/{r[1][-1]:.2f}" for (name, clock), r in rates.items()
        if clock == "wall"), flush=True)
  print(f"R50x1, {os.cpu_count()} CPU cores, load average "
        f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; best of {args.repeats}; "
        "img/s of wall time, then of the process's CPU time")
  report = [summary(f"{name} ({clock})", *rates[name, clock], pairs[name][3])
            for name in pairs for clock in ("wall", "cpu")]
  print(json.dumps(report))


if __name__ == "__main__":
  main()
