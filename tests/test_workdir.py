"""Checkpoints and the workdir: what a finished run leaves, damaged and non-finite
checkpoints, partial files of a save, plan and history, a changed plan, two runs at
once (--dry_run included), --force across models, unusable workdirs, a full disk,
Ctrl-C and divergence.

Fast by design: one tiny run trains a workdir once (module fixture, a real process)
and each case reads it or damages a copy of it. Cases that end before or soon after
the restore run bit-train's main in this process (no TensorFlow start-up per case);
what needs a real process (a lock, signals, a real read-only or full file system)
runs as a user runs it.

Read-only and full file systems are real: a tmpfs (read-only, or 20 MB) mounted in a
private mount namespace (`unshare -m`) that only the test's shell sees. That needs
root, where chmod cannot stand in (root writes through it); elsewhere those two
tests are skipped.
"""

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest
import tensorflow as tf

from bit_train import checkpoints
from bit_train import distribute
from bit_train import files
from bit_train import workdir as wd
from bit_train.errors import UserError
from bit_train.data.patterns import write_pattern_folder

from helpers import (ROOT, all_finite, error_lines, history, newest_whole_step,
                     tiny_run_config, train_here)

TEMPORARY = ("_temp", ".tmp", ".tempstate")


def command(workdir, folder, arg=""):
  return [sys.executable, "-m", "bit_train.train", "--config", tiny_run_config(folder, arg),
          "--workdir", str(workdir)]


def snapshot(workdir):
  """Every file under W (but the lock) with its size and mtime."""
  found = {}
  for root, _, names in os.walk(workdir):
    for name in names:
      if name != ".lock":
        stat = os.stat(os.path.join(root, name))
        found[os.path.relpath(os.path.join(root, name), workdir)] = (
            stat.st_size, stat.st_mtime_ns)
  return found


def temporaries(workdir):
  return [os.path.join(root, name) for root, dirs, names in os.walk(workdir)
          for name in dirs + names if any(t in name for t in TEMPORARY)]


def history_steps(workdir):
  return [r["step"] for r in history(workdir) if "top1" not in r]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, folder):
  """A finished tiny run, as a user runs it: (workdir, its stderr); checkpoints at
  steps 2, 4 and 6."""
  workdir = tmp_path_factory.mktemp("trained") / "w"
  result = subprocess.run(command(workdir, folder), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  (workdir.parent / "stdout.txt").write_text(result.stdout)
  return workdir, result.stderr


def subprocess_stdout(workdir):
  """What the trained_run fixture's bit-train printed on stdout."""
  return (workdir.parent / "stdout.txt").read_text()


@pytest.fixture(scope="module")
def trained(trained_run):
  return trained_run[0]


@pytest.fixture
def copy(trained, tmp_path):
  target = tmp_path / "w"
  shutil.copytree(trained, target)
  return target


def checkpoint_file(workdir, step, kind):
  name = f"ckpt-{step}.index" if kind == "index" else f"ckpt-{step}.data-00000-of-00001"
  return workdir / "checkpoints" / name


# --- what a finished run leaves ------------------------------------------------------

def test_native_run_writes_metrics_checkpoints_curves_and_exports(trained_run):
  workdir, stderr = trained_run
  metrics = json.load(open(workdir / "metrics.json"))
  # The folder has no test split: a stratified holdout is evaluated, in full.
  plan = json.load(open(workdir / "plan.json"))["plan"]
  assert metrics["count"] == 36 - plan["num_examples"] > 0
  assert metrics["step"] == 6 and 0 <= metrics["top1"] <= 1
  assert (workdir / "curves.png").stat().st_size > 1000
  cached = json.load(open(workdir / "scan_cache.json"))  # every file the scan decoded
  assert len(cached) == 36 and all(entry[2] for entry in cached.values())
  assert tf.train.latest_checkpoint(str(workdir / "checkpoints")).endswith("ckpt-6")
  assert os.listdir(workdir / "tensorboard" / "train")
  steps = [r["step"] for r in history(workdir) if "loss" in r and "top1" not in r]
  assert steps == [1, 2, 3, 4, 5, 6]
  assert "step 6/6" in stderr and "img/s" in stderr and "ETA" in stderr

  serving = tf.saved_model.load(str(workdir / "export" / "serving"))
  images = np.random.default_rng(0).integers(0, 255, (3, 50, 40, 3), dtype=np.uint8)
  out = serving.signatures["serving_default"](tf.constant(images))
  assert out["probabilities"].shape == (3, 3)
  np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1, rtol=1e-5)
  names = [n.decode() for n in out["class_names"].numpy()]
  assert set(names) <= {"checker", "horizontal", "vertical"}
  hub_module = tf.saved_model.load(str(workdir / "export" / "hub_module"))
  logits = hub_module(tf.constant(images[:, :32, :32] / 255.0, tf.float32))
  assert logits.shape == (3, 3)


