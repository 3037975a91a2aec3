"""experiments/: suites, the runner (plan, run, skip, resume, emit) and collect."""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from absl import logging as absl_logging
import pytest

from bit_train.errors import UserError
from experiments import plans
from experiments import run as experiments_run
from experiments import runs as runs_lib
from experiments.suites import paper
from experiments.suites import vtab

from helpers import ROOT, error_lines, run_module
from helpers import write_folder

# Two tiny runs of the bundled miniature BiT over a local image folder (a long one
# that is killed and resumed, a short one), one that fails and one that is blocked.
SUITE_FILE = """
from experiments.runs import Run, config_arg
from experiments.suites import Suite

DATA = {data!r}


def runs(root):
  def run(variant, source="npz", blocked="", **fields):
    fields = dict(data_dir=DATA, model="BiT-MNIST-R14x0.25", model_source=source,
                  batch_size=4, log_every=10, **fields)
    return Run(suite="tiny", dataset="folder", model="tiny", shots="full", seed=0,
               variant=variant, blocked=blocked,
               config="quickstart:" + config_arg(**fields))
  return [run("npz", supports=(2, 60), checkpoint_every=5),
          run("native", source="native", supports=(2, 6)),
          run("broken", model_path=DATA + "/missing.npz", supports=(2, 6)),
          run("blocked", blocked="needs a label bit_train cannot read", supports=(2, 6))]


SUITE = Suite("tiny", "two tiny runs over an image folder", runs, table="variants")
"""


def wait_for_a_checkpoint(proc, workdir):
  """Returns once the run in `workdir` has written a checkpoint; fails if `proc`
  ends or five minutes pass first."""
  checkpoints = os.path.join(workdir, "checkpoints")
  deadline = time.time() + 300
  while not (os.path.isdir(checkpoints) and any(
      f.endswith(".index") for f in os.listdir(checkpoints))):
    assert proc.poll() is None and time.time() < deadline, "no checkpoint was written"
    time.sleep(0.1)


def runner(*args):
  return run_module("experiments.run", *args)


def runner_here(capsys, *args):
  """The runner's main in this process (no TensorFlow start-up): what it printed.
  Its mistakes raise; the one line and exit code they become need a real process."""
  verbosity = absl_logging.get_verbosity()  # a dry run quiets absl for the process
  try:
    experiments_run.main([str(a) for a in args])
  finally:
    absl_logging.set_verbosity(verbosity)
  return capsys.readouterr().out


@pytest.fixture
def tiny_suite(tmp_path):
  data = write_folder(tmp_path / "images", {"a": 10, "b": 10}, size=(16, 16))
  path = tmp_path / "tiny_suite.py"
  path.write_text(SUITE_FILE.format(data=data))
  return str(path), str(tmp_path / "root")


def _run(root, variant):
  return runs_lib.Run(suite="tiny", dataset="folder", model="tiny", shots="full",
                      seed=0, variant=variant, config="")


