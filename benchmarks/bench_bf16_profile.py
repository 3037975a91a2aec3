"""Where the training step's time goes in float32 and in bfloat16, by op type.

  .venv/bin/python benchmarks/bench_bf16_profile.py [--rounds 3] [--top 25]

R50x1 at 128 px, batch 32: the bare step of bench_models.py (forward, backward,
SGD-momentum update) of the native model in each compute dtype, traced with
TensorFlow's profiler, one step per precision per round, the precisions alternating.
Ops run one at a time (one inter-op thread, every
core for each op's own work), so each op's span on that thread is its cost and the
spans add up to the step; they are summed per op type, and the table shows each
type's median over the rounds in ms per step. "convolutions" are the Conv2D ops
with their two gradients and the head's MatMul; everything else (Group Norm, Weight
Standardisation, casts, padding and pooling, the update) is "outside". The
figure to shrink is bfloat16's outside share: on hardware whose matrix units make
bfloat16 convolutions much cheaper, it decides the step.

The trace's spans stretch when other processes take the cores, so the second part
measures the same shares another way: the step of the network with every Group Norm
replaced by its ReLU (bench_models.ConvsOnly), with Weight Standardisation left out
("no_ws"), and with both, all timed in turn in each of `--rounds` rounds in CPU
seconds of this process (which other processes' load changes much less than wall
time). Each one's share of the step is 1 - rate(full) / rate(ablated), the median of
the rounds.
"""

import argparse
import collections
import glob
import json
import os
import re
import tempfile
import time

import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import bench_bf16  # benchmarks/, the script's own folder
import bench_models

from bit_train.models import bit
from bit_train.models.bit import network

# Matched inside op type names such as _MklNativeConv2DBackpropInput.
CONVOLUTIONS = ("Conv2D", "MatMul")
OP_EVENT = re.compile(r"^[^:\s]+:(\w+)$")  # "scope/name:OpType"


def op_seconds(fn, logdir):
  """{op type: seconds} of one call of `fn` (which runs its step to the end), from
  a profiler trace."""
  tf.profiler.experimental.start(logdir)
  fn()
  tf.profiler.experimental.stop()
  newest = max(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True),
               key=os.path.getmtime)
  space = xplane_pb2.XSpace()
  with open(newest, "rb") as f:
    space.ParseFromString(f.read())
  seconds = collections.Counter()
  for plane in space.planes:
    if plane.name != "/host:CPU":
      continue
    for line in plane.lines:
      if not line.name.startswith("tf_Compute"):  # the inter-op threads
        continue
      for event in line.events:
        match = OP_EVENT.match(plane.event_metadata[event.metadata_id].name)
        if match:
          seconds[match.group(1)] += event.duration_ps * 1e-12
  return seconds


class NoWeightStandardisation(network.ResNetV2):
  """The native network whose convolutions take their kernels as they are."""

  def _kernel(self, key):
    return tf.cast(self.params[key], self.compute_dtype)


class ConvsOnlyNoWeightStandardisation(NoWeightStandardisation,
                                       bench_models.ConvsOnly):
  pass


ABLATIONS = {"full": network.ResNetV2, "no_group_norm": bench_models.ConvsOnly,
             "no_ws": NoWeightStandardisation,
             "neither": ConvsOnlyNoWeightStandardisation}


def cpu_rate(fn, items, steps):
  """items per CPU-second of this process over `steps` calls."""
  start = time.process_time()
  for _ in range(steps):
    out = fn()
  out.numpy()
  return items * steps / (time.process_time() - start)


def ablation_shares(args, images, labels):
  """{precision: {part: median share of the step}} from ablated networks."""
  units, width = bit.ARCHS[args.arch]
  fns = {}
  for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16)):
    for ablation, cls in ABLATIONS.items():
      model = cls(units, width, 10, compute_dtype=dtype)
      fns[name, ablation], _ = bench_models.make_steps(
          model, list(model.trainable_variables), images, labels, jit=False)
      fns[name, ablation]().numpy()
  rates = {key: [] for key in fns}
  for _ in range(args.rounds):
    for key, fn in fns.items():
      rates[key].append(cpu_rate(fn, args.batch, 2))
  shares = {}
  for name in ("float32", "bfloat16"):
    full = rates[name, "full"]
    shares[name] = {ablation: float(np.median([1 - f / a for f, a in zip(
        full, rates[name, ablation])])) for ablation in ABLATIONS if ablation != "full"}
    shares[name]["img_per_cpu_second"] = {
        ablation: float(np.median(rates[name, ablation])) for ablation in ABLATIONS}
  return shares


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arch", default="R50x1", choices=list(bit.ARCHS))
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--top", type=int, default=25, help="op types to list")
  args = parser.parse_args()
  tf.config.threading.set_inter_op_parallelism_threads(1)
  flags = bench_bf16.cpu_bf16_flags()
  print(f"CPU bfloat16 flags: {', '.join(flags) if flags else 'none'}", flush=True)
  images, labels = bench_bf16.random_batch(args.image_size, args.batch)
  steps = {name: train_step for name, (train_step, _) in bench_bf16.precision_steps(
      args.arch, images, labels).items()}
  for name in steps:
    steps[name]().numpy()  # trace and warm up
    steps[name]().numpy()
  per_round = {name: [] for name in steps}
  with tempfile.TemporaryDirectory() as logdir:
    for _ in range(args.rounds):
      for name, step in steps.items():
        per_round[name].append(op_seconds(lambda: step().numpy(), logdir))
  types = set().union(*(r for rounds in per_round.values() for r in rounds))
  ms = {name: {t: 1e3 * float(np.median([r[t] for r in rounds])) for t in types}
        for name, rounds in per_round.items()}
  report = {"cpu_bf16_flags": flags, "arch": args.arch, "image_size": args.image_size,
            "batch": args.batch, "ms_per_step": ms}
  print(f"{'op type':28s} {'float32 ms':>11s} {'bfloat16 ms':>12s}")
  for t in sorted(types, key=lambda t: -max(ms["float32"][t], ms["bfloat16"][t])
                  )[:args.top]:
    print(f"{t:28s} {ms['float32'][t]:11.1f} {ms['bfloat16'][t]:12.1f}")
  for name in steps:
    total = sum(ms[name].values())
    convs = sum(t_ms for t, t_ms in ms[name].items()
                if any(conv in t for conv in CONVOLUTIONS))
    report[f"{name}_total_ms"], report[f"{name}_outside_ms"] = total, total - convs
    report[f"{name}_outside_share"] = (total - convs) / total
    print(f"{name:9s} ops {total:7.1f} ms/step: convolutions {convs:7.1f} ms, outside "
          f"{total - convs:7.1f} ms ({(total - convs) / total:.0%} of the step)")
  report["ablation_shares"] = shares = ablation_shares(args, images, labels)
  print("\nshare of the step (CPU time, ablated networks, median of rounds):")
  for name, parts in shares.items():
    print(f"{name:9s} Group Norm {parts['no_group_norm']:.0%}, Weight Standardisation "
          f"{parts['no_ws']:.0%}, both {parts['neither']:.0%}")
  rates = {name: parts["img_per_cpu_second"] for name, parts in shares.items()}
  for ablation in ABLATIONS:
    f32, bf16 = rates["float32"][ablation], rates["bfloat16"][ablation]
    print(f"img per CPU-second, {ablation:14s} float32 {f32:5.1f}  bfloat16 {bf16:5.1f}  "
          f"bfloat16/float32 {bf16 / f32:.2f}x")
  print(json.dumps(report))


if __name__ == "__main__":
  main()
