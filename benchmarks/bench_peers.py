"""The native BiT ResNet-v2 against its peers: timm's in PyTorch, and the tf_keras
baseline, in float32 and bfloat16, in one process.

  pip install -e '.[peers]'     # PyTorch and timm: never a runtime dependency
  .venv/bin/python benchmarks/bench_peers.py             # R50x1, 128 px, batch 32
  .venv/bin/python benchmarks/bench_peers.py --rounds 5 --variants native,timm

Times, for each variant and precision, the bare training step (forward, backward,
SGD-momentum update with momentum 0.9) and the forward pass, random weights:

  native     bit_train.models.bit.ResNetV2 with compute_dtype float32 / bfloat16
             (what precision=mixed_bfloat16 builds), bench_models.make_steps
  timm       timm's resnetv2_50x1_bit (pretrained=False) in NCHW; bfloat16 is
             torch.autocast("cpu", torch.bfloat16)
  timm_cl    the same in channels_last memory format
  baseline   benchmarks/baseline_resnetv2.py, stock tf_keras layers (float32 only)

Every round times each (variant, precision, step) in turn, `--steps` calls each, so
that load from other processes hits them alike. Prints each one's best img/s over
the rounds (what the machine does when no other process takes the cores) and its
median, and every ratio two ways: of the best rates, and the median of the per-round
ratios with their range (how much load from elsewhere moved it).
Both frameworks get the same number of intra-op threads (`--threads`, default: the
cores this process may use). On a machine whose cores other processes share, run it
with OMP_WAIT_POLICY=PASSIVE: PyTorch's OpenMP threads otherwise spin at every
barrier and slow down many times over when the cores are oversubscribed. The
header prints the threads and that policy, the CPU, its bfloat16 flags
(avx512_bf16: bfloat16 dot products in AVX-512; amx_bf16: AMX tiles) and whether
it can check the bfloat16 target: on an AMX machine, native bfloat16 at least level
with timm's, and bfloat16/float32 of the native step at least 1.6x.

`--split` profiles one training step of each variant and precision per round instead
(TensorFlow's profiler for the TensorFlow variants, ops one at a time; PyTorch's for
timm) and prints the median ms per step spent in convolutions (Conv2D and its
gradients, the head's matrix product) and outside them (Group Norm, Weight
Standardisation, casts, ReLU, the update), with the largest ops outside them by
name. On a CPU with AMX, as on GPUs and TPUs,
both frameworks hand their bfloat16 convolutions to matrix units (oneDNN on CPUs),
which do not speed up the rest: the time outside the convolutions then decides the
race, and it is the part of the bfloat16 target a machine without AMX can measure.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

PRECISIONS = ("float32", "bfloat16")
VARIANTS = ("native", "timm", "timm_cl", "baseline")
TARGET_BF16_OVER_F32 = 1.6  # native training step, on AMX
TARGET_NATIVE_OVER_TIMM = 1.0  # native bfloat16 / timm bfloat16, on AMX


def cpu_name():
  try:
    with open("/proc/cpuinfo") as f:
      return next((line.split(":", 1)[1].strip() for line in f
                   if line.startswith("model name")), "unknown")
  except OSError:
    return "unknown"


def tf_steps(model_fn, precision, images, labels):
  """{"train", "forward"}: functions running one TensorFlow call to the end."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  import bench_models  # pylint: disable=import-outside-toplevel
  model = model_fn(tf.float32 if precision == "float32" else tf.bfloat16)
  train, forward = bench_models.make_steps(model, list(model.trainable_variables),
                                           tf.constant(images), tf.constant(labels),
                                           jit=False)
  return {"train": lambda: train().numpy(), "forward": lambda: forward().numpy()}


