"""Eval throughput of BiT-R50x1 through bit-eval's own loop, at 128 and 384 px.

  .venv/bin/python benchmarks/bench_eval.py                 # both resolutions
  .venv/bin/python benchmarks/bench_eval.py --crops 384 --batch 16

Runs what `bit-eval` runs: 224x224 JPEGs held in memory -> pipeline.eval_dataset
(decode, resize to the crop, padded batches) -> evaluators/metrics.make_eval_step under a
OneDeviceStrategy -> metrics.evaluate, whose images/second leaves out the first
(compiling) batch. The model is the native R50x1 with random weights: throughput
depends on the architecture and resolution, not on the weights. Each figure is the
best of `--repeats` runs, since other processes may share the cores.
"""

import argparse
import io
import json
import os

import numpy as np
from PIL import Image
import tensorflow as tf

from bit_train.evaluators import metrics as metrics_lib
from bit_train.data import pipeline
from bit_train.data import sources
from bit_train.models import registry
from bit_train.models.bit import network

NUM_CLASSES = 1000


def jpegs(count, size=224, seed=0):
  rng = np.random.default_rng(seed)
  encoded = []
  for _ in range(count):
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
        buffer, "JPEG", quality=90)
    encoded.append(buffer.getvalue())
  return encoded


def eval_rate(model, strategy, encoded, crop, batch):
  labels = np.arange(len(encoded)) % NUM_CLASSES
  examples = sources.Examples(
      name="memory", split="eval", class_names=tuple(map(str, range(NUM_CLASSES))),
      read=lambda: tf.data.Dataset.from_tensor_slices(
          (tf.constant(encoded), tf.constant(labels, tf.int32))))
  step = metrics_lib.make_eval_step(model, strategy, NUM_CLASSES)
  dataset = strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.eval_dataset(examples, crop, batch, ctx))
  metrics = metrics_lib.evaluate(step, dataset)
  assert metrics.count == len(encoded)
  return metrics.images_per_second


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--crops", type=int, nargs="+", default=[128, 384])
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--batches", type=int, default=4,
                      help="timed batches per run (one more compiles)")
  parser.add_argument("--repeats", type=int, default=2)
  args = parser.parse_args()
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  spec = registry.lookup("BiT-S-R50x1")
  with strategy.scope():
    model = network.ResNetV2(*spec.arch, NUM_CLASSES, seed=0)
  encoded = jpegs(args.batch * (args.batches + 1))
  results = {}
  for crop in args.crops:
    rates = [eval_rate(model, strategy, encoded, crop, args.batch)
             for _ in range(args.repeats)]
    results[f"{crop}px"] = round(max(rates), 1)
    print(f"R50x1 eval at {crop}x{crop}, batch {args.batch}: {max(rates):.1f} img/s "
          f"(runs: {', '.join(f'{r:.1f}' for r in rates)})", flush=True)
  print(json.dumps({"model": "BiT-R50x1 (random init)", "batch": args.batch,
                    "images_per_second": results, "cpus": os.cpu_count(),
                    "load_average": [round(x, 2) for x in os.getloadavg()]}))


if __name__ == "__main__":
  main()