def test_runner_plans_runs_resumes_after_a_kill_skips_and_collects(tiny_suite, capsys):
  suite, root = tiny_suite
  long_run, short_run = _run(root, "npz"), _run(root, "native")
  # Plan: the trainer's own HyperRule plan for each run, and the total.
  out = runner_here(capsys, suite, "--root", root, "--dry_run", "--batch_split", "2")
  assert long_run.name in out and short_run.name in out
  assert "3 runnable, 72 steps in total" in out  # 60 + 6 + 6
  assert "1 blocked" in out
  assert not os.path.exists(os.path.join(root, "runs.json"))  # a dry run writes nothing
  # Run, killed (with the trainer under it) once the long run has a checkpoint.
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.run", suite, "--root", root, "--batch_split", "2"],
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
      start_new_session=True)
  wait_for_a_checkpoint(proc, long_run.workdir(root))
  os.killpg(proc.pid, signal.SIGKILL)
  proc.wait()
  assert runs_lib.metrics(root, long_run) is None
  # The same command again resumes the long run from its checkpoint and runs the rest.
  result = runner(suite, "--root", root, "--batch_split", "2")
  assert result.returncode == 2, result.stdout + result.stderr  # the broken run failed
  assert f"{long_run.name}: resuming" in result.stdout
  with open(runs_lib.log_path(root, long_run)) as f:
    assert "Resumed from" in f.read()
  assert "skipped, cannot run yet: needs a label" in result.stdout
  assert error_lines(result.stderr) == [
      "error: 1 run(s) failed: see R/logs/*.failed.json, fix, and run the same command "
      "again (finished runs are skipped)."]
  finished = {r.variant: runs_lib.metrics(root, r) for r in (long_run, short_run)}
  assert finished["npz"]["step"] == 60 and finished["native"]["step"] == 6
  assert finished["npz"]["provenance"]["devices"].startswith("1 x CPU")
  plan = runs_lib.plan_record(root, long_run)["plan"]
  assert plan["batch_split"] == 2 and plan["batch_size"] == 4  # scaling in the plan
  # Again (without the failed run, which would be tried again): finished runs are
  # skipped, their metrics untouched.
  stamps = {v: os.path.getmtime(os.path.join(_run(root, v).workdir(root), "metrics.json"))
            for v in finished}
  out = runner_here(capsys, suite, "--root", root, "--batch_split", "2", "--variants",
                    "npz,native")
  assert out.count("finished, skipped") == 2 and "starting" not in out
  assert stamps == {v: os.path.getmtime(
      os.path.join(_run(root, v).workdir(root), "metrics.json")) for v in finished}
  # Collect: the numbers are the runs' metrics.json; the others say why.
  result = run_module("experiments.collect", root)
  assert result.returncode == 0, result.stderr
  with open(os.path.join(root, "results.csv")) as f:
    rows = {row["variant"]: row for row in csv.DictReader(f)}
  for variant, metrics in finished.items():
    assert float(rows[variant]["top1_median"]) == round(100 * metrics["top1"], 2)
    assert rows[variant]["top1_by_seed"] == f"0:{100 * metrics['top1']:.2f}"
  assert rows["broken"]["finished"] == "0" and "1 failed: error:" in rows["broken"]["notes"]
  assert "1 blocked: needs a label" in rows["blocked"]["notes"]
  text = open(os.path.join(root, "results.md")).read()
  assert f"{100 * finished['npz']['top1']:.1f}" in text and "broken: 1 failed" in text