def timm_steps(precision, images, labels, channels_last):
  """The same two steps for timm's resnetv2_50x1_bit."""
  import timm  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel
  model = timm.create_model("resnetv2_50x1_bit", pretrained=False, num_classes=10)
  x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
  memory_format = torch.channels_last if channels_last else torch.contiguous_format
  model = model.to(memory_format=memory_format)
  x = x.to(memory_format=memory_format)
  y = torch.from_numpy(labels)
  optimizer = torch.optim.SGD(model.parameters(), lr=0.003, momentum=0.9)

  def autocast():
    return torch.autocast("cpu", torch.bfloat16, enabled=precision == "bfloat16")

  def train():
    model.train()
    optimizer.zero_grad(set_to_none=True)
    with autocast():
      loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss.detach())

  def forward():
    model.eval()
    with torch.inference_mode(), autocast():
      return float(model(x).float().sum())

  return {"train": train, "forward": forward}


def build(variants, precisions, args, images, labels):
  """{(variant, precision, kind): function}."""
  from bit_train.models import bit  # pylint: disable=import-outside-toplevel
  from bit_train.models.bit import network  # pylint: disable=import-outside-toplevel
  units, width = bit.ARCHS[args.arch]
  fns = {}
  for variant in variants:
    for precision in precisions:
      if variant == "baseline" and precision != "float32":
        continue  # stock Keras layers, no mixed-precision policy: float32 only
      if variant == "native":
        steps = tf_steps(
            lambda dtype: network.ResNetV2(units, width, 10, compute_dtype=dtype),
            precision, images, labels)
      elif variant == "baseline":
        import baseline_resnetv2  # pylint: disable=import-outside-toplevel
        steps = tf_steps(lambda _: baseline_resnetv2.baseline_resnetv2(
            units, width, 10, args.image_size), precision, images, labels)
      else:
        steps = timm_steps(precision, images, labels, channels_last=variant == "timm_cl")
      for kind, fn in steps.items():
        fns[variant, precision, kind] = fn
  return fns


# What counts as convolution work: TensorFlow op types (e.g.
# _MklNativeConv2DBackpropFilter) and PyTorch op names containing these.
TF_CONVOLUTIONS = ("Conv2D", "MatMul")
TORCH_CONVOLUTIONS = ("convolution", "conv2d", "addmm", "aten::mm", "linear")


def torch_op_ms(fn):
  """{op name: ms} of one call of `fn`, by PyTorch's profiler (each op's self time)."""
  from torch import profiler  # pylint: disable=import-outside-toplevel
  with profiler.profile(activities=[profiler.ProfilerActivity.CPU]) as prof:
    fn()
  return {event.key: event.self_cpu_time_total / 1e3 for event in prof.key_averages()}


def split(fns, rounds):
  """{(variant, precision): (convolution ms, outside ms, {op outside: ms})} of the
  training steps in `fns`, each the median of `rounds` profiled steps, the steps
  taking turns."""
  import tempfile  # pylint: disable=import-outside-toplevel
  import bench_bf16_profile  # pylint: disable=import-outside-toplevel
  steps = {key[:2]: fn for key, fn in fns.items() if key[2] == "train"}
  parts = {key: [] for key in steps}
  with tempfile.TemporaryDirectory() as logdir:
    for r in range(rounds):
      for (variant, precision), fn in steps.items():
        if variant.startswith("timm"):
          ms, kinds = torch_op_ms(fn), TORCH_CONVOLUTIONS
        else:
          ms = {op: 1e3 * sec for op, sec in
                bench_bf16_profile.op_seconds(fn, logdir).items()}
          kinds = TF_CONVOLUTIONS
        outside = {op: t for op, t in ms.items() if not any(k in op for k in kinds)}
        convs = sum(ms.values()) - sum(outside.values())
        parts[variant, precision].append((convs, outside))
      print(f"round {r + 1}/{rounds} profiled", flush=True)
  result = {}
  for key, runs in parts.items():
    outsides = [outside for _, outside in runs]
    ops = {op: statistics.median(run.get(op, 0.) for run in outsides)
           for op in set().union(*outsides)}
    result[key] = (statistics.median(convs for convs, _ in runs),
                   statistics.median(sum(run.values()) for run in outsides), ops)
  return result


