"""How far the tests' learning and tolerance checks are from failing (not a test).

  export PYTHONPATH=$PWD
  .venv/bin/python benchmarks/test_spread.py learning [--seeds 0-9] [--data_seeds 1]
      [--modes nondet,det] [--extra base_lr=1e-9]
  .venv/bin/python benchmarks/test_spread.py pairs [--seeds 0-3] [--pairs split,mirrored]
  .venv/bin/python benchmarks/test_spread.py inprocess [--seeds 0-9]

learning: runs the training command of tests/test_trainer.py's learning test (its
  LEARNING config on a write_pattern_folder(**LEARNING_DATA) folder) with `seed=`
  and the folder's seed varied, with and without `deterministic=True`, and prints
  each run's learning_signal (what the test bounds) and min / mean / max.
  --extra appends config fields, e.g. base_lr=1e-9 to check the test would fail.
pairs: runs the two computations that test_trainer.py compares for equality
  (split: batch_split=4 vs 1; mirrored: 2 CPU replicas vs 1; resume: kill -9 and
  resume vs straight; lr1pct: base_lr 1% off, what a small real bug looks like) and
  prints the largest differences of the final weights, and the share of the
  test's tolerance used: max |a-b| / (atol + rtol |b|), which must stay below 1.
inprocess: the in-process tolerances and statistical checks (native model vs the
  plain reference, pre-logits @ head, bfloat16 vs float32, crop/flip/mixup
  statistics, the clip test's unclipped update) over seeds.

Runs one process at a time; each training run takes ~15-50 s on the 2-core CI box.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))


def seeds_arg(text):
  """'0-9' or '0,3,5' -> list of ints."""
  if "-" in text:
    lo, hi = text.split("-")
    return list(range(int(lo), int(hi) + 1))
  return [int(s) for s in text.split(",")]


def summary(name, values):
  values = np.asarray(values, float)
  return (f"{name}: n={len(values)} min {values.min():.4g} mean {values.mean():.4g} "
          f"max {values.max():.4g} std {values.std():.3g}")


def learning(args):
  import test_trainer as t
  from pattern_images import write_pattern_folder
  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    for data_seed in args.data_seeds:
      data = dict(t.LEARNING_DATA, seed=data_seed)
      folder = write_pattern_folder(os.path.join(tmp, f"data{data_seed}"), **data)
      for seed in args.seeds:
        for mode in args.modes:
          workdir = os.path.join(tmp, f"w{data_seed}_{seed}_{mode}")
          arg = f"{t.LEARNING},seed={seed},deterministic={mode == 'det'}"
          if args.extra:
            arg += "," + args.extra
          result = t.train(workdir, folder, arg)
          if result.returncode:
            print(f"data_seed={data_seed} seed={seed} {mode}: exit {result.returncode}: "
                  f"{result.stderr[-500:]}", flush=True)
            continue
          row = dict(data_seed=data_seed, seed=seed, mode=mode, **t.learning_signal(workdir))
          rows.append(row)
          print(json.dumps(row), flush=True)
  for key in rows[0]:
    if key in ("data_seed", "seed", "mode"):
      continue
    print(summary(key, [r[key] for r in rows]))
    for mode in args.modes:
      print("  " + summary(f"{key} [{mode}]", [r[key] for r in rows if r["mode"] == mode]))


# Each pair: (config of run a, config of run b, (rtol, atol) the test uses).
PAIRS = {
    "split": ("mixup_alpha=0.0,supports=1/2/3",
              "mixup_alpha=0.0,supports=1/2/3,batch_split=4", "SPLIT_TOLERANCE"),
    "mirrored": ("strategy=cpu,supports=1/2/3",
                 "strategy=mirrored,cpu_devices=2,supports=1/2/3", "MIRRORED_TOLERANCE"),
    "lr1pct": ("mixup_alpha=0.0,supports=1/2/3",
               "mixup_alpha=0.0,supports=1/2/3,base_lr=0.0101", "SPLIT_TOLERANCE"),
    "resume": (None, None, "RESUME_TOLERANCE"),
}


def weight_gaps(a, b, rtol, atol):
  """(max |a-b|, max |a-b|/|b| where |b| > 1e-3, share of the tolerance used)."""
  abs_gap = max(float(np.abs(a[n] - b[n]).max()) for n in a)
  big = [np.abs(a[n] - b[n])[np.abs(b[n]) > 1e-3] / np.abs(b[n])[np.abs(b[n]) > 1e-3]
         for n in a]
  rel_gap = max(float(g.max()) for g in big if g.size)
  used = max(float((np.abs(a[n] - b[n]) / (atol + rtol * np.abs(b[n]))).max()) for n in a)
  return abs_gap, rel_gap, used


def pairs(args):
  import test_trainer as t
  from pattern_images import write_pattern_folder
  with tempfile.TemporaryDirectory() as tmp:
    folder = write_pattern_folder(os.path.join(tmp, "patterns"), per_class=12)
    for name in args.pairs:
      config_a, config_b, tolerance = PAIRS[name]
      rtol, atol = getattr(t, tolerance)
      used_all = []
      for seed in args.seeds:
        for mode in args.modes:
          w = os.path.join(tmp, f"{name}_{seed}_{mode}")
          extra = f",seed={seed}" + (",deterministic=True" if mode == "det" else "")
          if name == "resume":
            arg = t.RESUME + f",seed={seed}"
            a = t.train(w + "a", folder, arg)
            killed_at = t.kill_at_first_checkpoint(w + "b", folder, arg)
            b = t.train(w + "b", folder, arg)
            loss_a, loss_b = t.step_losses(w + "a"), t.step_losses(w + "b")
            after = [s for s in loss_b if s > killed_at]
            loss_gap = max(abs(loss_b[s] - loss_a[s]) / abs(loss_a[s]) for s in after)
            note = f" killed at {killed_at}, max rel loss gap {loss_gap:.3g}"
          else:
            a = t.train(w + "a", folder, config_a + extra)
            b = t.train(w + "b", folder, config_b + extra)
            note = ""
          if a.returncode or b.returncode:
            print(f"{name} seed={seed}: failed: {(a.stderr + b.stderr)[-500:]}")
            continue
          gaps = weight_gaps(t.final_weights(os.path.join(w + "b", "checkpoints")),
                             t.final_weights(os.path.join(w + "a", "checkpoints")),
                             rtol, atol)
          used_all.append(gaps[2])
          print(f"{name} seed={seed} {mode}: max abs {gaps[0]:.3g}, max rel {gaps[1]:.3g}, "
                f"tolerance (rtol={rtol}, atol={atol}) used {gaps[2]:.3g}{note}",
                flush=True)
          if name == "resume":
            break  # the resume test is deterministic=True by design
      if used_all:
        print(summary(f"{name}: share of tolerance used", used_all))


def inprocess(args):
  import tensorflow as tf
  import test_data_pipeline as p
  import test_models_native as m
  import tiny_models
  from bit_train import mixup
  from PIL import Image

  def used(a, b, rtol, atol):
    a, b = np.asarray(a), np.asarray(b)
    return float((np.abs(a - b) / (atol + rtol * np.abs(b))).max())

  rows = {}
  def add(key, value):
    rows.setdefault(key, []).append(value)

  for seed in args.seeds:
    for units, h, w in [((1, 1, 1, 1), 32, 32), ((2, 1, 2, 1), 48, 40)]:
      model = tiny_models.tiny_resnet(num_classes=7, seed=seed, num_units=units)
      x = tiny_models.images(3, h, w, seed=seed)
      params = {k: v.numpy() for k, v in model.params.items()}
      expected = m.reference_logits(params, units, x * 2. - 1.)
      add(f"native vs reference {units}: tolerance used (rtol=atol={m.REFERENCE_TOL})",
          used(model(x), expected, m.REFERENCE_TOL, m.REFERENCE_TOL))
      add(f"native vs reference {units}: max abs", float(np.abs(model(x) - expected).max()))
    model = tiny_models.tiny_resnet(num_classes=5, seed=seed)
    x = tiny_models.images(2, 40, 56, seed=seed)
    kernel, bias = model.head_variables
    add("pre_logits @ head: tolerance used (rtol=atol=1e-5)",
        used(model(x), model.pre_logits(x) @ kernel[0, 0] + bias, 1e-5, 1e-5))
    from bit_train import specs
    from bit_train.models import create_model
    config = tiny_models.tiny_config(model_source="native", precision="mixed_bfloat16")
    low = create_model(specs.model_spec(config), num_classes=3)
    reference = tiny_models.tiny_resnet(num_classes=3, seed=seed)
    for key, var in low.params.items():
      var.assign(reference.params[key])
    x = tiny_models.images(2, seed=seed)
    ref = reference(x).numpy()
    add("bfloat16 vs float32: max abs / max |ref| (test: <= 0.35)",
        float(np.abs(low(x) - ref).max() / np.abs(ref).max()))
    # Exact round trips: a hub module (a traced graph) and an .npz file (the same
    # eager code) against the native model they were written from.
    import tensorflow_hub as tfhub
    with tempfile.TemporaryDirectory() as tmp:
      original = tiny_models.export_tiny_hub_module(os.path.join(tmp, "cls"),
                                                   "classification", 7, seed=seed)
      x = tiny_models.images(2, 40, 48, seed=seed)
      add("hub module vs native: max abs (test: exactly 0)",
          float(np.abs(tfhub.load(os.path.join(tmp, "cls"))(x) - original(x)).max()))
      original = tiny_models.write_tiny_npz(os.path.join(tmp, "w.npz"), 5, seed=seed)
      loaded = create_model(specs.model_spec(tiny_models.tiny_config(
          model_source="npz", model_path=os.path.join(tmp, "w.npz"), head="keep")), None)
      add("npz vs native: max abs (test: exactly 0)",
          float(np.abs(loaded(x) - original(x)).max()))
    # Data statistics (the tests use seed 0).
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:, 20:] = 255
    views = p.many_views(Image.fromarray(pixels), 400, 40, 32, seed=seed)
    add("flip share of 400 views (test: 0.4..0.6)", float(np.mean(
        views[:, :, :4].mean(axis=(1, 2, 3)) > views[:, :, -4:].mean(axis=(1, 2, 3)))))
    rows_img = np.repeat(np.arange(40, dtype=np.uint8)[:, None] * 6, 40, axis=1)
    views = p.many_views(Image.fromarray(np.stack([rows_img] * 3, -1)), 400, 40, 32,
                         seed=seed)
    offsets = np.rint(views[:, 0, 0, 0] * 255 / 6).astype(int)
    add("crop offset mean - 4 of 400 views (test: |.| < 0.6)", float(offsets.mean() - 4))
    lams = np.array([float(mixup.sample_lambda(0.1, seed, s)) for s in range(300)])
    add("mixup lambda mean (test: 0.4..0.6)", float(lams.mean()))
    add("mixup share near 0 or 1 (test: > 0.6)", float(np.mean((lams < .1) | (lams > .9))))
  # Element-wise float32 arithmetic against numpy (the tests' fixed inputs).
  from bit_train.optimizer import Momentum
  w = tf.Variable([1.0, -2.0])
  opt = Momentum([w], momentum=0.9)
  g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
  opt.apply([tf.constant(g1, tf.float32)], 0.1, tf.constant(True))
  opt.apply([tf.constant(g2, tf.float32)], 0.01, tf.constant(True))
  add("momentum vs numpy: tolerance used (rtol=1e-6)",
      used(w.numpy(), np.array([1.0, -2.0]) - 0.1 * g1 - 0.01 * (0.9 * g1 + g2), 1e-6, 0))
  for seed in args.seeds:
    images = tf.constant(np.random.default_rng(seed).random((4, 5, 5, 3)), tf.float32)
    lam = mixup.sample_lambda(0.1, 3, 11 + seed)
    mixed, _ = mixup.mix(images, tf.one_hot([0, 1, 2, 1], 3), lam)
    lam = float(lam)
    add("mixup.mix vs numpy: tolerance used (rtol=1e-6)",
        used(mixed, lam * images + (1 - lam) * images[::-1], 1e-6, 0))
  # The clip test: one step at lr 0.5 on the test's folder, unclipped and clipped.
  import test_optimizer as o
  from pattern_images import write_pattern_folder
  with tempfile.TemporaryDirectory() as tmp:
    for seed in args.seeds[:3]:
      folder = write_pattern_folder(os.path.join(tmp, f"d{seed}"), per_class=4, seed=seed)
      add("unclipped first update / 0.005 (test: > 1)",
          o.first_update_size(folder, None) / 0.005)
      add("clipped first update / 0.0005 (test: <= 1 + 1e-4)",
          o.first_update_size(folder, 0.001) / 0.0005)
  for key, values in rows.items():
    print(summary(key, values))
  margins()


def _ranking_gaps(logits, labels_=None):
  """Smallest logit gap at a boundary a top-1 / top-5 result depends on."""
  gaps = []
  for i, row in enumerate(np.asarray(logits, np.float64)):
    ordered = np.sort(row)[::-1]
    gaps += [ordered[0] - ordered[1], ordered[4] - ordered[5]] if len(row) > 5 else list(
        -np.diff(ordered))
    if labels_ is not None:
      others = np.sort(np.delete(row, labels_[i]))[::-1]
      gaps += [abs(row[labels_[i]] - others[k]) for k in (0, 4) if k < len(others)]
  return min(gaps)


def margins():
  """Tests that compare discrete results (top-1, top-5, classes in order, 4-digit
  probabilities) of two computations: how far each fixed input is from a flip."""
  import tensorflow as tf
  import fake_imagenet
  import test_eval as e
  import test_predict as pr
  import tiny_models
  from data_images import write_folder
  from pattern_images import CLASSES, write_pattern_folder
  with tempfile.TemporaryDirectory() as tmp:
    images = fake_imagenet.write_manual_dir(os.path.join(tmp, "m"), e.NUM_VAL)
    val_labels = fake_imagenet.validation_labels(e.NUM_VAL)
    model = tiny_models.tiny_resnet(1000, seed=3)
    lean = 12.0 + 0.5 * np.arange(e.NUM_VAL, dtype=np.float32)
    model.params["resnet/head/conv2d/bias"].assign_add(
        tf.scatter_nd([[c] for c in val_labels], lean, [1000]))
    print(f"test_eval imagenet fixture: smallest logit gap at a top-1/top-5 boundary "
          f"{_ranking_gaps(e.logits_of(model, images), val_labels):.3g}")
    root = write_pattern_folder(os.path.join(tmp, "shapes"), per_class=3)
    paths = sorted(os.path.join(root, c, f) for c in sorted(CLASSES)
                   for f in os.listdir(os.path.join(root, c)))
    logits = e.logits_of(tiny_models.tiny_resnet(3, seed=4),
                         [open(p, "rb").read() for p in paths])
    print(f"test_eval class-map folder: smallest top-1 logit gap "
          f"{_ranking_gaps(logits):.3g}")
    single = write_folder(os.path.join(tmp, "single"), {"x": 1}, size=(40, 30), seed=2)
    album = write_folder(os.path.join(tmp, "album"), {"sub": 2}, size=(50, 60), seed=3)
    photos = [os.path.join(single, "x", "0.jpg")] + [
        os.path.join(album, "sub", f"{i}.jpg") for i in range(2)]
    probs = np.stack([pr.probabilities(tiny_models.tiny_resnet(3, seed=1), p)
                      for p in photos])
    ordered = -np.diff(np.sort(probs, 1)[:, ::-1], axis=1)
    print(f"test_predict export model: smallest gap between ranked probabilities "
          f"{ordered.min():.3g}")
    npz = pr.probabilities(tiny_models.tiny_resnet(4, seed=5), photos[0])
    print(f"test_predict npz model (4 classes): top-1 probability gap "
          f"{np.sort(npz)[-1] - np.sort(npz)[-2]:.3g}")
    digits = probs[0] * 1e4
    print(f"test_predict 4-digit probabilities of {os.path.basename(photos[0])}: "
          f"distance to a rounding boundary {np.abs(digits - np.floor(digits) - 0.5).min() / 1e4:.3g}")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("what", choices=["learning", "pairs", "inprocess"])
  parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-9"))
  parser.add_argument("--data_seeds", type=seeds_arg, default=None)
  parser.add_argument("--modes", default="nondet,det")
  parser.add_argument("--pairs", default="split,mirrored,resume,lr1pct")
  parser.add_argument("--extra", default="")
  args = parser.parse_args()
  args.modes = args.modes.split(",")
  args.pairs = args.pairs.split(",")
  if args.data_seeds is None:
    import test_trainer
    args.data_seeds = [test_trainer.LEARNING_DATA["seed"]]
  {"learning": learning, "pairs": pairs, "inprocess": inprocess}[args.what](args)


if __name__ == "__main__":
  main()
