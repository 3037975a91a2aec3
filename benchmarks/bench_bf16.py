"""Speed of precision=mixed_bfloat16 against float32: the native model's training step
and forward pass in one process, alternating.

  .venv/bin/python benchmarks/bench_bf16.py [--steps 2] [--repeats 3] [--xla]

R50x1 at 128 px, batch 32: the bare steps of bench_models.py for the native model
built with compute_dtype float32 and bfloat16 (what precision=mixed_bfloat16 gives:
float32 variables, statistics, head and logits). Prints whether this CPU has native
bfloat16 arithmetic (the avx512_bf16 or amx_bf16 flags in /proc/cpuinfo): without
it TensorFlow emulates bfloat16 through float32 conversions and the ratio is below 1.
With --xla the training step of each precision is also timed compiled with XLA
(jit_compile, what the config's jit_compile=True does), and the ratio to the same
step without it printed. The accuracy side is benchmarks/bench_bf16_accuracy.py.
"""

import argparse
import json

import numpy as np
import tensorflow as tf

import bench_models  # benchmarks/, the script's own folder

from bit_train.models import bit
from bit_train.models.bit import network

BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags():
  """The bfloat16 instruction-set flags of this CPU (empty when it has none)."""
  try:
    with open("/proc/cpuinfo") as f:
      flags = next((line.split(":", 1)[1].split() for line in f
                    if line.startswith("flags")), [])
  except OSError:
    return None  # not Linux: unknown
  return [flag for flag in BF16_FLAGS if flag in flags]


def random_batch(image_size, batch):
  """(images, labels) of one fixed random batch for 10 classes."""
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(size=(batch, image_size, image_size, 3)), tf.float32)
  return images, tf.constant(rng.integers(0, 10, batch))


def precision_steps(arch, images, labels, jit=False):
  """{"float32" | "bfloat16": (train step, forward)} of the native model of `arch` on
  one batch (bench_models.make_steps), compiled with XLA if `jit`."""
  units, width = bit.ARCHS[arch]
  steps = {}
  for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16)):
    model = network.ResNetV2(units, width, 10, compute_dtype=dtype)
    steps[name] = bench_models.make_steps(model, list(model.trainable_variables),
                                          images, labels, jit=jit)
  return steps


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arch", default="R50x1", choices=list(bit.ARCHS))
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--xla", action="store_true",
                      help="also time each training step compiled with XLA")
  args = parser.parse_args()
  flags = cpu_bf16_flags()
  native = bool(flags)
  print(f"CPU bfloat16 support: {', '.join(flags) if flags else 'none'} "
        f"({'native' if native else 'unknown' if flags is None else 'emulated'} "
        "bfloat16 arithmetic)", flush=True)
  fns = {}
  batch = random_batch(args.image_size, args.batch)
  for name, (train_step, forward) in precision_steps(args.arch, *batch).items():
    fns[f"{name}_train"], fns[f"{name}_forward"] = train_step, forward
  if args.xla:
    for name, (train_step, _) in precision_steps(args.arch, *batch, jit=True).items():
      fns[f"{name}_train_xla"] = train_step
  # Each run of timed calls alternates over all four; the best of the repeats.
  rates = bench_models.best_rates(fns, {name: args.batch for name in fns}, args.steps,
                                  args.repeats)
  report = {"cpu_bf16_flags": flags, "arch": args.arch, "image_size": args.image_size,
            "batch": args.batch}
  for kind in ("train", "forward"):
    f32, bf16 = rates[f"float32_{kind}"], rates[f"bfloat16_{kind}"]
    report[f"{kind}_float32_img_per_s"], report[f"{kind}_bfloat16_img_per_s"] = f32, bf16
    report[f"{kind}_bfloat16_speedup"] = bf16 / f32
    print(f"{kind:8s} float32 {f32:6.2f} img/s  bfloat16 {bf16:6.2f} img/s  "
          f"bfloat16/float32 {bf16 / f32:.2f}x "
          f"({'expect > 1 with native bfloat16' if native else 'expect < 1: emulated'})",
          flush=True)
  if args.xla:
    for name in ("float32", "bfloat16"):
      xla, plain = rates[f"{name}_train_xla"], rates[f"{name}_train"]
      report[f"train_{name}_xla_img_per_s"], report[f"train_{name}_xla_speedup"] = (
          xla, xla / plain)
      print(f"train {name:8s} XLA {xla:6.2f} img/s  XLA/plain {xla / plain:.2f}x",
            flush=True)
  print(json.dumps(report))


if __name__ == "__main__":
  main()