def test_emitted_commands_and_slurm_array_one_task_per_run(tmp_path, capsys):
  root = str(tmp_path / "root")

  def emit(*more):
    out = runner_here(capsys, "fewshot", "--root", root, "--emit", "--models",
                      "BiT-M-R50x1", "--datasets", "cifar10,oxford_flowers102", "--seeds",
                      "0,1", "--batch_size", "128", "--base_lr", "0.001", "--lr_scaling",
                      "none", "--sbatch=--gres=gpu:8", *more)
    return [line.split("wrote ", 1)[1] for line in out.splitlines()]
  commands_file, script = emit("--python", "echo")
  assert os.path.dirname(commands_file) == os.path.dirname(script)
  with open(commands_file) as f:
    lines = f.read().splitlines()
  commands = [line for line in lines if not line.startswith("#")]
  expected = [(d, k, s) for d in ("cifar10", "oxford_flowers102") for k in (1, 5, 10, 25)
              for s in (0, 1) if not (d == "oxford_flowers102" and k == 25)]
  assert len(commands) == len(expected) == 14
  for line, (dataset, k, seed) in zip(commands, expected):
    workdir = os.path.join(os.path.abspath(root), "fewshot",
                           f"{dataset}__BiT-M-R50x1__{k}shot__seed{seed}")
    assert line.startswith(f"test -f {workdir}/metrics.json || echo -m bit_train.train")
    assert f"--workdir {workdir} " in line
    assert (f"dataset={dataset},model=BiT-M-R50x1,model_source=npz,seed={seed},"
            f"examples_per_class={k},few_shot_seed={seed}") in line
    assert line.endswith("--config.batch_size=128 --config.base_lr=0.001 "
                         "--config.lr_scaling=none")
  assert [line for line in lines if line.startswith("#")] == [
      f"# left out oxford_flowers102__BiT-M-R50x1__25shot__seed{s}: blocked: "
      "oxford_flowers102's train split has only 10 examples per class; 25-shot needs a "
      "larger split" for s in (0, 1)]
  text = open(script).read()
  assert "#SBATCH --array=0-13\n" in text and "#SBATCH --gres=gpu:8\n" in text
  # Array task i runs line i+1: with --python echo the task prints its command.
  for task in (0, 7, 13):
    out = subprocess.run(["bash", script], env=dict(os.environ, SLURM_ARRAY_TASK_ID=str(task)),
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1] == commands[task].split(" || echo ")[1]
  # A task past the commands (a comment, or past the end of the file) fails instead
  # of doing nothing.
  for task in (14, 16):
    result = subprocess.run(["bash", script], capture_output=True, text=True,
                            env=dict(os.environ, SLURM_ARRAY_TASK_ID=str(task)))
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: line {task + 1} of {commands_file} is "
                                     "missing, empty or a comment")
  # Emitting again writes a new folder: the first script still reads its own file.
  # The default interpreter is this one; --throttle limits the running tasks.
  again, again_script = emit("--throttle", "3")
  assert os.path.dirname(again) != os.path.dirname(commands_file)
  assert open(commands_file).read().splitlines() == lines
  assert f"|| {sys.executable} -m bit_train.train" in open(again).read()
  assert "#SBATCH --array=0-13%3\n" in open(again_script).read()


def test_paper_suites_plan_without_data_with_the_scaling_in_the_plan(tmp_path, capsys):
  out = runner_here(capsys, "standard", "--root", tmp_path, "--dry_run", "--models",
                    "BiT-M-R50x1", "--batch_size", "128", "--base_lr", "0.001",
                    "--lr_scaling", "none")
  lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if "__" in line}
  #                  n, res, mixup, steps, batch, split, lr
  assert lines["cifar10__BiT-M-R50x1__full__seed0"] == [
      "49,000", "160/128", "0.1", "10,000", "128", "1", "0.001"]
  assert lines["imagenet2012__BiT-M-R50x1__full__seed0"] == [
      "1,268,355", "512/480", "0.1", "20,000", "128", "1", "0.001"]
  assert lines["oxford_flowers102__BiT-M-R50x1__full__seed0"][:4] == [
      "1,020", "512/480", "0", "500"]
  assert "15 runs: 15 runnable, 123,000 steps in total" in out  # 3 seeds each
  out = runner_here(capsys, "vtab", "--root", tmp_path, "--dry_run", "--models",
                    "BiT-M-R50x1")
  assert "57 runs: 57 runnable, 28,500 steps in total" in out  # 19 tasks x 3 seeds


def test_a_filter_naming_nothing_in_the_suite_is_one_line(tmp_path):
  result = runner("standard", "--root", str(tmp_path), "--dry_run", "--datasets", "cifar11")
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      "error: --datasets cifar11: not in suite standard; it has cifar10, cifar100, "
      "imagenet2012, oxford_flowers102, oxford_iiit_pet."]


def test_a_suite_file_s_syntax_error_shows_python_s_lines_without_library_frames(
    tmp_path):
  """As for a config file (test_config.py): the runner showed importlib's frames."""
  suite = tmp_path / "my_suite.py"
  suite.write_text("SUITE = [\n")
  result = runner(str(suite), "--root", str(tmp_path / "R"), "--dry_run")
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert f'File "{suite}", line 1' in result.stderr and "^" in result.stderr
  assert error_lines(result.stderr) == [
      f"error: syntax error in {suite}, line 1 (shown above), while loading the suite: "
      "fix it."]