def test_changed_plan_on_resume_is_an_error_unless_forced(copy, folder):
  changed = subprocess.run(command(copy, folder, "supports=2/4/8"), cwd=ROOT,
                           capture_output=True, text=True, timeout=600)
  assert changed.returncode == 2, changed.stderr[-3000:]
  assert "supports" in error_lines(changed.stderr)[0]
  assert train_here(copy, folder, "supports=2/4/8", "--force") is None
  assert json.load(open(copy / "metrics.json"))["step"] == 8


def test_dry_run_on_a_run_keeps_its_plan_and_refuses_what_a_resume_would(copy, folder):
  """A dry run rewrote plan.json, and the next run with its config then resumed
  these checkpoints unchecked: resume compares the config with plan.json."""
  before = snapshot(copy)
  assert train_here(copy, folder, "", "--dry_run") is None
  error = train_here(copy, folder, "supports=2/4/8", "--dry_run")
  assert error.startswith(f"workdir {copy} holds a run with a different config")
  assert error.count("supports") == 1  # in the plan and the config, named once
  assert train_here(copy, folder, "supports=2/4/8", "--dry_run", "--force") is None
  assert snapshot(copy) == before


def test_dry_run_on_a_workdir_in_use_is_refused(copy, folder):
  """The lock a running bit-train holds (an flock on W/.lock, its pid inside) refuses
  a --dry_run as it refuses a second run."""
  before = snapshot(copy)
  with open(copy / ".lock", "w") as held:
    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
    held.write(f"{os.getpid()}\n")
    held.flush()
    error = train_here(copy, folder, "", "--dry_run")
  assert error == (f"workdir {copy} is in use by another bit-train (pid {os.getpid()}): "
                   "wait for it to end, or use another --workdir.")
  assert snapshot(copy) == before


# --- damaged checkpoints and history -------------------------------------------------

def write_non_finite_copy(source_prefix, prefix):
  """Writes the checkpoint at source_prefix again at prefix, with one weight NaN: a
  checkpoint that reads and restores in full but holds non-finite values."""
  reader = tf.train.load_checkpoint(str(source_prefix))
  names = sorted(reader.get_variable_to_shape_map())
  values = [reader.get_tensor(name) for name in names]
  poisoned = next(i for i, name in enumerate(names) if name.startswith("model/"))
  values[poisoned] = np.full_like(values[poisoned], np.nan)
  tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names,
                    shape_and_slices=[""] * len(names), tensors=values)
  assert not all_finite(prefix)


# What an interrupted save leaves in W/checkpoints (TensorFlow's temporary names).
PARTIAL_SAVE = ("ckpt-8_temp/part-00000-of-00001.data-00000-of-00001",
                "ckpt-8.data-00000-of-00001.tempstate123456789",
                "checkpoint.tmp4f2a9c")


@pytest.fixture(scope="module")
def resumed_after_damage(trained, folder, tmp_path_factory):
  """As kills, crashes and overflows leave them: the newest checkpoint without its
  .index, the one before it non-finite, the one before that truncated, a save's
  partial files, and the history's last line cut off; then resumed."""
  workdir = tmp_path_factory.mktemp("damaged") / "w"
  shutil.copytree(trained, workdir)
  write_non_finite_copy(workdir / "checkpoints" / "ckpt-4",
                        workdir / "checkpoints" / "ckpt-5")
  os.remove(checkpoint_file(workdir, 6, "index"))
  os.truncate(checkpoint_file(workdir, 4, "data"), 1000)
  for name in PARTIAL_SAVE:
    partial = workdir / "checkpoints" / name
    partial.parent.mkdir(exist_ok=True)
    partial.write_bytes(b"\0" * 100)
  with open(workdir / "history.jsonl", "a") as f:
    f.write('{"step": 7, "lo')
  before = snapshot(workdir)
  refused = train_here(workdir, folder)
  assert snapshot(workdir) == before  # without --force: one line, nothing changed
  handler, logger = _Collect(), logging.getLogger("absl")
  logger.addHandler(handler)
  try:
    error = train_here(workdir, folder, "", "--force", "--verbosity=0")  # INFO lines
  finally:
    logger.removeHandler(handler)
  return workdir, error, handler.messages, refused, before


class _Collect(logging.Handler):
  def __init__(self):
    super().__init__(logging.INFO)
    self.messages = []

  def emit(self, record):
    self.messages.append(record.getMessage())


