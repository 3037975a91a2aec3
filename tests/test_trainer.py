"""bit-train end to end on tiny models and a generated image folder (CPU, offline).

Here: learning, MixUp in the step, and the runs that must end with the same weights
(batch split, mirrored, multi-worker, kill -9 and resume). Other model sources,
precisions and the runs bit-train stops are in test_trainer_options.py (a file of its
own, so that the two test workers share the end-to-end runs); what a finished TINY
run writes and a resume refused or forced after a changed plan are checked on the
TINY run that test_workdir.py trains once for all its cases.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from bit_train import mixup
from bit_train.data.patterns import write_pattern_folder

from helpers import (ROOT, TINY, assert_same_weights, error_lines, final_weights,
                     free_ports, history, kill_at_first_checkpoint,
                     record_training_calls, step_losses, tiny_run_config, train,
                     train_here)


# The learning run: its data, its config, and what it learned. tests/margins.py
# runs exactly this with other seeds to measure the spread of what the test bounds
# (docs/guarantees.md, "Tests and CI"). A 60-image holdout (20 per class) so that top-1 moves in
# steps of 1/60, not 1/12; precrop=crop=32 so that training sees the stripes at the
# scale evaluation does (resized 32 -> 36 they generalise far worse: top-1 ~0.75).
LEARNING_DATA = dict(per_class=100, seed=1)
LEARNING = ("batch_size=16,supports=3/40/60,base_lr=0.05,mixup_alpha=0.0,precrop=32,"
            "holdout_fraction=0.2,eval_every=30,log_every=1,checkpoint_every=60")


def learning_signal(workdir):
  """The quantities the learning test bounds."""
  losses = [r["loss"] for r in history(workdir) if "loss" in r and "top1" not in r]
  metrics = json.load(open(os.path.join(workdir, "metrics.json")))
  # The last 10 steps' loss against the first 3 (ln 3 from the zero head).
  return dict(loss_ratio=float(np.mean(losses[-10:]) / np.mean(losses[:3])),
              top1=metrics["top1"], eval_loss=metrics["loss"], eval_count=metrics["count"])


def test_loss_goes_down_and_accuracy_beats_chance(tmp_path, tmp_path_factory):
  data = write_pattern_folder(tmp_path_factory.mktemp("easy"), **LEARNING_DATA)
  result = train(tmp_path, data, LEARNING)
  assert result.returncode == 0, result.stderr[-3000:]
  learned = learning_signal(tmp_path)
  # Measured over 19 runs (seeds, data seeds, op determinism on and off): loss
  # ratio at most 0.19, top-1 at least 0.917 (55/60), chance being 1/3. With
  # learning all but off (base_lr=1e-9) the ratio is 1.0 and this fails; top-1
  # alone would not catch that (0.77-0.80: the head's first nudge already points
  # the right way on these stripes), so the loss check is the learning check.
  assert learned["loss_ratio"] < 0.5
  assert learned["top1"] >= 0.8
  assert "not clearly above chance" not in result.stderr


def test_a_run_that_cannot_learn_ends_with_a_warning_naming_the_causes(tmp_path, folder):
  """base_lr=1e-9 leaves the zero head as it was: every class ties, so top-1 is the
  share of class 0, and the run says so, still with exit code 0."""
  result = train(tmp_path, folder, "base_lr=1e-9")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.load(open(os.path.join(tmp_path, "metrics.json")))
  warning = [line for line in result.stderr.splitlines()
             if "not clearly above chance" in line]
  assert len(warning) == 1, result.stderr[-3000:]
  assert "warning: the final top-1" in warning[0]
  assert f"{metrics['top1']:.4f} on {metrics['count']} images" in warning[0]
  assert "this plan's lr is 1e-09" in warning[0] and "too few steps (6)" in warning[0]


# (rtol, atol) of the weight comparisons. Measured with tests/margins.py
# pairs (docs/guarantees.md, "Tests and CI"): split and mirrored runs use at most 1% of it; a
# base_lr 1% off, a small real bug, uses 121 times it.
SPLIT_TOLERANCE = (1e-5, 1e-6)
MIRRORED_TOLERANCE = (1e-5, 1e-6)


@pytest.fixture(scope="module")
def split_runs(tmp_path_factory, folder):
  """The TINY run for 3 steps without MixUp, in this process, at batch_split 1 and 4:
  {batch_split: (workdir, the images of each model call in training)}."""
  runs = {}
  with pytest.MonkeyPatch.context() as monkeypatch:
    calls = record_training_calls(monkeypatch)
    for split in (1, 4):
      workdir = tmp_path_factory.mktemp(f"split{split}")
      assert train_here(workdir, folder, "mixup_alpha=0.0,supports=1/2/3,"
                        f"batch_split={split}") is None
      runs[split], calls.batches = (workdir, calls.batches), []
  # Both ran the convolutions in float32, outside XLA (the low-precision and XLA
  # runs in test_trainer_options.py record theirs).
  assert calls.conv_dtypes == {tf.float32} and calls.in_xla == {False}
  return runs


def test_batch_split_update_equals_the_full_batch(split_runs):
  (whole_dir, whole), (split_dir, split) = split_runs[1], split_runs[4]
  # The model saw 3 batches of 8, then 3 x 4 micro-batches of 2: the same images
  # in the same order.
  assert [b.shape for b in whole] == [(8, 32, 32, 3)] * 3
  assert [b.shape for b in split] == [(2, 32, 32, 3)] * 12
  np.testing.assert_array_equal(np.concatenate(split), np.concatenate(whole))
  assert_same_weights(final_weights(whole_dir / "checkpoints"),
                      final_weights(split_dir / "checkpoints"), *SPLIT_TOLERANCE)


def test_mixup_mixes_each_micro_batch_with_its_own_reverse_by_the_step_s_lambda(
    split_runs, tmp_path, folder, monkeypatch):
  """MixUp in the trainer's own step, under a batch split: every micro-batch x of a
  step is mixed with its own reverse, lam x + (1 - lam) x[::-1], by one lambda per
  step (the authors' pairing: so with MixUp a batch_split=k update is not the full
  batch's). The unmixed micro-batches are those of the same run without MixUp (the
  train stream depends on the seed and the position alone)."""
  plain = split_runs[4][1]
  calls = record_training_calls(monkeypatch)
  assert train_here(tmp_path, folder,
                    "mixup_alpha=1.0,supports=1/2/3,batch_split=4") is None
  mixed = calls.batches
  assert len(mixed) == len(plain) == 12  # 3 steps x 4 micro-batches of 2
  for step in range(3):
    # Lambdas of seed 0 at alpha 1: 0.40, 0.035, 0.36 (1.0 would be no mixing).
    expected = float(mixup.sample_lambda(1.0, 0, step))
    for micro in range(4 * step, 4 * step + 4):
      x, m = plain[micro], mixed[micro]
      reverse = x[::-1]
      d = (x - reverse).ravel()
      lam = float((m - reverse).ravel() @ d / (d @ d))  # least squares
      assert abs(lam - expected) < 1e-5, (step, micro, lam, expected)
      np.testing.assert_allclose(m, lam * x + (1 - lam) * reverse, atol=1e-5)


def test_mirrored_over_two_cpu_devices_matches_one_device(tmp_path, folder):
  one = train(tmp_path / "one", folder, "strategy=cpu,supports=1/2/3")
  two = train(tmp_path / "two", folder, "strategy=mirrored,cpu_devices=2,supports=1/2/3")
  assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
  assert "MirroredStrategy with 2 replica(s)" in two.stderr
  assert_same_weights(final_weights(tmp_path / "one" / "checkpoints"),
                      final_weights(tmp_path / "two" / "checkpoints"), *MIRRORED_TOLERANCE)


def test_multi_worker_two_local_workers_end_with_identical_weights(tmp_path, folder):
  ports = free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  config = (f"transfer:dataset=image_folder,data_dir={folder},{TINY},"
            "strategy=multi_worker,supports=1/2/4")
  procs = []
  for index in range(2):
    env = dict(os.environ, TF_CONFIG=json.dumps(
        {"cluster": cluster, "task": {"type": "worker", "index": index}}))
    procs.append(subprocess.Popen(
        [sys.executable, "-m", "bit_train.train", "--config", config, "--workdir",
         str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True))
  outputs = [p.communicate(timeout=600) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err[-3000:]
  # Each process held the lock of its own directory (the holder's pid is in it): the
  # chief W/.lock, worker 1 W/workers/1/.lock.
  assert (tmp_path / ".lock").read_text() == f"{procs[0].pid}\n"
  assert (tmp_path / "workers" / "1" / ".lock").read_text() == f"{procs[1].pid}\n"
  chief = final_weights(tmp_path / "checkpoints")
  other = final_weights(tmp_path / "workers" / "1" / "checkpoints")
  assert_same_weights(chief, other, rtol=0, atol=0)
  assert json.load(open(tmp_path / "metrics.json"))["step"] == 4


# Deterministic ops and a gentle lr: a resumed run computes what the straight run
# did. Last-bit float differences remain possible on a busy CPU, so losses and
# weights are compared with tolerances far below what a resume that lost or
# repeated data or optimizer state produces (checked: >100x larger). Measured: the
# resumed weights use at most 0.24% of RESUME_TOLERANCE, losses differ by 1.1e-6.
RESUME = "supports=2/10/14,checkpoint_every=3,log_every=1,deterministic=True"
RESUME_TOLERANCE = (1e-4, 1e-5)
RESUME_LOSS_RTOL = 1e-4


def test_kill_9_then_resume_ends_with_the_same_weights(tmp_path, folder):
  straight = train(tmp_path / "straight", folder, RESUME)
  assert straight.returncode == 0, straight.stderr[-3000:]

  workdir = tmp_path / "killed"
  killed_at = kill_at_first_checkpoint(workdir, folder, RESUME)
  assert killed_at < 14

  resumed = train(workdir, folder, RESUME)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resumed from {workdir / 'checkpoints' / f'ckpt-{killed_at}'}" in resumed.stderr
  expected, got = step_losses(tmp_path / "straight"), step_losses(workdir)
  assert sorted(got) == list(range(1, 15))  # history kept up to the checkpoint
  after = [s for s in got if s > killed_at]
  np.testing.assert_allclose([got[s] for s in after], [expected[s] for s in after],
                             rtol=RESUME_LOSS_RTOL)
  assert_same_weights(final_weights(tmp_path / "straight" / "checkpoints"),
                      final_weights(workdir / "checkpoints"), *RESUME_TOLERANCE)
  # TensorBoard: each step's train loss once (what the killed process wrote after
  # its checkpoint is purged), and eval loss under the train loss's tag.
  assert tensorboard_steps(workdir / "tensorboard" / "train", "loss") == list(range(1, 15))
  assert tensorboard_steps(workdir / "tensorboard" / "eval", "loss") == [14]


def tensorboard_steps(directory, tag):
  """The steps of `tag`'s scalars in the event files of `directory`, in file order."""
  steps = []
  for name in sorted(os.listdir(directory)):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(directory, name)):
      steps += [event.step for value in event.summary.value if value.tag == tag]
  return steps


