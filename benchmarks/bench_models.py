"""Throughput of the native BiT ResNet-v2 against a stock tf_keras baseline.

  .venv/bin/python benchmarks/bench_models.py            # R50x1, 128 px, batch 32
  .venv/bin/python benchmarks/bench_models.py --jit      # both models under XLA

Measures in one run: training steps (forward, backward, SGD-momentum update) and
forward passes per second for the native model and for the baseline
(benchmarks/baseline_resnetv2.py), this machine's fp32 matmul peak (a large
matmul), and the FLOPs of each step counted from the traced graphs by TensorFlow's
profiler (the same for both models).

It also times the native network with every Group Norm replaced by a bare ReLU
("convs_only": the same convolutions, weight standardisation and update, and no
normalisation). Both models run the same convolutions, so the baseline's rate over
that one is the most any choice of Group Norm can win: the ceiling of the speed-up. Each figure is the best of `--repeats` timed
runs of `--steps` calls, taken in turn for all functions, since other processes may
share the cores.
"""

import argparse
import json
import time

import numpy as np
import tensorflow as tf

import baseline_resnetv2  # benchmarks/, the script's own folder

from bit_train.models import bit
from bit_train.models.bit import network
from bit_train.models.bit import npz


def timed_rate(fn, items, steps):
  """items/second over `steps` calls."""
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  out.numpy()
  return items * steps / (time.perf_counter() - start)


def best_rates(fns, items, steps, repeats):
  """{name: best items/second}; `fns` and `items` map names to functions and to the
  items one call does. The functions are timed in turn in every repeat, so that
  load from other processes on the shared cores hits them alike."""
  for fn in fns.values():
    fn().numpy()  # trace and warm up
  rates = {name: [] for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      rates[name].append(timed_rate(fn, items[name], steps))
  return {name: max(r) for name, r in rates.items()}


def counted_flops(concrete_fn):
  """FLOPs of one call of a traced function, as TensorFlow's profiler counts them."""
  from tensorflow.python.profiler import model_analyzer  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import option_builder  # pylint: disable=g-import-not-at-top
  opts = option_builder.ProfileOptionBuilder(
      option_builder.ProfileOptionBuilder.float_operation()).with_empty_output().build()
  return model_analyzer.profile(concrete_fn.graph, options=opts).total_float_ops


def matmul(n=4096):
  """A large fp32 matmul (2 n^3 FLOPs a call): this machine's practical peak."""
  a = tf.random.normal([n, n])
  b = tf.random.normal([n, n])
  return tf.function(lambda: tf.reduce_sum(tf.matmul(a, b))), 2 * n**3


class ConvsOnly(network.ResNetV2):
  """The native network with each Group Norm + ReLU replaced by a ReLU."""

  def _norm(self, x, prefix):
    return tf.nn.relu(x)

  @property
  def trainable_variables(self):
    return [v for key, v in self.params.items() if "group_norm" not in key]


def make_steps(model, variables, images, labels, jit):
  """tf.functions for one SGD-momentum training step and one forward pass."""
  slots = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

  @tf.function(jit_compile=jit)
  def train_step():
    with tf.GradientTape() as tape:
      logits = model(images, training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, logits))
    for var, slot, grad in zip(variables, slots, tape.gradient(loss, variables)):
      slot.assign(0.9 * slot + grad)
      var.assign_sub(0.003 * slot)
    return loss

  @tf.function(jit_compile=jit)
  def forward():
    return tf.reduce_sum(model(images, training=False))

  return train_step, forward


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", default="R50x1", choices=list(bit.ARCHS))
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--jit", action="store_true", help="compile both with XLA")
  args = parser.parse_args()
  units, width = bit.ARCHS[args.arch]
  rng = np.random.default_rng(0)
  images = tf.constant(rng.uniform(size=(args.batch, args.image_size,
                                         args.image_size, 3)), tf.float32)
  labels = tf.constant(rng.integers(0, 10, args.batch))

  native = network.ResNetV2(units, width, 10)
  native.params[npz.HEAD_KERNEL].assign(
      tf.random.normal(native.params[npz.HEAD_KERNEL].shape, stddev=0.01))
  baseline = baseline_resnetv2.baseline_resnetv2(units, width, 10, args.image_size)
  baseline_resnetv2.copy_weights(native, baseline)
  gap = float(tf.reduce_max(tf.abs(native(images) - baseline(images))))

  convs_only = ConvsOnly(units, width, 10)

  fns = {}
  for name, model in (("native", native), ("baseline", baseline),
                      ("convs_only", convs_only)):
    train_step, forward = make_steps(model, list(model.trainable_variables), images,
                                     labels, args.jit)
    fns[f"{name}_train"], fns[f"{name}_forward"] = train_step, forward
  # Native and baseline do the same arithmetic: count it on the native graphs.
  flops = {name: counted_flops(fn.get_concrete_function()) / args.batch
           for name, fn in fns.items() if not name.startswith("baseline")}
  flops.update({f"baseline_{kind}": flops[f"native_{kind}"]
                for kind in ("train", "forward")})
  items = {name: args.batch for name in fns}
  fns["matmul"], items["matmul"] = matmul()
  rates = best_rates(fns, items, args.steps, args.repeats)
  peak = rates.pop("matmul")
  report = {"arch": args.arch, "image_size": args.image_size, "batch": args.batch,
            "jit": args.jit, "max_logit_difference": gap,
            "matmul_peak_gflops": peak / 1e9,
            **{f"{name}_gflops_per_img": f / 1e9 for name, f in flops.items()}}
  for name, rate in rates.items():
    report[f"{name}_img_per_s"] = rate
    report[f"{name}_fraction_of_peak"] = rate * flops[name] / peak
    print(f"{name:19s} {rate:6.1f} img/s  {flops[name] / 1e9:.2f} GFLOP/img  "
          f"{rate * flops[name] / peak:.1%} of matmul peak", flush=True)
  for kind in ("train", "forward"):
    report[f"{kind}_speedup"] = (report[f"native_{kind}_img_per_s"] /
                                 report[f"baseline_{kind}_img_per_s"])
    report[f"{kind}_speedup_ceiling"] = (report[f"convs_only_{kind}_img_per_s"] /
                                         report[f"baseline_{kind}_img_per_s"])
  print(f"matmul peak {peak / 1e9:.0f} GFLOP/s; speed-up native/baseline: train "
        f"{report['train_speedup']:.2f}x (ceiling {report['train_speedup_ceiling']:.2f}x), "
        f"forward {report['forward_speedup']:.2f}x (ceiling "
        f"{report['forward_speedup_ceiling']:.2f}x); max |logit difference| {gap:.1e}")
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