def test_damaged_newest_checkpoints_are_one_line_naming_them_and_the_fix(
    resumed_after_damage):
  workdir, _, _, refused, _ = resumed_after_damage
  directory = workdir / "checkpoints"
  assert refused.startswith(
      f"the newest checkpoints in {directory} cannot be resumed from: ckpt-6 (its "
      ".index file is missing); ckpt-5 (it holds non-finite weights or optimizer "
      "state); ")
  assert "ckpt-4 (it cannot be read (" in refused
  assert ("[files: ckpt-6.data-00000-of-00001, ckpt-5.data-00000-of-00001, ckpt-5.index"
          ", ckpt-4.data-00000-of-00001, ckpt-4.index]; ckpt-2 (step 2) is intact. "
          "Nothing was changed: restore the files from a copy, or run the same command "
          f"with --force to move them to {directory / 'damaged'}/ and resume from step "
          "2.") in refused


def test_force_moves_damaged_checkpoints_aside_and_resumes_from_the_intact_one(
    resumed_after_damage):
  workdir, error, messages, _, before = resumed_after_damage
  assert error is None
  directory = workdir / "checkpoints"
  moved = [m for m in messages if m.startswith("Moved the damaged checkpoint file")]
  assert len(moved) == 5
  assert "ckpt-6.data" in moved[0] and ".index file is missing" in moved[0]
  assert "ckpt-5.index" in moved[2] and "non-finite" in moved[2]
  assert "ckpt-4.index" in moved[4] and "cannot be read" in moved[4]
  # Never deleted: each damaged file is in damaged/, byte for byte as it was.
  aside = sorted(os.listdir(directory / "damaged"))
  assert aside == ["ckpt-4.data-00000-of-00001", "ckpt-4.index",
                   "ckpt-5.data-00000-of-00001", "ckpt-5.index",
                   "ckpt-6.data-00000-of-00001"]
  for name in aside:
    assert before[os.path.join("checkpoints", name)][0] == os.path.getsize(
        directory / "damaged" / name)
  assert any(m.startswith(f"Resumed from {directory / 'ckpt-2'} at step 2")
             for m in messages)
  latest = tf.train.latest_checkpoint(str(directory))
  assert latest.endswith("ckpt-6") and all_finite(latest)
  assert json.load(open(workdir / "metrics.json"))["step"] == 6


def test_partial_files_of_an_interrupted_save_are_removed(resumed_after_damage):
  workdir, error = resumed_after_damage[:2]
  assert error is None
  assert temporaries(workdir) == []
  assert not (workdir / "checkpoints" / "ckpt-8_temp").exists()


def test_cut_off_history_line_is_dropped_with_a_warning(resumed_after_damage):
  workdir, error, messages = resumed_after_damage[:3]
  assert error is None
  assert any("history.jsonl: dropped 1 unreadable line(s) (line 8)" in m
             for m in messages)
  assert history_steps(workdir) == [1, 2, 3, 4, 5, 6]  # each once, resumed after 2


def test_no_checkpoint_restores_is_one_line_and_nothing_changes(copy, folder):
  os.remove(checkpoint_file(copy, 6, "index"))
  os.truncate(checkpoint_file(copy, 4, "data"), 1000)
  os.truncate(checkpoint_file(copy, 2, "data"), 1000)
  before = snapshot(copy)
  error = train_here(copy, folder)
  assert error.startswith(f"no checkpoint in {copy / 'checkpoints'} can be resumed from")
  assert all(f"ckpt-{step}" in error for step in (6, 4, 2))
  assert snapshot(copy) == before


@pytest.mark.parametrize("damage", ["truncated", "another shape"])
def test_damaged_plan_json_is_one_line_naming_it_and_the_fix(copy, folder, damage):
  plan = copy / "plan.json"
  if damage == "truncated":
    plan.write_text(plan.read_text()[:40])
  else:
    plan.write_text("[1, 2, 3]\n")
  before = snapshot(copy)
  error = train_here(copy, folder)
  assert error.startswith(f"cannot read the run record {plan}: ") and "--force" in error
  assert snapshot(copy) == before


def test_resume_refuses_what_changes_the_run_and_takes_what_does_not(copy, folder,
                                                                     tmp_path):
  """The config's kinds decide (config.kind): seed is the run's identity; where the
  data are and how the run reports and evaluates are not."""
  before = snapshot(copy)
  error = train_here(copy, folder, "seed=1")
  assert "different config, plan or data (seed: 0 -> 1)" in error and "--force" in error
  assert snapshot(copy) == before
  moved = shutil.copytree(folder, tmp_path / "moved")
  assert train_here(copy, moved, "log_every=3,eval_batch_size=4,keep_checkpoints=5,"
                    "checkpoint_every=4") is None
  saved = json.loads((copy / "plan.json").read_text())["config"]
  assert saved["data_dir"] == str(moved) and saved["eval_batch_size"] == 4