# Long enough that SIGTERM, sent at the first checkpoint, lands during training.
TERM_RUN = "supports=2/30/40,checkpoint_every=3,log_every=1,deterministic=True"


def test_sigterm_during_the_final_evaluation_is_one_line_and_exit_143(tmp_path, folder):
  """After the last step SIGTERM ended the process at once, without a word; the
  steps are saved, so it stops as Ctrl-C does, and the same command finishes."""
  workdir = tmp_path / "w"
  proc = subprocess.Popen([sys.executable, "-m", "bit_train.train", "--config",
                           tiny_run_config(folder), "--workdir", str(workdir)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  seen = []
  while not any("Eval at step 6/6" in line for line in seen):
    line = proc.stderr.readline()
    assert line, "".join(seen)[-3000:]
    seen.append(line)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 143, stderr[-3000:]
  assert error_lines(stderr) == [
      "error: interrupted at step 6 (last checkpoint: step 6): run the same command to "
      "resume."]
  assert "Traceback" not in stderr
  export = workdir / "export"
  assert not [n for n in (os.listdir(export) if export.exists() else []) if ".tmp" in n]
  finished = train(workdir, folder)
  assert finished.returncode == 0, finished.stderr[-3000:]
  assert (workdir / "export" / "export.json").exists()


def test_sigterm_saves_at_the_next_step_and_the_resumed_run_ends_with_the_same_weights(
    tmp_path, folder):
  straight = train(tmp_path / "straight", folder, TERM_RUN)
  assert straight.returncode == 0, straight.stderr[-3000:]

  workdir = tmp_path / "terminated"
  proc = subprocess.Popen([sys.executable, "-m", "bit_train.train", "--config",
                           tiny_run_config(folder, TERM_RUN), "--workdir", str(workdir)],
                          cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)
  checkpoint_dir = str(workdir / "checkpoints")
  deadline = time.time() + 300
  while tf.train.latest_checkpoint(checkpoint_dir) is None:
    assert proc.poll() is None and time.time() < deadline, "no checkpoint before exit"
    time.sleep(0.05)
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 143, stderr[-3000:]
  stopped_at = int(tf.train.latest_checkpoint(checkpoint_dir).rsplit("-", 1)[1])
  assert 3 <= stopped_at < 40
  # The Ctrl-C line, naming the checkpoint it saved at the step it stopped.
  assert (f"error: interrupted at step {stopped_at} (last checkpoint: step "
          f"{stopped_at}): run the same command to resume.") in stderr

  resumed = train(workdir, folder, TERM_RUN)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"Resumed from {workdir / 'checkpoints' / f'ckpt-{stopped_at}'}" in resumed.stderr
  assert_same_weights(final_weights(tmp_path / "straight" / "checkpoints"),
                      final_weights(workdir / "checkpoints"), *RESUME_TOLERANCE)
  # TensorBoard: each step's train loss once, and eval loss under the train loss's tag.
  assert tensorboard_steps(workdir / "tensorboard" / "train", "loss") == list(range(1, 41))
  assert tensorboard_steps(workdir / "tensorboard" / "eval", "loss") == [40]


class _SignalledFinalizer:
  """An object whose finalizer takes a signal: the handler's exception is raised
  inside __del__, where Python prints it and goes on (as in TensorFlow's
  finalizers during the final export)."""

  def __init__(self, signum):
    self.signum = signum

  def __del__(self):
    os.kill(os.getpid(), self.signum)
    for _ in range(1000):  # the handler runs between these bytecodes
      time.sleep(0.001)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_swallowed_by_a_finalizer_still_stops_the_final_export(signum):
  """Ctrl-C during the final export once ended the run with exit 0: its
  KeyboardInterrupt landed in a finalizer and was only printed."""
  from bit_train import trainer  # pylint: disable=import-outside-toplevel
  before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  stop = KeyboardInterrupt if signum == signal.SIGINT else trainer._Terminated
  with pytest.raises(stop):
    with trainer._TermSignal(at_once=True):
      finalized = _SignalledFinalizer(signum)
      del finalized
  assert {s: signal.getsignal(s) for s in before} == before