def test_a_suite_file_that_is_not_there_is_one_line_saying_so(tmp_path):
  """A name ending in .py is a suite file: a missing one was an 'unknown suite'."""
  result = runner(str(tmp_path / "missing_suite.py"), "--root", str(tmp_path / "R"),
                  "--dry_run")
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      f"error: cannot read the suite file {tmp_path / 'missing_suite.py'}: No such file "
      "or directory: check the path."]


def test_an_sbatch_option_of_more_than_one_line_is_one_line(tmp_path):
  """Its second line went into slurm.sh as a shell command."""
  result = runner("standard", "--root", str(tmp_path), "--emit",
                  "--sbatch", "--gres=gpu:8\nrm -rf data")
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      "error: --sbatch '--gres=gpu:8\\nrm -rf data': give one #SBATCH option on one "
      "line per --sbatch, e.g. --sbatch=--gres=gpu:8."]
  assert not os.path.exists(tmp_path / "standard")


# The VTAB-1k splits of google-research/task_adaptation (task_adaptation/data/*.py),
# written out by hand: val200 and the test split of every task.
VTAB_TABLE = {
    "caltech101": ("train[2754:2954]", "test"),
    "cifar100": ("train[45000:45200]", "test"),
    "dtd": ("validation[:200]", "test"),
    "oxford_flowers102": ("validation[:200]", "test"),
    "oxford_iiit_pet": ("train[2944:3144]", "test"),
    "patch_camelyon": ("validation[:200]", "test"),
    "sun397": ("validation[:200]", "test"),
    "svhn": ("train[65931:66131]", "test"),
    "resisc45": ("train[18900:19100]", "train[25200:]"),
    "eurosat": ("train[16200:16400]", "train[21600:]"),
    "dmlab": ("validation[:200]", "test"),
    "kitti_distance": ("validation[:200]", "test"),
    "smallnorb_azimuth": ("test[:200]", "test[50%:]"),
    "smallnorb_elevation": ("test[:200]", "test[50%:]"),
    "dsprites_location": ("train[589824:590024]", "train[90%:]"),
    "dsprites_orientation": ("train[589824:590024]", "train[90%:]"),
    "clevr_count": ("train[63000:63200]", "validation"),
    "clevr_distance": ("train[63000:63200]", "validation"),
    "diabetic_retinopathy": ("validation[:200]", "test"),
}


def test_vtab_split_strings_match_the_task_table():
  assert len(vtab.TASKS) == 19 and set(vtab.TASK_BY_NAME) == set(VTAB_TABLE)
  for task in vtab.TASKS:
    val200, test = VTAB_TABLE[task.name]
    assert (task.train800, task.val200, task.test) == ("train[:800]", val200, test)
    assert task.train800val200 == f"train[:800]+{val200}"
    run = vtab.task_run("BiT-M-R50x1", task, 0)
    assert f"train_split={task.train800val200},eval_split={test}," in run.config
    assert "num_examples=1000" in run.config
  assert {t.name for t in vtab.TASKS if t.manual} == {"resisc45", "diabetic_retinopathy"}
  assert sum(t.group == "structured" for t in vtab.TASKS) == 8
  # task_adaptation's labels, and no random crop (or flip) where the paper drops them.
  configs = {t.name: vtab.task_run("BiT-M-R50x1", t, 0).config for t in vtab.TASKS}
  assert "label_key=label_x_position/16,precrop=128,crop=128,flip=False" in configs[
      "dsprites_location"]
  assert "label_key=label_orientation/16,precrop=128,crop=128,flip=False" in configs[
      "dsprites_orientation"]
  assert configs["dmlab"].endswith("precrop=480,crop=480")
  assert "label_key=count_all" in configs["clevr_count"]
  assert "label_key=closest_vehicle_distance" in configs["kitti_distance"]
  assert "dataset=oxford_iiit_pet:4.*.*," in configs["oxford_iiit_pet"]
  assert sum("precrop" in c for c in configs.values()) == 3
  assert sum("label_key" in c for c in configs.values()) == 7