def test_force_to_a_schedule_shorter_than_the_checkpoint_says_nothing_is_trained(
    copy, folder, caplog):
  """--force to supports=2/3 on a 6-step run printed `Eval at step 6/3` and recorded
  the 3-step plan for the 6-step model without a word."""
  assert train_here(copy, folder, "supports=2/3", "--force") is None
  assert ("the checkpoint's step 6 is past this plan's 3 steps: nothing is trained"
          in caplog.text), caplog.text


@pytest.mark.parametrize("change", ["a file added", "a file resized", "classes renamed"])
def test_a_resume_on_other_data_is_one_line_naming_the_difference(copy, folder, tmp_path,
                                                                  change):
  """The run's identity covers its data: the files per class and their sizes, and
  the class names in order, which even --force does not change."""
  before = snapshot(copy)
  other = shutil.copytree(folder, tmp_path / "other")
  if change == "a file added":
    shutil.copy(other / "checker" / "000.png", other / "checker" / "copy.png")
  elif change == "a file resized":
    with open(other / "vertical" / "000.png", "ab") as f:
      f.write(b"\0")
  else:
    os.rename(other / "checker", other / "zigzag")
  error = train_here(copy, other)
  if change == "classes renamed":
    assert error.startswith(f"workdir {copy} holds a run whose classes were 3 (checker, "
                            "horizontal, vertical); this run's data has 3 (horizontal, "
                            "vertical, zigzag)")
    assert train_here(copy, other, "", "--force") == error
  else:
    assert error.startswith(f"workdir {copy} holds a run with a different config, plan "
                            "or data (data ")
    assert ("files_per_class: [11, 11, 11] -> [12, 11, 11]" in error
            if change == "a file added" else "files_digest" in error), error
  assert snapshot(copy) == before


# --- --force across models -----------------------------------------------------------

@pytest.mark.parametrize("change", ["architecture", "class count"])
def test_force_to_another_model_is_one_line_and_writes_nothing(copy, folder, change,
                                                               tmp_path):
  before = snapshot(copy)
  if change == "architecture":
    forced = train_here(copy, folder, "width=0.25", "--force")
  else:
    two = write_pattern_folder(tmp_path / "two", per_class=12,
                               classes=("checker", "vertical"))
    forced = train_here(copy, two, "", "--force")
  if change == "architecture":
    assert forced.startswith(f"the checkpoints in {copy / 'checkpoints'} hold another "
                             "model") and "use a new --workdir" in forced
  else:  # refused on the data, before the model is built
    assert forced == (
        f"workdir {copy} holds a run whose classes were 3 (checker, horizontal, "
        "vertical); this run's data has 2 (checker, vertical): the model's outputs "
        "would silently change meaning, so even --force does not resume it: use a new "
        "--workdir.")
  # Nothing written: plan.json is the original run's, so its command still resumes.
  assert snapshot(copy) == before


# --- unusable workdirs ---------------------------------------------------------------

@pytest.mark.parametrize("dry_run", [False, True], ids=["train", "dry_run"])
@pytest.mark.parametrize("kind", ["a file", "under a file"])
def test_workdir_that_is_or_sits_under_a_file_is_one_line(tmp_path, folder, kind,
                                                          dry_run):
  (tmp_path / "f").write_text("not a directory\n")
  workdir = tmp_path / "f" if kind == "a file" else tmp_path / "f" / "w"
  error = train_here(workdir, folder, "", *(["--dry_run"] if dry_run else []))
  assert error is not None and str(workdir) in error
  assert ("is a file, not a directory" if kind == "a file" else "Not a directory") in error
  assert (tmp_path / "f").read_text() == "not a directory\n"


def test_a_workdir_too_long_for_the_checkpoint_names_fails_before_the_first_step(
    tmp_path, folder):
  """The workdir itself can be made; the names under it would pass the OS's limit."""
  limit = os.pathconf(tmp_path, "PC_PATH_MAX")
  room = max(len(name) for name in wd.longest_names(6))  # the tiny run has 6 steps
  workdir = str(tmp_path)
  while len(os.fsencode(workdir)) < limit - room + 20:
    workdir = os.path.join(workdir, "d" * min(200, limit - room + 20 - len(workdir)))
  assert len(os.fsencode(workdir)) < limit - 16  # short enough to be created
  error = train_here(workdir, folder)
  assert error is not None and error.startswith(
      f"the workdir {workdir} is too long a path for the files a run writes: "
      f"{workdir}/checkpoints/ckpt-6_temp/"), error
  assert not os.path.exists(os.path.join(workdir, "checkpoints"))
  assert not os.path.exists(os.path.join(workdir, "history.jsonl"))  # no step was run


