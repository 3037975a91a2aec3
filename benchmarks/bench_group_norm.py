"""Ways to compute Group Norm + ReLU, forward and backward, on one activation.

  .venv/bin/python benchmarks/bench_group_norm.py                  # R50 block 1, batch 32
  .venv/bin/python benchmarks/bench_group_norm.py --shape 32,8,8,1024
  .venv/bin/python benchmarks/bench_group_norm.py --dtype bfloat16  # as mixed_bfloat16 runs

Times one training-style call (forward, then gradients for the input, gamma and
beta) of each way, in turn, best of `--repeats`. "relu" is the floor: no
normalisation at all. The figure that matters is each way's cost above that floor,
since the convolutions around Group Norm are the same whichever way is used
(docs/performance.md, "The native model against tf_keras").

  native       bit_train.models.bit.group_norm_relu (what the model uses: its
               gradient written by hand)
  native_xla   the same, compiled with XLA
  autodiff     the same forward with TensorFlow's autodiff gradient (the model's
               until the gradient was written by hand)
  fused_bn     FusedBatchNormV3 over a transposed view (one "channel" per example
               and group), then gamma, beta and ReLU
  tf_keras     tf_keras.layers.GroupNormalization, then ReLU (the baseline's layer)

With --dtype bfloat16 the activation is bfloat16 (gamma and beta stay float32, as
in the model under precision=mixed_bfloat16), and only relu, native, native_xla and
autodiff run; times are then CPU seconds of this process as well as wall time.
"""

import argparse
import json
import time

import tensorflow as tf
import tf_keras

from bit_train.models.bit import network
from bit_train.models.bit import npz


def relu(x, gamma, beta, groups):
  del gamma, beta, groups
  return tf.nn.relu(x)


def native(x, gamma, beta, groups):
  return network.group_norm_relu(x, gamma, beta, groups)


def autodiff(x, gamma, beta, groups):
  """native's forward, its gradient left to TensorFlow's autodiff (what the model
  used until its gradient was written by hand)."""
  return network.group_norm_relu_forward(x, gamma, beta, groups)[0]


def fused_bn(x, gamma, beta, groups):
  batch, height, width, channels = x.shape
  per_group = channels // groups
  # [B, HW, G, C/G] -> [HW, C/G, B, G]: each (example, group) becomes one channel.
  view = tf.transpose(tf.reshape(x, [batch, height * width, groups, per_group]),
                      [1, 3, 0, 2])
  view = tf.reshape(view, [1, height * width, per_group, batch * groups])
  normed, *_ = tf.raw_ops.FusedBatchNormV3(
      x=view, scale=tf.ones([batch * groups]), offset=tf.zeros([batch * groups]),
      mean=tf.zeros([0]), variance=tf.zeros([0]), epsilon=network.GN_EPS,
      data_format="NHWC", is_training=True)
  normed = tf.transpose(tf.reshape(normed, [height * width, per_group, batch, groups]),
                        [2, 0, 3, 1])
  return tf.nn.relu(tf.reshape(normed, x.shape) * gamma + beta)


def keras_layer(shape, gamma, beta):
  """tf_keras GroupNormalization + ReLU with the given gamma and beta, and its
  variables."""
  layer = tf_keras.layers.GroupNormalization(npz.groups_for(shape[-1]),
                                             epsilon=network.GN_EPS)
  layer.build(shape)
  layer.gamma.assign(gamma)
  layer.beta.assign(beta)
  return lambda x, *_: tf.nn.relu(layer(x)), layer.trainable_variables


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--shape", default="32,32,32,256", help="B,H,W,C")
  parser.add_argument("--calls", type=int, default=5)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                      help="the activation's dtype")
  args = parser.parse_args()
  shape = [int(s) for s in args.shape.split(",")]
  groups = npz.groups_for(shape[-1])
  x = tf.Variable(tf.cast(tf.random.normal(shape), args.dtype))
  gamma = tf.Variable(tf.random.uniform(shape[-1:]) + 0.5)
  beta = tf.Variable(tf.random.normal(shape[-1:]))
  weights = tf.random.normal(shape)
  tf_keras_gn, keras_vars = keras_layer(shape, gamma, beta)
  ways = {"relu": relu, "native": native,
          "native_xla": tf.function(native, jit_compile=True),
          "autodiff": autodiff, "fused_bn": fused_bn, "tf_keras": tf_keras_gn}
  if args.dtype != "float32":  # the other two ways are float32 layers
    del ways["fused_bn"], ways["tf_keras"]
  variables_of = {name: [x] + ([] if name == "relu" else
                               keras_vars if name == "tf_keras" else [gamma, beta])
                  for name in ways}

  def step(way, variables):
    @tf.function
    def call():
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.cast(way(x, gamma, beta, groups), tf.float32) * weights)
      return tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32))
                       for g in tape.gradient(loss, variables)])
    return call

  # Every way must give the model's gradients (input, gamma, beta).
  with tf.GradientTape(persistent=True) as tape:
    losses = {name: tf.reduce_sum(tf.cast(way(x, gamma, beta, groups), tf.float32)
                                  * weights)
              for name, way in ways.items() if name != "relu"}
  reference = tape.gradient(losses["native"], variables_of["native"])
  gaps = {}
  for name, loss in losses.items():
    grads = tape.gradient(loss, variables_of[name])
    gaps[name] = max(float(tf.reduce_max(tf.abs(tf.cast(g - r, tf.float32)))
                           / tf.reduce_max(tf.abs(tf.cast(r, tf.float32))))
                     for g, r in zip(grads, reference))

  steps = {name: step(way, variables_of[name]) for name, way in ways.items()}
  for call in steps.values():
    call().numpy()
  times = {name: [] for name in steps}
  cpu_times = {name: [] for name in steps}
  for _ in range(args.repeats):
    for name, call in steps.items():
      start, cpu_start = time.perf_counter(), time.process_time()
      for _ in range(args.calls):
        out = call()
      out.numpy()
      times[name].append((time.perf_counter() - start) / args.calls)
      cpu_times[name].append((time.process_time() - cpu_start) / args.calls)
  best = {name: min(t) * 1e3 for name, t in times.items()}
  best_cpu = {name: min(t) * 1e3 for name, t in cpu_times.items()}
  floor, cpu_floor = best["relu"], best_cpu["relu"]
  report = {"shape": shape, "groups": groups, "dtype": args.dtype, "ms": best,
            "cpu_ms": best_cpu,
            "cost_over_relu_ms": {n: t - floor for n, t in best.items() if n != "relu"},
            "cpu_cost_over_relu_ms": {n: t - cpu_floor for n, t in best_cpu.items()
                                      if n != "relu"},
            "gradient_gap_vs_native": gaps}
  for name, ms in best.items():
    cpu = best_cpu[name]
    extra = ("" if name == "relu" else
             f"  {ms - floor:6.2f} ms over relu  "
             f"{(ms - floor) / (best['native'] - floor):.2f}x native's cost; CPU "
             f"{cpu - cpu_floor:6.2f} ms over relu  "
             f"{(cpu - cpu_floor) / (best_cpu['native'] - cpu_floor):.2f}x")
    print(f"{name:11s} {ms:7.2f} ms (CPU {cpu:7.2f} ms){extra}", flush=True)
  print(json.dumps(report, indent=2))


if __name__ == "__main__":
  main()
