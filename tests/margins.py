"""How far each check of the tests is from failing (a measurement, not a test).

  export PYTHONPATH=$PWD
  python tests/margins.py --out margins [--groups learning,pairs,inprocess,mixup]
      [--seeds 0-2] [--learning_seeds 0-1] [--modes nondet,det] [--pair_seeds 0]
      [--pair_modes nondet]

Reruns what a test computes, with other seeds, and writes two files: OUT.jsonl, every
measured value as it came (one JSON object per measurement: group, check, seed, mode,
value), and OUT.md, the table made from them: per check, the bound the test applies,
the values measured (min / mean / max), and the margin (how far the nearest value is
from the bound). The table is printed too. `--table_from OUT.jsonl` makes the table
again from the raw values of an earlier run, without measuring.

learning: the learning test's run (test_trainer.LEARNING on its pattern folder) with
  `seed=` varied (--learning_seeds), with and without `deterministic=True`
  (--modes): loss ratio and top-1.
pairs: the runs test_trainer.py compares for equality (split: batch_split=4 vs 1;
  mirrored: 2 CPU replicas vs 1; resume: kill -9 and resume vs straight) and, as the
  failure they must catch, base_lr 1% off: the share of the test's tolerance used,
  max |a-b| / (atol + rtol |b|) (below 1 passes); --pair_seeds, --pair_modes.
inprocess: in-process tolerances and statistics: native model vs the plain reference,
  pre-logits @ head, bfloat16 vs float32 (logits and gradients), exact round trips,
  crop / flip / MixUp statistics, float32 arithmetic against numpy, the clip test's
  updates (--seeds), and the gaps at the decisions of the eval and predict fixtures.
mixup: the trainer's MixUp test: the lambda read back from each mixed micro-batch
  against the step's lambda, and the residual of lam x + (1 - lam) x[::-1] (the
  first two --seeds).

Runs one computation at a time.
"""

import argparse
import json
import os
import sys
import tempfile

import numpy as np
import pytest

import helpers
from bit_train.data.patterns import CLASSES, write_pattern_folder


def seeds_arg(text):
  """'0-9' or '0,3,5' -> list of ints."""
  if "-" in text:
    lo, hi = text.split("-")
    return list(range(int(lo), int(hi) + 1))
  return [int(s) for s in text.split(",")]


# check -> (test, quantity, kind, bound): kind "max": values must stay <= bound (the
# margin is (bound - ref) / (max - ref), ref being what an exact computation gives);
# "min": >= bound; "range": within (lo, hi); "exact": == bound.
CHECKS = {}


def check(name, test, quantity, kind, bound, ref=0.0):
  CHECKS[name] = dict(test=test, quantity=quantity, kind=kind, bound=bound, ref=ref)


class Record:
  """Appends every measurement to OUT.jsonl as it is made."""

  def __init__(self, path):
    self.path, self.rows = path, []
    open(path, "w").close()

  def add(self, group, name, value, **where):
    row = dict(group=group, check=name, value=float(value), **where)
    self.rows.append(row)
    with open(self.path, "a") as f:
      f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)