def print_split(parts, precisions):
  """The split's table, and native's outside time over each peer's."""
  print(f"\n{'train ms/step (median)':24s}{'convolutions':>14s}{'outside':>10s}"
        f"{'outside share':>15s}")
  for (variant, precision), (convs, outside, _) in parts.items():
    print(f"{variant + ' ' + precision:24s}{convs:14.0f}{outside:10.0f}"
          f"{outside / (convs + outside):15.0%}")
  print()
  for precision in precisions:
    for (variant, p), (_, outside, _) in parts.items():
      if p == precision and variant != "native" and ("native", p) in parts:
        native = parts["native", p][1]
        print(f"outside the convolutions, {precision}: native / {variant} "
              f"{native / outside:.2f}x ({native:.0f} / {outside:.0f} ms)")
  print("\nthe largest ops outside the convolutions, ms/step:")
  for (variant, precision), (_, _, ops) in parts.items():
    largest = sorted(ops.items(), key=lambda item: -item[1])[:8]
    print(f"{variant + ' ' + precision:24s}" + ", ".join(
        f"{op.removeprefix('aten::')} {t:.0f}" for op, t in largest))
  return {"/".join(key): {"convolutions_ms": round(c, 1), "outside_ms": round(o, 1),
                          "outside_ops_ms": {op: round(t, 1) for op, t in ops.items()
                                             if t >= 0.1}}
          for key, (c, o, ops) in parts.items()}