def test_the_path_check_covers_each_worker_s_own_checkpoint_folder(tmp_path):
  """A multi-worker run's workers save under W/workers/<i>/checkpoints: a W short
  enough for the chief's names but not for the last worker's is refused before the
  first step, naming that worker's file."""
  limit = os.pathconf(tmp_path, "PC_PATH_MAX")
  chief = max(len(name) for name in wd.longest_names(6))
  worker = max(len(name) for name in wd.longest_names(6, workers=12))
  assert worker == chief + len("/workers/11")
  workdir = str(tmp_path)
  while len(os.fsencode(workdir)) < limit - worker + 2:
    workdir = os.path.join(workdir, "d" * min(200, limit - worker + 2 - len(workdir)))
  os.makedirs(workdir)
  wd.check_room(workdir, 6)  # one worker: room enough
  with pytest.raises(UserError) as error:
    wd.check_room(workdir, 6, workers=12)
  assert str(error.value).startswith(
      f"the workdir {workdir} is too long a path for the files a run writes: "
      f"{workdir}/workers/11/checkpoints/ckpt-6_temp/")
  two_workers = types.SimpleNamespace(cluster_resolver=types.SimpleNamespace(
      task_type="worker", task_id=1, cluster_spec=lambda: types.SimpleNamespace(
          as_dict=lambda: {"worker": ["h0:1", "h1:1"]})))
  assert distribute.worker_count(two_workers) == 2
  assert distribute.worker_count(types.SimpleNamespace()) == 1


@pytest.mark.parametrize("name", ["export", "tensorboard"])
def test_an_export_location_that_is_a_file_fails_before_the_first_step(tmp_path, folder,
                                                                       name):
  """(A file named tensorboard was TensorFlow's traceback from its summary writer.)"""
  workdir = tmp_path / "w"
  workdir.mkdir()
  (workdir / name).write_text(f"a file where the {name} goes\n")
  error = train_here(workdir, folder)
  assert error == (f"{workdir}/{name} is a file, but the run writes its {name} there: "
                   "move it away or use another --workdir.")
  assert not (workdir / "checkpoints").exists()


@pytest.mark.parametrize("where", [".", "runs/w"])
def test_a_workdir_inside_the_image_folder_is_one_line_and_writes_nothing(tmp_path,
                                                                         where):
  """Its checkpoints/, export/ and tensorboard/ became class folders of the data, and
  the next run (a resume too) stopped on them."""
  data = write_pattern_folder(tmp_path / "data", per_class=4)
  before = sorted(os.listdir(data))
  workdir = os.path.normpath(os.path.join(data, where))
  for dry in ([], ["--dry_run"]):
    assert train_here(workdir, data, "", *dry) == (
        f"the workdir {workdir} is inside the image folder {data} (data_dir): what the "
        "run writes there would be read as classes; choose a --workdir outside it.")
  assert sorted(os.listdir(data)) == before


@pytest.mark.parametrize("where", ["export", "export/w", "run/export", "run/checkpoints/w"])
def test_a_workdir_in_an_export_or_a_run_s_output_folder_is_one_line_and_writes_nothing(
    tmp_path, folder, where):
  """bit-train wrote its plan.json (bit-eval its eval/) into a trainer export, which
  bit-eval and bit-predict read as a whole, or into the folders another run writes."""
  (tmp_path / "export").mkdir()
  (tmp_path / "export" / "export.json").write_text("{}\n")  # W/export, or a copy
  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "plan.json").write_text("{}\n")  # a run's workdir
  before = snapshot(tmp_path)
  workdir = tmp_path / where
  export, run = (os.path.realpath(tmp_path / name) for name in ("export", "run"))
  says = (f"--workdir {workdir} is in the trainer export {export}: what this command "
          "writes would mix into the export, which bit-eval and bit-predict read as a "
          "whole: choose a --workdir outside it." if where.startswith("export") else
          f"--workdir {workdir} is in {run}/{where.split('/')[1]}, where the run in "
          f"{run} writes its {where.split('/')[1]}: choose a --workdir outside it.")
  for dry in ([], ["--dry_run"]):
    assert train_here(workdir, folder, "", *dry) == says
  assert snapshot(tmp_path) == before


def _namespace_mount_works():
  """Tests that need a real read-only or full file system mount a tmpfs in a private
  mount namespace (`unshare -m`, root only): nothing outside the test sees it."""
  if os.geteuid() != 0 or shutil.which("unshare") is None:
    return False
  return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                        capture_output=True).returncode == 0