def test_a_finished_run_with_another_plan_is_named_different_not_skipped(tmp_path, capsys):
  root = str(tmp_path / "root")
  pick = ["--models", "BiT-M-R50x1", "--datasets", "cifar10", "--seeds", "0"]
  (run,) = [r for r in paper.standard_runs(seeds=(0,))
            if r.model == "BiT-M-R50x1" and r.dataset == "cifar10"]
  _, plan = plans.hyperrule_plan(run)  # the recipe's plan: batch 512
  os.makedirs(run.workdir(root))
  with open(os.path.join(run.workdir(root), "plan.json"), "w") as f:
    json.dump({"plan": plan.to_dict()}, f)
  with open(os.path.join(run.workdir(root), "metrics.json"), "w") as f:
    json.dump({"top1": 0.9}, f)
  assert "finished, skipped" in runner_here(capsys, "standard", "--root", root, *pick)
  with pytest.raises(UserError, match="1 run.s. finished with a different plan"):
    runner_here(capsys, "standard", "--root", root, *pick, "--batch_size", "128")
  out = capsys.readouterr().out
  assert ("DIFFERENT, not run: finished with a different plan (base_lr 0.003 -> 0.00075, "
          "batch_size 512 -> 128): use another --root for the new setting") in out
  # Emitted: left out with the same reason, not queued behind `test -f metrics.json`.
  out = runner_here(capsys, "standard", "--root", root, *pick, "--batch_size", "128",
                    "--emit")
  (commands,) = [line.split("wrote ")[1] for line in out.splitlines()]
  assert open(commands).read() == (
      f"# left out {run.name}: finished with a different plan (base_lr 0.003 -> 0.00075, "
      "batch_size 512 -> 128): use another --root for the new setting\n")


def test_emission_writes_only_its_commands_and_a_dry_run_writes_nothing(tmp_path):
  root = str(tmp_path / "root")
  # Emission and dry runs (a folder's, TFDS datasets') import no TensorFlow.
  code = ("import sys\nfrom experiments import run\n"
          f"for args in (['vtab', '--root', {root!r}, '--emit', '--models', 'BiT-M-R50x1'],"
          f" ['standard', '--root', {root!r}, '--dry_run', '--datasets', 'cifar10'],"
          f" ['miniature', '--root', {str(tmp_path / 'dry')!r}, '--dry_run', '--shots', '1']):\n"
          "  run.main(args)\n"
          "print('tensorflow imported:', 'tensorflow' in sys.modules)\n")
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, env=dict(os.environ, PYTHONPATH=ROOT))
  assert result.returncode == 0, result.stderr
  assert result.stdout.splitlines()[-1] == "tensorflow imported: False"
  emitted = [os.path.relpath(os.path.join(d, f), root)
             for d, _, names in os.walk(root) for f in names]
  assert sorted(os.path.basename(f) for f in emitted) == ["commands.txt", "runs.json",
                                                          "slurm.sh"]
  fresh = str(tmp_path / "fresh")
  result = runner("miniature", "--root", fresh, "--dry_run", "--shots", "1")
  assert result.returncode == 0, result.stderr
  assert "transfer__1shot__seed0" in result.stdout and not os.path.exists(fresh)