def used(a, b, rtol, atol):
  """The share of an assert_allclose(a, b, rtol, atol) tolerance used."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float((np.abs(a - b) / (atol + rtol * np.abs(b))).max())


def weights_used(a, b, rtol, atol):
  return max(used(a[n], b[n], rtol, atol) for n in a)


# --- learning ------------------------------------------------------------------------

def learning(record, args):
  import test_trainer as t  # pylint: disable=import-outside-toplevel
  check("loss_ratio", "test_trainer::test_loss_goes_down_and_accuracy_beats_chance",
        "mean loss of the last 10 steps / first 3", "max", 0.5)
  check("top1", "same", "holdout top-1 (60 images; chance 0.33)", "min", 0.8)
  if record is None:
    return
  with tempfile.TemporaryDirectory() as tmp:
    folder = write_pattern_folder(os.path.join(tmp, "data"), **t.LEARNING_DATA)
    for seed in args.learning_seeds:
      for mode in args.modes:
        workdir = os.path.join(tmp, f"w{seed}{mode}")
        result = helpers.train(workdir, folder, f"{t.LEARNING},seed={seed},"
                               f"deterministic={mode == 'det'}")
        assert result.returncode == 0, result.stderr[-2000:]
        signal = t.learning_signal(workdir)
        for name in ("loss_ratio", "top1"):
          record.add("learning", name, signal[name], seed=seed, mode=mode)


# --- pairs of runs that must end with the same weights ---------------------------------

def pairs(record, args):
  import test_trainer as t  # pylint: disable=import-outside-toplevel
  check("split", "test_trainer::test_batch_split_update_equals_the_full_batch",
        f"final weights, batch_split 4 vs 1: share of (rtol, atol) {t.SPLIT_TOLERANCE}",
        "max", 1)
  check("lr1pct", "same, base_lr 1% off (a small real bug)", "share of the same tolerance",
        "min", 1)
  check("mirrored", "test_trainer::test_mirrored_over_two_cpu_devices_matches_one_device",
        f"final weights, 2 replicas vs 1: share of {t.MIRRORED_TOLERANCE}", "max", 1)
  check("resume", "test_trainer::test_kill_9_then_resume_ends_with_the_same_weights",
        f"final weights: share of {t.RESUME_TOLERANCE}", "max", 1)
  check("resume_loss", "same", "losses after the kill: max relative gap", "max",
        t.RESUME_LOSS_RTOL)
  if record is None:
    return
  runs = {"split": ("mixup_alpha=0.0,supports=1/2/3",
                    "mixup_alpha=0.0,supports=1/2/3,batch_split=4", t.SPLIT_TOLERANCE),
          "lr1pct": ("mixup_alpha=0.0,supports=1/2/3",
                     "mixup_alpha=0.0,supports=1/2/3,base_lr=0.0101", t.SPLIT_TOLERANCE),
          "mirrored": ("strategy=cpu,supports=1/2/3",
                       "strategy=mirrored,cpu_devices=2,supports=1/2/3",
                       t.MIRRORED_TOLERANCE)}
  with tempfile.TemporaryDirectory() as tmp:
    folder = write_pattern_folder(os.path.join(tmp, "patterns"), per_class=12)
    for seed in args.pair_seeds:
      for name, (config_a, config_b, tolerance) in runs.items():
        for mode in args.pair_modes:
          w = os.path.join(tmp, f"{name}{seed}{mode}")
          extra = f",seed={seed},deterministic={mode == 'det'}"
          for suffix, config in (("a", config_a), ("b", config_b)):
            result = helpers.train(w + suffix, folder, config + extra)
            assert result.returncode == 0, result.stderr[-2000:]
          record.add("pairs", name, weights_used(
              helpers.final_weights(os.path.join(w + "b", "checkpoints")),
              helpers.final_weights(os.path.join(w + "a", "checkpoints")), *tolerance),
                     seed=seed, mode=mode)
      # The resume test is deterministic=True by design.
      w, arg = os.path.join(tmp, f"resume{seed}"), t.RESUME + f",seed={seed}"
      assert helpers.train(w + "a", folder, arg).returncode == 0
      killed_at = helpers.kill_at_first_checkpoint(w + "b", folder, arg)
      assert helpers.train(w + "b", folder, arg).returncode == 0
      loss_a, loss_b = helpers.step_losses(w + "a"), helpers.step_losses(w + "b")
      record.add("pairs", "resume_loss", max(abs(loss_b[s] - loss_a[s]) / abs(loss_a[s])
                                             for s in loss_b if s > killed_at),
                 seed=seed, mode="det", killed_at=killed_at)
      record.add("pairs", "resume", weights_used(
          helpers.final_weights(os.path.join(w + "b", "checkpoints")),
          helpers.final_weights(os.path.join(w + "a", "checkpoints")),
          *t.RESUME_TOLERANCE), seed=seed, mode="det")


# --- in-process tolerances and statistics ---------------------------------------------

def inprocess(record, args):
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  import tensorflow_hub as tfhub
  from PIL import Image
  import test_data_pipeline as p
  import test_models_native as m
  import test_optimizer as o
  from bit_train import mixup
  from bit_train import specs
  from bit_train.models.factory import create_model
  from bit_train.models.bit import network
  from bit_train.optimizer import Momentum
  # pylint: enable=import-outside-toplevel
  native = "test_models_native::test_logits_match_the_reference_architecture"
  check("reference", native, f"logits vs the plain reference: share of "
        f"rtol=atol={m.REFERENCE_TOL}", "max", 1)
  check("pre_logits", "test_models_native::test_pre_logits_are_the_pooled_features_the_"
        "head_sees", "logits vs pre-logits @ head: share of rtol=atol=1e-5", "max", 1)
  bf16 = "test_models_native::test_bfloat16_compute_keeps_float32_variables_and_logits"
  check("bf16_gap", bf16, "max |bf16 - f32| / max |f32| of the logits", "range",
        (0.002, 0.35))
  check("bf16_cosine", "test_models_native::test_bfloat16_gradients_are_float32_and_"
        "follow_float32", "cosine of the bf16 and f32 gradients", "range", (0.7, 0.99))
  group_norm = ("test_models_native::test_group_norm_relu_and_its_gradients_match_a_"
                "float32_reference")
  for dtype in (tf.float32, tf.bfloat16):
    check(f"group_norm_{dtype.name}", group_norm if dtype == tf.float32 else "same",
          f"{dtype.name}: largest relative L2 gap of y, dx, dgamma, dbeta to float32",
          "max", m.GROUP_NORM_TOL[dtype])
  check("hub_exact", "test_models_hub round trips", "hub module vs native: max abs",
        "exact", 0)
  check("npz_exact", "test_models_npz round trips", ".npz vs native: max abs", "exact", 0)
  check("flip", "test_data_pipeline flip test", "share flipped of 400 views", "range",
        (0.4, 0.6))
  check("crop", "test_data_pipeline crop test", "mean crop offset - 4 of 400 views",
        "range", (-0.6, 0.6))
  check("lambda_mean", "test_data_pipeline MixUp lambda test", "mean of 300 lambdas "
        "(alpha 0.1)", "range", (0.4, 0.6))
  check("lambda_ends", "same", "share of lambdas below 0.1 or above 0.9", "min", 0.6)
  check("momentum", "test_optimizer momentum test", "vs numpy: share of rtol 1e-6",
        "max", 1)
  check("mix", "test_data_pipeline mix test", "mixup.mix vs numpy: share of rtol 1e-6",
        "max", 1)
  check("unclipped", "test_optimizer::test_clip_grad_norm_bounds_the_first_update",
        "unclipped first update / 0.005", "min", 1)
  check("clipped", "same", "clipped first update / 0.0005", "max", 1 + 1e-4, ref=1.0)
  if record is None:
    decisions(None)
    return
  for seed in args.seeds:
    for units, h, w in [((1, 1, 1, 1), 32, 32), ((2, 1, 2, 1), 48, 40)]:
      model = helpers.tiny_resnet(num_classes=7, seed=seed, num_units=units)
      x = helpers.images(3, h, w, seed=seed)
      params = {k: v.numpy() for k, v in model.params.items()}
      expected = m.reference_logits(params, units, x * 2. - 1.)
      record.add("inprocess", "reference", used(model(x), expected, m.REFERENCE_TOL,
                                                m.REFERENCE_TOL), seed=seed, units=units)
    model = helpers.tiny_resnet(num_classes=5, seed=seed)
    x = helpers.images(2, 40, 56, seed=seed)
    kernel, bias = model.head_variables
    record.add("inprocess", "pre_logits", used(
        model(x), model.pre_logits(x) @ kernel[0, 0] + bias, 1e-5, 1e-5), seed=seed)
    low = create_model(specs.model_spec(helpers.tiny_config(
        model_source="native", precision="mixed_bfloat16")), num_classes=3)
    reference = helpers.tiny_resnet(num_classes=3, seed=seed)
    for key, var in low.params.items():
      var.assign(reference.params[key])
    x = helpers.images(2, seed=seed)
    ref = reference(x).numpy()
    record.add("inprocess", "bf16_gap", np.abs(low(x) - ref).max() / np.abs(ref).max(),
               seed=seed)
    low = network.ResNetV2(reference.num_units, reference.width, 3,
                       compute_dtype=tf.bfloat16)
    for key, var in low.params.items():
      var.assign(reference.params[key])
    x, labels = helpers.images(4, seed=seed), tf.one_hot([0, 1, 2, 0], 3)

    def flat_gradients(model):
      with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels, model(x)))
      grads = tape.gradient(loss, list(model.params.values()))
      return np.concatenate([g.numpy().ravel() for g in grads])
    ours, expected = flat_gradients(low), flat_gradients(reference)
    record.add("inprocess", "bf16_cosine", ours @ expected / np.linalg.norm(ours) /
               np.linalg.norm(expected), seed=seed)
    for dtype in (tf.float32, tf.bfloat16):
      for channel_means in (0., 4.):
        gaps, _ = m.group_norm_gaps(dtype, channel_means, seed)
        record.add("inprocess", f"group_norm_{dtype.name}", max(gaps.values()),
                   seed=seed, channel_means=channel_means)
    with tempfile.TemporaryDirectory() as tmp:
      original = helpers.export_tiny_hub_module(os.path.join(tmp, "cls"),
                                                "classification", 7, seed=seed)
      x = helpers.images(2, 40, 48, seed=seed)
      record.add("inprocess", "hub_exact", np.abs(
          tfhub.load(os.path.join(tmp, "cls"))(x) - original(x)).max(), seed=seed)
      original = helpers.write_tiny_npz(os.path.join(tmp, "w.npz"), 5, seed=seed)
      loaded = create_model(specs.model_spec(helpers.tiny_config(
          model_source="npz", model_path=os.path.join(tmp, "w.npz"), head="keep")), None)
      record.add("inprocess", "npz_exact", np.abs(loaded(x) - original(x)).max(),
                 seed=seed)
    pixels = np.zeros((40, 40, 3), np.uint8)
    pixels[:, 20:] = 255
    views = p.many_views(Image.fromarray(pixels), 400, 40, 32, seed=seed)
    record.add("inprocess", "flip", np.mean(views[:, :, :4].mean(axis=(1, 2, 3)) >
                                            views[:, :, -4:].mean(axis=(1, 2, 3))),
               seed=seed)
    rows_img = np.repeat(np.arange(40, dtype=np.uint8)[:, None] * 6, 40, axis=1)
    views = p.many_views(Image.fromarray(np.stack([rows_img] * 3, -1)), 400, 40, 32,
                         seed=seed)
    offsets = np.rint(views[:, 0, 0, 0] * 255 / 6).astype(int)
    record.add("inprocess", "crop", offsets.mean() - 4, seed=seed)
    lams = np.array([float(mixup.sample_lambda(0.1, seed, s)) for s in range(300)])
    record.add("inprocess", "lambda_mean", lams.mean(), seed=seed)
    record.add("inprocess", "lambda_ends", np.mean((lams < .1) | (lams > .9)), seed=seed)
    images = tf.constant(np.random.default_rng(seed).random((4, 5, 5, 3)), tf.float32)
    lam = mixup.sample_lambda(0.1, 3, 11 + seed)
    mixed, _ = mixup.mix(images, tf.one_hot([0, 1, 2, 1], 3), lam)
    lam = float(lam)
    record.add("inprocess", "mix", used(mixed, lam * images + (1 - lam) * images[::-1],
                                        1e-6, 0), seed=seed)
  w = tf.Variable([1.0, -2.0])
  opt = Momentum([w], momentum=0.9)
  g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
  opt.apply([tf.constant(g1, tf.float32)], 0.1, tf.constant(True))
  opt.apply([tf.constant(g2, tf.float32)], 0.01, tf.constant(True))
  record.add("inprocess", "momentum", used(
      w.numpy(), np.array([1.0, -2.0]) - 0.1 * g1 - 0.01 * (0.9 * g1 + g2), 1e-6, 0))
  with tempfile.TemporaryDirectory() as tmp:
    for seed in args.seeds[:3]:
      folder = write_pattern_folder(os.path.join(tmp, f"d{seed}"), per_class=4, seed=seed)
      record.add("inprocess", "unclipped", o.first_update_size(folder, None) / 0.005,
                 seed=seed)
      record.add("inprocess", "clipped", o.first_update_size(folder, 0.001) / 0.0005,
                 seed=seed)
  decisions(record)


def _ranking_gaps(logits, labels=None):
  """Smallest logit gap at a boundary a top-1 / top-5 result depends on."""
  gaps = []
  for i, row in enumerate(np.asarray(logits, np.float64)):
    ordered = np.sort(row)[::-1]
    gaps += [ordered[0] - ordered[1], ordered[4] - ordered[5]] if len(row) > 5 else list(
        -np.diff(ordered))
    if labels is not None:
      others = np.sort(np.delete(row, labels[i]))[::-1]
      gaps += [abs(row[labels[i]] - others[k]) for k in (0, 4) if k < len(others)]
  return min(gaps)


def decisions(record):
  """Tests that compare discrete results (top-1, top-5, classes in order, 4-digit
  probabilities) of two computations: how far each fixed input is from a flip, where
  float32 error is ~1e-6 of the values."""
  # pylint: disable=import-outside-toplevel
  import tensorflow as tf
  import test_eval as e
  import test_predict as pr
  # pylint: enable=import-outside-toplevel
  for name, test, quantity in [
      ("eval_imagenet_gap", "test_eval top-1/top-5 (ImageNet fixture)",
       "smallest logit gap at a decision"),
      ("eval_folder_gap", "test_eval class map (folder fixture)",
       "smallest top-1 logit gap"),
      ("predict_gap", "test_predict class order (export model)",
       "smallest gap between ranked probabilities"),
      ("predict_npz_gap", "test_predict (.npz model, 4 classes)", "top-1 probability gap"),
      ("predict_rounding", "test_predict 4-digit probabilities",
       "distance to a rounding boundary")]:
    check(name, test, quantity, "min", 0)
  if record is None:
    return
  with tempfile.TemporaryDirectory() as tmp:
    images = helpers.write_manual_dir(os.path.join(tmp, "m"), e.NUM_VAL)
    val_labels = helpers.validation_labels(e.NUM_VAL)
    model = helpers.tiny_resnet(1000, seed=3)
    lean = 12.0 + 0.5 * np.arange(e.NUM_VAL, dtype=np.float32)
    model.params["resnet/head/conv2d/bias"].assign_add(
        tf.scatter_nd([[c] for c in val_labels], lean, [1000]))
    record.add("inprocess", "eval_imagenet_gap",
               _ranking_gaps(e.logits_of(model, images), val_labels))
    root = write_pattern_folder(os.path.join(tmp, "shapes"), per_class=3)
    paths = sorted(os.path.join(root, c, f) for c in sorted(CLASSES)
                   for f in os.listdir(os.path.join(root, c)))
    logits = e.logits_of(helpers.tiny_resnet(3, seed=4),
                         [open(p, "rb").read() for p in paths])
    record.add("inprocess", "eval_folder_gap", _ranking_gaps(logits))
    single = helpers.write_folder(os.path.join(tmp, "single"), {"x": 1}, size=(40, 30),
                                  seed=2)
    album = helpers.write_folder(os.path.join(tmp, "album"), {"sub": 2}, size=(50, 60),
                                 seed=3)
    photos = [os.path.join(single, "x", "0.jpg")] + [
        os.path.join(album, "sub", f"{i}.jpg") for i in range(2)]
    probs = np.stack([pr.probabilities(helpers.tiny_resnet(3, seed=1), p)
                      for p in photos])
    record.add("inprocess", "predict_gap",
               (-np.diff(np.sort(probs, 1)[:, ::-1], axis=1)).min())
    npz = np.sort(pr.probabilities(helpers.tiny_resnet(4, seed=5), photos[0]))
    record.add("inprocess", "predict_npz_gap", npz[-1] - npz[-2])
    digits = probs[0] * 1e4
    record.add("inprocess", "predict_rounding",
               np.abs(digits - np.floor(digits) - 0.5).min() / 1e4)


# --- MixUp in the trainer's step -------------------------------------------------------

def mixup_in_the_step(record, args):
  # pylint: disable=import-outside-toplevel
  from bit_train import mixup
  # pylint: enable=import-outside-toplevel
  test = ("test_trainer::test_mixup_mixes_each_micro_batch_with_its_own_reverse_by_the_"
          "step_s_lambda")
  check("mixup_lambda", test, "|lambda read back - the step's lambda|", "max", 1e-5)
  check("mixup_residual", test, "max |mixed - (lam x + (1 - lam) x[::-1])|", "max", 1e-5)
  if record is None:
    return
  with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as patch:
    folder = write_pattern_folder(os.path.join(tmp, "patterns"), per_class=12)
    calls = helpers.record_training_calls(patch)
    for seed in args.seeds[:2]:
      seen = {}
      for alpha in (0.0, 1.0):
        calls.batches = []
        assert helpers.train_here(os.path.join(tmp, f"m{seed}{alpha}"), folder,
                                  f"mixup_alpha={alpha},supports=1/2/3,batch_split=4,"
                                  f"seed={seed}") is None
        seen[alpha] = calls.batches
      for micro, (x, m) in enumerate(zip(seen[0.0], seen[1.0])):
        expected = float(mixup.sample_lambda(1.0, seed, micro // 4))
        reverse = x[::-1]
        d = (x - reverse).ravel()
        lam = float((m - reverse).ravel() @ d / (d @ d))
        record.add("mixup", "mixup_lambda", abs(lam - expected), seed=seed, micro=micro)
        record.add("mixup", "mixup_residual",
                   np.abs(m - (lam * x + (1 - lam) * reverse)).max(), seed=seed,
                   micro=micro)


# --- the table -----------------------------------------------------------------------

def _fmt(value):
  return "0" if value == 0 else f"{value:.3g}"


def margin(kind, bound, values, ref=0.0):
  """How far the nearest measured value is from the bound, in words."""
  lo, hi = min(values), max(values)
  if kind == "max":
    if hi <= ref:
      return "exact"
    room = (bound - ref) / (hi - ref)
    return f"{room:.3g}x the max" + (f" (from {_fmt(ref)})" if ref else "") + (
        "" if hi <= bound else ": FAILS")
  if kind == "min":
    return f"{_fmt(lo - bound)} above" + ("" if lo >= bound else ": FAILS")
  if kind == "range":
    room = min(lo - bound[0], bound[1] - hi)
    return f"{_fmt(room)} inside" + ("" if room >= 0 else ": FAILS")
  return "exact" if lo == hi == bound else "FAILS"


def table(rows):
  lines = ["| test | quantity | runs | measured (min / mean / max) | bound | margin |",
           "|---|---|---|---|---|---|"]
  for name, spec in CHECKS.items():
    values = [r["value"] for r in rows if r["check"] == name]
    if not values:
      continue
    kind, bound = spec["kind"], spec["bound"]
    if kind == "range":
      bound_text = f"{_fmt(bound[0])} .. {_fmt(bound[1])}"
    else:
      bound_text = {"max": "<= ", "min": ">= ", "exact": "== "}[kind] + _fmt(bound)
    measured = (_fmt(values[0]) if len(values) == 1 else
                f"{_fmt(min(values))} / {_fmt(float(np.mean(values)))} / "
                f"{_fmt(max(values))}")
    cells = [spec["test"], spec["quantity"], str(len(values)), measured, bound_text,
             margin(kind, bound, values, spec["ref"])]
    lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  return "\n".join(lines) + "\n"


GROUPS = {"learning": learning, "pairs": pairs, "inprocess": inprocess,
          "mixup": mixup_in_the_step}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", default="margins")
  parser.add_argument("--groups", default=",".join(GROUPS))
  parser.add_argument("--seeds", type=seeds_arg, default=seeds_arg("0-2"))
  parser.add_argument("--learning_seeds", type=seeds_arg, default=seeds_arg("0-1"))
  parser.add_argument("--modes", default="nondet,det")
  parser.add_argument("--pair_seeds", type=seeds_arg, default=seeds_arg("0"))
  parser.add_argument("--pair_modes", default="nondet")
  parser.add_argument("--table_from", help="OUT.jsonl of an earlier run: only the table")
  args = parser.parse_args()
  args.modes, args.pair_modes = args.modes.split(","), args.pair_modes.split(",")
  if args.table_from:  # the table again from the raw values of an earlier run
    with open(args.table_from) as f:
      rows = [json.loads(line) for line in f]
    for group in dict.fromkeys(r["group"] for r in rows):
      GROUPS[group](None, None)
  else:
    record = Record(args.out + ".jsonl")
    for group in args.groups.split(","):
      GROUPS[group](record, args)
    rows = record.rows
  text = (f"`{' '.join(['python', 'tests/margins.py'] + sys.argv[1:])}`\n\n"
          + table(rows))
  with open(args.out + ".md", "w") as f:
    f.write(text)
  print(text)


if __name__ == "__main__":
  main()