needs_mounts = pytest.mark.skipif(not _namespace_mount_works(),
                                  reason="needs root and `unshare -m` for a tmpfs")


def in_private_tmpfs(mount_point, options, script, timeout=600):
  """Runs `script` (sh) with a fresh tmpfs mounted at mount_point, seen by it alone."""
  os.makedirs(mount_point, exist_ok=True)
  return subprocess.run(
      ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o {options} none {mount_point} "
       f"&& {script}"], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
      env=dict(os.environ, PYTHONPATH=ROOT))


@needs_mounts
def test_read_only_workdir_is_one_line_in_train_dry_run_and_eval(tmp_path, trained,
                                                                 folder):
  # A real read-only file system: a tmpfs holding an empty W, remounted read-only.
  ro = tmp_path / "ro"
  workdir = ro / "w"
  train = " ".join(command(workdir, folder))
  evaluate = (f"{sys.executable} -m bit_train.eval --config imagenet_eval"
              f":dataset=image_folder,data_dir={folder},model_path="
              f"{trained}/export/hub_module,crop=32 --workdir {workdir}")
  result = in_private_tmpfs(ro, "size=1m", (
      f"mkdir {workdir} && mount -o remount,ro {ro} && "
      f"{train}; echo exit $?; {train} --dry_run; echo exit $?; {evaluate}; echo exit $?"))
  lines = error_lines(result.stderr)
  assert len(lines) == 3, result.stderr[-3000:]
  assert all(str(workdir) in line and "Read-only file system" in line for line in lines)
  assert result.stdout.count("exit 2") == 3 and "Traceback" not in result.stderr


@pytest.mark.parametrize("blocker, advice", [
    ("folder", "a folder has that name: move it away"),
    ("file", "a file stands where a folder of the path should be: move it away")])
def test_a_path_blocked_by_a_folder_or_a_file_says_what_is_in_the_way(tmp_path, blocker,
                                                                     advice):
  if blocker == "folder":
    (tmp_path / "plan.json").mkdir()
    path = tmp_path / "plan.json"
  else:
    (tmp_path / "w").write_text("")
    path = tmp_path / "w" / "plan.json"
  with pytest.raises(UserError) as caught:
    files.write_text_atomic(str(path), "{}")
  assert str(caught.value).startswith(f"cannot write {path}: ")
  assert f": {advice}, then " in str(caught.value)
  assert sorted(os.listdir(tmp_path)) == [path.parent.name if blocker == "file"
                                          else "plan.json"]


# --- a full disk ---------------------------------------------------------------------

@needs_mounts
def test_full_disk_is_one_line_and_leaves_no_temporary_files(tmp_path, folder):
  # 20 MB hold the plan, the logs and one tiny checkpoint (16 MB), not a second.
  disk, kept = tmp_path / "disk", tmp_path / "kept"
  result = in_private_tmpfs(disk, "size=20m", (
      f"{' '.join(command(disk / 'w', folder))}; echo exit $?; cp -a {disk}/w {kept}"))
  lines = error_lines(result.stderr)
  assert lines == [f"error: cannot write {disk / 'w' / 'checkpoints' / 'ckpt-4'}:"
                   " No space left on device: free some space, then run the same "
                   "command to resume from the last checkpoint."], result.stderr[-3000:]
  assert "exit 2" in result.stdout and "Traceback" not in result.stderr
  assert temporaries(kept) == []
  assert all_finite(tf.train.latest_checkpoint(str(kept / "checkpoints")))
  assert tf.train.latest_checkpoint(str(kept / "checkpoints")).endswith("ckpt-2")


# --- two runs at once, kill -9 and Ctrl-C -------------------------------------------

def _default_sigint():
  # A suite started in the background of a non-interactive shell inherits SIGINT
  # ignored, and Python then never raises KeyboardInterrupt: give the run the
  # Ctrl-C a user's terminal gives it.
  signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(workdir, folder, arg, log):
  return subprocess.Popen(command(workdir, folder, arg), cwd=ROOT,
                          stdout=subprocess.DEVNULL, stderr=open(log, "w"),
                          preexec_fn=_default_sigint)


def _wait_for(condition, proc, what, timeout=300):
  deadline = time.time() + timeout
  while not condition():
    assert proc.poll() is None, f"exited before {what}"
    assert time.time() < deadline, f"no {what} in {timeout} s"
    time.sleep(0.05)


def _newest_step(workdir):
  latest = tf.train.latest_checkpoint(str(workdir / "checkpoints"))
  return int(latest.rsplit("-", 1)[1]) if latest else 0