def test_the_paper_protocol_three_seeds_bit_s_on_ilsvrc_and_one_run_for_one_draw():
  standard = paper.standard_runs()
  rows = {}
  for run in standard:
    rows.setdefault((run.model, run.dataset), []).append(run.seed)
  assert set(map(tuple, rows.values())) == {(0, 1, 2)}
  assert len(rows) == 12 * 5 and ("BiT-S-R152x4", "imagenet2012") in rows
  (ilsvrc,) = [r for r in standard if r.model == "BiT-S-R152x4" and r.seed == 0
               and r.dataset == "imagenet2012"]
  assert "extra_evals=imagenet2012_real@validation;imagenet_v2@test" in ilsvrc.config
  assert {r.seed for r in vtab.runs(models=("BiT-M-R50x1",))} == {0, 1, 2}
  fewshot = [r for r in paper.fewshot_runs() if r.model == "BiT-M-R50x1"]
  flowers10 = [r for r in fewshot if r.dataset == "oxford_flowers102" and r.shots == "10"]
  assert len(flowers10) == 1 and "every seed draws the same examples" in flowers10[0].note
  assert len([r for r in fewshot if r.dataset == "cifar10" and r.shots == "10"]) == 5


def _children(pid):
  """The pids of the processes whose parent is `pid`."""
  found = []
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      try:
        with open(f"/proc/{entry}/stat") as f:
          fields = f.read().rsplit(")", 1)[1].split()
      except OSError:
        continue
      if int(fields[1]) == pid:
        found.append(int(entry))
  return found


def _running(pid):
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


def test_sigterm_stops_the_runner_and_its_training_child_is_not_left(tiny_suite):
  """A scheduler ending the job: the runner forwards SIGTERM to the run it started,
  waits for it, and ends with 143 and one line; no process is left."""
  suite, root = tiny_suite
  long_run = _run(root, "npz")
  proc = subprocess.Popen(
      [sys.executable, "-m", "experiments.run", suite, "--root", root, "--variants", "npz"],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      start_new_session=True)
  try:
    wait_for_a_checkpoint(proc, long_run.workdir(root))
    (child,) = _children(proc.pid)
    proc.send_signal(signal.SIGTERM)  # the runner alone, as a scheduler might
    _, stderr = proc.communicate(timeout=200)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert error_lines(stderr) == [
        "error: terminated (SIGTERM): the run in progress was stopped and waited for; "
        "run the same command again to resume."]
    assert not _running(child)
    assert not os.path.exists(runs_lib.log_path(root, long_run, ".failed.json"))
  finally:
    if proc.poll() is None:
      os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_a_root_that_is_a_file_is_one_line_for_every_mode(tiny_suite, tmp_path):
  suite, _ = tiny_suite
  root = tmp_path / "afile"
  root.write_text("not a folder")
  for mode in ([], ["--dry_run"], ["--emit"]):
    with pytest.raises(UserError) as error:
      experiments_run.main([suite, "--root", str(root), *mode])
    assert str(error.value) == (f"--root {root} is a file, not a folder: choose another "
                                "--root.")


def _private_mounts_work():
  """A read-only file system for one test: a tmpfs in a private mount namespace
  (`unshare -m`, root only), seen by nothing else."""
  if os.geteuid() != 0 or not shutil.which("unshare"):
    return False
  return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs none /mnt"],
                        capture_output=True).returncode == 0


@pytest.mark.skipif(not _private_mounts_work(), reason="needs root and `unshare -m`")
def test_a_read_only_root_is_one_line(tiny_suite, tmp_path):
  suite, _ = tiny_suite
  ro = tmp_path / "ro"
  ro.mkdir()
  root = ro / "root"
  runner_command = f"{sys.executable} -m experiments.run {suite} --root {root} --emit"
  result = subprocess.run(
      ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m none {ro} && mkdir {root}"
       f" && mount -o remount,ro {ro} && {runner_command}; echo exit $?"],
      cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert "exit 2" in result.stdout, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      f"error: cannot write the root {root}: Read-only file system: make it writable or "
      "choose another path."]