def ratio_line(name, num, den):
  """(ratio of the best rates, a line with it and the per-round ratios' median and
  range)."""
  ratios = [n / d for n, d in zip(num, den)]
  best = max(num) / max(den)
  median = statistics.median(ratios)
  return best, (f"{name:40s} {best:5.2f}x best; per round {median:.2f}x "
                f"[{min(ratios):.2f}, {max(ratios):.2f}]")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--arch", default="R50x1", choices=["R50x1"],
                      help="timm's peer exists for R50x1")
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--batch", type=int, default=32)
  parser.add_argument("--steps", type=int, default=2, help="calls per timing")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
  parser.add_argument("--variants", default=",".join(VARIANTS))
  parser.add_argument("--precisions", default=",".join(PRECISIONS))
  parser.add_argument("--kinds", default="train,forward")
  parser.add_argument("--split", action="store_true",
                      help="profile the training steps: time in and outside the "
                           "convolutions, instead of the rates")
  args = parser.parse_args()
  variants = args.variants.split(",")
  precisions = args.precisions.split(",")
  kinds = ["train"] if args.split else args.kinds.split(",")
  for name, chosen, known in (("variants", variants, VARIANTS),
                              ("precisions", precisions, PRECISIONS),
                              ("kinds", kinds, ("train", "forward"))):
    if not set(chosen) <= set(known):
      parser.error(f"--{name} takes a comma list of {', '.join(known)}")

  # Library start-up lines out of the report: TensorFlow's C++ ones, and PyTorch's
  # profiler's start/stop and GPU-probe lines (KINETO_LOG_LEVEL 6 and up).
  os.environ.setdefault("KINETO_LOG_LEVEL", "6")
  from bit_train import console  # pylint: disable=import-outside-toplevel
  console.quiet_native_logs(script=True)
  threads = {}
  # PyTorch (timm imports torchvision, which loads Triton) first: Triton's LLVM
  # loaded after TensorFlow's crashes the process.
  if any(v.startswith("timm") for v in variants):
    try:
      import timm  # pylint: disable=import-outside-toplevel
      import torch  # pylint: disable=import-outside-toplevel
    except ImportError:
      sys.exit("error: PyTorch and timm are missing: pip install -e '.[peers]' "
               "(or drop the timm variants with --variants native,baseline)")
    torch.set_num_threads(args.threads)
    threads.update(torch_intra_op=torch.get_num_threads(),
                   torch_version=torch.__version__, timm_version=timm.__version__)
  import tensorflow as tf  # pylint: disable=import-outside-toplevel
  tf.config.threading.set_intra_op_parallelism_threads(args.threads)
  if args.split:  # ops one at a time: each op's span is its cost
    tf.config.threading.set_inter_op_parallelism_threads(1)
  threads["tensorflow_intra_op"] = args.threads
  import bench_bf16  # pylint: disable=import-outside-toplevel
  flags = bench_bf16.cpu_bf16_flags() or []
  amx = "amx_bf16" in flags
  threads["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY", "default")
  print(f"CPU: {cpu_name()}; bfloat16 flags: {', '.join(flags) or 'none'}; "
        f"TensorFlow {tf.__version__}; threads {threads}", flush=True)
  print("bfloat16 target (native >= timm, native bf16/f32 >= "
        f"{TARGET_BF16_OVER_F32}x): " + ("checked on this AMX CPU" if amx else
                                         "cannot be checked here (no AMX)"), flush=True)

  rng = np.random.default_rng(0)
  images = rng.uniform(size=(args.batch, args.image_size, args.image_size, 3)
                       ).astype(np.float32)
  labels = rng.integers(0, 10, args.batch).astype(np.int64)
  fns = {key: fn for key, fn in build(variants, precisions, args, images, labels).items()
         if key[2] in kinds}
  for fn in fns.values():  # trace, allocate and warm up
    fn()
    fn()
  report = {"cpu": cpu_name(), "cpu_bf16_flags": flags, "amx": amx, "threads": threads,
            "arch": args.arch, "image_size": args.image_size, "batch": args.batch}
  if args.split:
    report["train_split"] = print_split(split(fns, args.rounds), precisions)
    print(json.dumps(report))
    return
  rates = {key: [] for key in fns}
  for r in range(args.rounds):
    for key, fn in fns.items():
      start = time.perf_counter()
      for _ in range(args.steps):
        fn()
      rates[key].append(args.batch * args.steps / (time.perf_counter() - start))
    print(f"round {r + 1}/{args.rounds} done", flush=True)

  report.update(img_per_s={"/".join(key): r for key, r in rates.items()}, ratios={})
  print(f"\n{'img/s: best (median)':22s}" + "".join(
      f"{p + ' ' + k:>18s}" for k in kinds for p in precisions))
  for variant in variants:
    cells = [f"{max(r):10.1f} ({statistics.median(r):5.1f})" if r else f"{'-':>18s}"
             for r in (rates.get((variant, p, k)) for k in kinds for p in precisions)]
    print(f"{variant:22s}" + "".join(cells))
  print()
  pairs = []
  for kind in kinds:
    for variant in variants:
      if (variant, "bfloat16", kind) in rates and (variant, "float32", kind) in rates:
        pairs.append((f"{variant} {kind}: bfloat16 / float32",
                      (variant, "bfloat16", kind), (variant, "float32", kind)))
    for precision in precisions:
      for peer in variants:
        if peer != "native" and (peer, precision, kind) in rates and (
            "native", precision, kind) in rates:
          pairs.append((f"{kind} {precision}: native / {peer}",
                        ("native", precision, kind), (peer, precision, kind)))
  for name, num, den in pairs:
    best, line = ratio_line(name, rates[num], rates[den])
    report["ratios"][name] = best
    print(line)
  if amx:
    checks = [("native train: bfloat16 / float32", TARGET_BF16_OVER_F32)]
    checks += [(f"train bfloat16: native / {peer}", TARGET_NATIVE_OVER_TIMM)
               for peer in ("timm", "timm_cl")]
    for name, target in checks:
      if name in report["ratios"]:
        value = report["ratios"][name]
        print(f"target {name} >= {target}: {value:.2f}x "
              f"{'met' if value >= target else 'NOT met'}")
  print(json.dumps(report))


if __name__ == "__main__":
  main()