def _newest_whole_step(workdir):
  return newest_whole_step(workdir / "checkpoints")


def test_second_run_is_refused_kill_9_frees_the_lock_and_ctrl_c_is_one_line(
    tmp_path, folder):
  workdir, arg = tmp_path / "w", "supports=2/500/1000"  # long: always stopped
  first = _start(workdir, folder, arg, tmp_path / "first.log")
  # plan.json is written after the restore, so the lock is held by then.
  _wait_for(lambda: (workdir / "plan.json").exists(), first, "plan.json")
  second = subprocess.run(command(workdir, folder, arg), cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
  assert second.returncode == 2, second.stderr[-3000:]
  assert error_lines(second.stderr) == [
      f"error: workdir {workdir} is in use by another bit-train (pid {first.pid}): wait "
      "for it to end, or use another --workdir."]
  assert first.poll() is None

  _wait_for(lambda: _newest_step(workdir) >= 2, first, "checkpoint")
  first.kill()  # SIGKILL: the OS drops the lock, the file stays
  first.wait()
  killed_at = _newest_whole_step(workdir)

  third = _start(workdir, folder, arg, tmp_path / "third.log")
  _wait_for(lambda: _newest_step(workdir) > killed_at, third, "new checkpoint")
  third.send_signal(signal.SIGINT)
  third.wait(timeout=120)
  log = (tmp_path / "third.log").read_text()
  assert f"Resumed from {workdir / 'checkpoints' / f'ckpt-{killed_at}'}" in log
  assert third.returncode == 130, log[-3000:]
  [line] = error_lines(log)
  saved = _newest_whole_step(workdir)
  assert line.startswith("error: interrupted at step ") and line.endswith(
      f"(last checkpoint: step {saved}): run the same command to resume.")
  assert "Traceback" not in log
  assert temporaries(workdir) == []

  fourth = _start(workdir, folder, arg, tmp_path / "fourth.log")
  _wait_for(lambda: f"ckpt-{saved} at step {saved}" in
            (tmp_path / "fourth.log").read_text(), fourth, "resume")
  fourth.kill()
  fourth.wait()


# --- divergence ----------------------------------------------------------------------

def test_divergence_never_saves_non_finite_weights_and_names_the_last_good_checkpoint(
    folder, tmp_path):
  # lr 1e39 is inf in float32: the second update (inf x zero momentum) turns weights
  # into NaN while that step's loss, computed before the update, is still finite;
  # the old loop saved them. (log_every=5: no lr summary of 1e39 at step 2.)
  workdir = tmp_path / "diverged"
  diverging = ("base_lr=1e39,supports=1/2/3,checkpoint_every=1,log_every=5,"
               "mixup_alpha=0.0")
  error = train_here(workdir, folder, diverging)
  for prefix in tf.train.get_checkpoint_state(str(workdir / "checkpoints")) \
      .all_model_checkpoint_paths:
    assert all_finite(prefix), prefix
  assert error == (
      "non-finite weights at step 2: the run stopped without saving it; the newest "
      f"checkpoint, {workdir / 'checkpoints' / 'ckpt-1'} (step 1), is finite but may "
      "already hold diverging weights: lower base_lr and use a new --workdir (--force "
      "resumes from that checkpoint).")
  # The advice holds: --force with a lower lr resumes from ckpt-1 and finishes.
  lower = diverging.replace("base_lr=1e39", "base_lr=0.01")
  assert train_here(workdir, folder, lower, "--force") is None
  assert json.load(open(workdir / "metrics.json"))["step"] == 3


# --- metrics.json marks a finished run ---------------------------------------------


def test_metrics_json_is_written_after_the_exports_so_it_marks_a_finished_run(
    tmp_path, folder):
  workdir = tmp_path / "w"
  # A folder where the export's last file goes: found only when it is written (a
  # file where the export folder goes is refused before the first step).
  (workdir / "export" / "export.json").mkdir(parents=True)
  error = train_here(workdir, folder)
  assert error and "export.json" in error
  # The steps are done and saved, but the run is not finished: no metrics.json,
  # which is what the experiments runner and a user take as "done".
  assert not (workdir / "metrics.json").exists()
  assert any(name.startswith("ckpt-") for name in os.listdir(workdir / "checkpoints"))
  (workdir / "export" / "export.json").rmdir()
  assert train_here(workdir, folder) is None
  record = json.loads((workdir / "metrics.json").read_text())
  assert (workdir / "export" / "serving" / "saved_model.pb").exists()
  assert record["step"] == json.loads((workdir / "plan.json").read_text())[
      "plan"]["supports"][-1]


def test_ctrl_c_inside_a_save_names_the_checkpoint_only_when_its_files_are_whole(
    tmp_path):
  class InterruptedManager(tf.train.CheckpointManager):
    """Ctrl-C after (write=True) or before (write=False) the files are written."""
    write = True

    def save(self, checkpoint_number=None):
      if self.write:
        super().save(checkpoint_number=checkpoint_number)
      raise KeyboardInterrupt

  manager = InterruptedManager(tf.train.Checkpoint(v=tf.Variable(1.0)), str(tmp_path), 3)
  saver = checkpoints.Saver(manager, None)
  with pytest.raises(KeyboardInterrupt):
    saver.save(4)
  assert saver.latest == os.path.join(str(tmp_path), "ckpt-4")
  manager.write = False
  with pytest.raises(KeyboardInterrupt):
    saver.save(6)
  assert saver.latest == os.path.join(str(tmp_path), "ckpt-4")


def test_dry_run_prints_the_plan_s_warnings_after_it(tmp_path, folder, capsys):
  """A batch above the recipe's that shrinks the lr and exceeds the dataset: one
  `warning:` line each, after the plan."""
  from bit_train import train as bit_train  # pylint: disable=import-outside-toplevel
  from helpers import run_here  # pylint: disable=import-outside-toplevel
  result = run_here(bit_train.run, "--config",
                    tiny_run_config(folder, "lr_scaling=linear,batch_size=64,batch_split=8"),
                    "--workdir", tmp_path, "--dry_run", capsys=capsys)
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  warnings = [n for n, line in enumerate(lines) if line.startswith("warning: ")]
  assert len(warnings) == 2, result.stdout
  assert warnings[0] > next(n for n, line in enumerate(lines) if "BiT-HyperRule plan" in line)
  assert "batch_size=64 scales the learning rate down" in lines[warnings[0]]
  assert "set batch_size=512,batch_split=64" in lines[warnings[0]]
  assert "batch_size=64 is" in lines[warnings[1]] and "training examples" in lines[warnings[1]]


def test_purge_events_drops_the_steps_after_the_resumed_one(tmp_path):
  from bit_train import runlog  # pylint: disable=import-outside-toplevel

  def write(steps):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
      for step in steps:
        tf.summary.scalar("loss", float(step), step=step)
    writer.close()

  def steps():
    return [event.step for name in sorted(os.listdir(tmp_path))
            for event in tf.compat.v1.train.summary_iterator(str(tmp_path / name))
            for value in event.summary.value if value.tag == "loss"]

  write(range(1, 11))
  runlog.purge_events(str(tmp_path), 4)
  assert steps() == [1, 2, 3, 4]
  write(range(5, 8))  # the resumed run
  assert steps() == list(range(1, 8))


def test_export_records_the_training_files_and_bit_eval_measures_only_the_unseen(
    trained_run, folder, tmp_path):
  """bit-eval on the whole folder the run trained on scores only its holdout."""
  workdir, stderr = trained_run
  plan = json.load(open(workdir / "plan.json"))["plan"]
  about = json.load(open(workdir / "export" / "export.json"))["run"]["trained_on"]
  assert about["dataset"] == "image_folder" and about["data_dir"] == str(folder)
  assert about["files"] == plan["num_examples"] and len(about["fingerprint"]) == 16
  listed = (workdir / "export" / "trained_files.txt").read_text().splitlines()
  assert len(listed) == plan["num_examples"]
  for line in listed:
    path, size = line.split("\t")
    assert os.path.getsize(os.path.join(folder, path)) == int(size)
  # The run's own ending names its outputs and the commands to go on.
  assert f"Export   {workdir / 'export'}" in subprocess_stdout(workdir)
  metrics = json.load(open(workdir / "metrics.json"))
  # A copy of the folder as an extra evaluation: its training images were scored.
  copy = shutil.copytree(folder, tmp_path / "copy")
  result = subprocess.run(
      [sys.executable, "-m", "bit_train.eval", "--config",
       f"imagenet_eval:dataset=image_folder,data_dir={folder},model_path="
       f"{workdir / 'export'},extra_evals={copy}", "--workdir", str(tmp_path)],
      cwd=ROOT, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  scored, extra = json.load(open(tmp_path / "eval" / "metrics.json"))["results"].values()
  assert scored["count"] == extra["count"] == metrics["count"] == 36 - plan["num_examples"]
  assert scored["top1"] == extra["top1"] == metrics["top1"]
  assert (f"{plan['num_examples']} others were among its training images"
          in result.stderr), result.stderr[-3000:]
  assert f"Metrics    {tmp_path / 'eval' / 'metrics.json'}" in result.stdout