def test_a_damaged_runs_json_or_metrics_json_is_one_line_and_exit_2(tiny_suite):
  suite, root = tiny_suite
  os.makedirs(root)
  with open(os.path.join(root, "runs.json"), "w") as f:
    f.write('{"suites": {"tiny": {"about": "x", "table": "variants"}}, "runs": [')
  result = runner(suite, "--root", root, "--emit")
  assert result.returncode == 2, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      f"error: cannot read the list of planned runs {root}/runs.json: it is not JSON "
      "(Expecting value: line 1 column 68 (char 67)): delete it and run the suites "
      "again (finished runs are skipped)."]
  os.remove(os.path.join(root, "runs.json"))
  metrics = os.path.join(_run(root, "npz").workdir(root), "metrics.json")
  os.makedirs(os.path.dirname(metrics))
  with open(metrics, "w") as f:
    f.write('{"top1": null}')
  with pytest.raises(UserError, match=f"cannot read the metrics file {metrics}: its "
                     "field 'top1' is null, not a number"):
    experiments_run.main([suite, "--root", root, "--variants", "npz"])


def sbatch_arguments(line):
  """The arguments sbatch reads from an #SBATCH line: its own splitting
  (_get_argument in Slurm's src/sbatch/opt.c), not the shell's: whitespace ends an
  argument outside quotes, ' or " quote, a backslash escapes the next character
  (inside quotes too), an unquoted # starts a comment."""
  found, argument, quote, escaped = [], None, None, False
  for char in line.removeprefix("#SBATCH") + " ":
    if escaped:
      escaped = False
    elif char == "\\":
      escaped = True
      continue
    elif quote:
      if char == quote:
        quote = None
        continue
    elif char in "\"'":
      quote = char
      argument = argument or ""
      continue
    elif char == "#":
      break
    elif char.isspace():
      if argument is not None:
        found.append(argument)
      argument = None
      continue
    argument = (argument or "") + char
  assert quote is None, f"unmatched {quote} in {line!r}"
  if argument is not None:
    found.append(argument)
  return found


def test_slurm_log_path_under_a_root_with_spaces_stays_one_sbatch_argument(
    tmp_path, capsys):
  """The unquoted --output= was cut at the root's first space (and at a #)."""
  root = str(tmp_path / 'my runs #2 "final" 100%')
  out = runner_here(capsys, "standard", "--root", root, "--emit", "--models",
                    "BiT-M-R50x1", "--datasets", "cifar10", "--seeds", "0",
                    "--python", "echo")
  commands, script = [line.split("wrote ", 1)[1] for line in out.splitlines()]
  lines = open(script).read().splitlines()
  (output,) = [line for line in lines if line.startswith("#SBATCH --output=")]
  folder = os.path.dirname(commands)
  assert sbatch_arguments(output) == [
      f"--output={folder.replace('%', '%%')}/slurm-%A_%a.log"]
  assert sbatch_arguments(lines[1]) == ["--job-name=bit-standard"]
  # The task still runs its line, from a folder whose name the shell must quote.
  result = subprocess.run(["bash", script], env=dict(os.environ, SLURM_ARRAY_TASK_ID="0"),
                          capture_output=True, text=True, check=True)
  workdir = os.path.join(root, "standard", "cifar10__BiT-M-R50x1__full__seed0")
  assert result.stdout.splitlines()[-1].endswith(f"--workdir {workdir}")


def test_emit_with_a_python_that_does_not_exist_is_one_line(tmp_path, capsys):
  """It wrote commands calling /nonexistent, each task failing on the cluster."""
  result = runner("standard", "--root", str(tmp_path), "--emit", "--python",
                  "/nonexistent/python")
  assert result.returncode == 2, result.stderr
  assert error_lines(result.stderr) == [
      "error: --python /nonexistent/python: no such interpreter (neither an executable "
      "file nor a command on PATH): give the Python the emitted commands should call, "
      f"e.g. --python {sys.executable}."]
  assert not os.path.exists(tmp_path / "standard")
  # Without --emit nothing would call it: one line too.
  with pytest.raises(UserError, match=r"^--python python3: give it with --emit \(runs "
                     r"here call this interpreter\)\.$"):
    runner_here(capsys, "standard", "--root", tmp_path, "--dry_run", "--python", "python3")
