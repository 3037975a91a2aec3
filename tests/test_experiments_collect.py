"""experiments.collect and experiments.figures on fabricated results trees: every
expected number below is computed by hand from the values written."""

import csv
import json
import os
import shutil

import pytest

from bit_train import specs
from bit_train.errors import UserError
from experiments import collect
from experiments import figures
from experiments import plans
from experiments import runs as runs_lib
from experiments.suites import paper
from experiments.suites import vtab

from helpers import error_lines
from helpers import run_module


def _suite(name):
  return type("S", (), {"name": name, "about": name, "table": "references"})


def _finish(root, run, top1, plan=None, **metrics):
  """The metrics.json and plan.json a finished run leaves."""
  os.makedirs(run.workdir(root), exist_ok=True)
  with open(os.path.join(run.workdir(root), "metrics.json"), "w") as f:
    json.dump(dict(top1=top1, **metrics), f)
  if plan is not None:
    with open(os.path.join(run.workdir(root), "plan.json"), "w") as f:
      json.dump({"plan": plan}, f)


def _plan(batch=512, lr=0.003, res=(160, 128), image_size=(32, 32)):
  return {"batch_size": batch, "base_lr": lr, "precrop": res[0], "crop": res[1],
          "resolution_rule": "code", "image_size": list(image_size), "batch_split": 1}


def _rows(root):
  with open(os.path.join(root, "results.csv")) as f:
    return list(csv.DictReader(f))


def _line(text, start):
  (line,) = [line for line in text.splitlines() if line.startswith(start)]
  return line.split(" | ")


def test_fewshot_row_median_range_mean_std_references_and_figure(tmp_path):
  root = str(tmp_path)
  runs = [r for r in paper.fewshot_runs()
          if r.model == "BiT-M-R50x1" and r.dataset == "cifar10" and r.shots in ("1", "5")]
  runs_lib.record_planned(root, _suite("fewshot"), runs)
  five = [r for r in runs if r.shots == "5"]
  for run, value in zip(five, [0.81, 0.84, 0.83]):  # seeds 0-2; 3 failed, 4 not run
    _finish(root, run, value, _plan())
  one = [r for r in runs if r.shots == "1"]
  _finish(root, one[0], 0.50, _plan())
  os.makedirs(os.path.join(root, "logs", "fewshot"))
  with open(runs_lib.log_path(root, five[3], ".failed.json"), "w") as f:
    json.dump({"why": "error: out of memory"}, f)
  text = collect.collect(root)
  cells = _line(text, "| BiT-M-R50x1 | cifar10 | 5/class")
  # 81, 84, 83: median 83, mean 82.67, sample std sqrt(7/3) = 1.53.
  assert cells[3:6] == ["81.0 ← **83.0** → 84.0", "82.7 ± 1.5", "3/5"]
  assert cells[6:9] == ["80.8 ← **83.3** → 85.5", "76.7 ← **82.4** → 85.4",
                        "80.3 ← **82.3** → 84.9"]
  # 160/128 is the code rule's resolution for 32x32: only batch and lr differ.
  assert cells[9] == ("1 not run; 1 failed: error: out of memory; batch 512 vs 128, lr "
                      "0.003 vs 0.001 (readme_tf2, readme_jax, readme_pytorch) |")
  row = [r for r in _rows(root) if r["shots"] == "5"][0]
  assert (row["top1_min"], row["top1_median"], row["top1_max"]) == ("81.0", "83.0", "84.0")
  assert (row["top1_mean"], row["top1_std"]) == ("82.67", "1.53")
  assert row["top1_by_seed"] == "0:81.00;1:84.00;2:83.00"
  assert row["references"] == "readme_tf2:83.3;readme_jax:82.4;readme_pytorch:82.3"
  assert (row["batch_size"], row["base_lr"], row["resolution"]) == ("512", "0.003", "160/128")
  assert ("Settings from the runs' plan.json: batch 512 in 1 micro-batch(es), lr 0.003 "
          "(4 runs).") in text
  # The figure plots the medians with their range, by examples per class.
  series = figures.fewshot_series(_rows(root))
  assert series == {"cifar10": {"BiT-M-R50x1": [(1, 50.0, 50.0, 50.0),
                                                (5, 83.0, 81.0, 84.0)]}}
  with open(tmp_path / "fewshot.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert "![fewshot](fewshot.png)" in text


def test_standard_rows_cite_table_2_flag_real_differences_and_keep_provenance(tmp_path):
  root = str(tmp_path)
  runs = [r for r in paper.standard_runs() if r.model in ("BiT-M-R152x4", "BiT-S-R152x4")
          and r.dataset in ("oxford_iiit_pet", "imagenet2012")]
  runs_lib.record_planned(root, _suite("standard"), runs)
  pets = [r for r in runs if r.dataset == "oxford_iiit_pet" and r.model == "BiT-M-R152x4"]
  provenance = {"commit": "abc123", "packages": {"tensorflow": "2.21.0"},
                "dataset_version": "oxford_iiit_pet/4.0.0", "devices": "8 x GPU",
                "seconds": 100.0}
  for run, value in zip(pets, [0.95, 0.94, 0.93]):
    _finish(root, run, value, _plan(res=(512, 480), image_size=(224, 224)),
            provenance=provenance)
  # The runner's times of two attempts of the first run (killed once, then finished).
  os.makedirs(os.path.join(root, "logs", "standard"))
  runs_lib.add_seconds(root, pets[0], 30.5)
  runs_lib.add_seconds(root, pets[0], 20.0)
  ilsvrc = [r for r in runs if r.dataset == "imagenet2012" and r.model == "BiT-S-R152x4"]
  for run, (top1, top5, real, v2) in zip(ilsvrc, [(0.80, 0.95, 0.86, 0.70),
                                                  (0.82, 0.96, 0.88, 0.72)]):
    # 448/384: the paper rule's resolution, not the 512/480 of the paper's R152x4.
    _finish(root, run, top1, _plan(res=(448, 384), image_size=(224, 224)), top5=top5,
            evals={"imagenet2012_real@validation": {"top1": real},
                   "imagenet_v2@test": {"top1": v2}})
  text = collect.collect(root)
  header = _line(text, "| model | dataset")
  assert header[6:] == ["paper", "top-5 % (ours / reference)", "ReaL top-1 %",
                        "ImageNet-V2 top-1 %", "notes |"]
  pets_cells = _line(text, "| BiT-M-R152x4 | oxford_iiit_pet")
  assert pets_cells[3:7] == ["93.0 ← **94.0** → 95.0", "94.0 ± 1.0", "3/3", "94.46"]
  assert pets_cells[-1] == " |"  # 512/480, batch 512, lr 0.003: no difference to flag
  s_cells = _line(text, "| BiT-S-R152x4 | imagenet2012")
  assert s_cells[3:11] == ["80.0 ← **81.0** → 82.0", "81.0 ± 1.4", "2/3", "81.3",
                           "95.0 ← **95.5** → 96.0 / 95.65 (paper)",
                           "86.0 ← **87.0** → 88.0", "70.0 ← **71.0** → 72.0",
                           "1 not run; resolution 448/384 vs 512/480 (paper) |"]
  rows = {(r["model"], r["dataset"]): r for r in _rows(root)}
  s_row = rows[("BiT-S-R152x4", "imagenet2012")]
  assert s_row["references"] == "paper:81.3;paper_top5:95.65"
  assert (s_row["top5_median"], s_row["real_top1_median"],
          s_row["imagenet_v2_top1_median"]) == ("95.5", "87.0", "71.0")
  pets_row = rows[("BiT-M-R152x4", "oxford_iiit_pet")]
  assert (pets_row["commit"], pets_row["dataset_version"], pets_row["devices"]) == (
      "abc123", "oxford_iiit_pet/4.0.0", "8 x GPU")
  assert pets_row["packages"] == "tensorflow=2.21.0"
  # The runner's 30.5 + 20 s over both attempts, else the trainer's own 100 s.
  assert pets_row["wall_seconds"] == "250.5"
  assert "Kolesnikov et al." in text and "Table 2" in text


def test_vtab_table_keys_apart_from_full_data_and_means_over_tasks_with_results(tmp_path):
  root = str(tmp_path)
  runs = vtab.runs(models=("BiT-M-R152x4",))
  # A result counts whatever the suite says of the run: one marked blocked finished.
  runs = [r if r.dataset != "dmlab" else runs_lib.Run(**dict(
      r.settings(), blocked="said to be blocked")) for r in runs]
  runs_lib.record_planned(root, _suite("vtab"), runs)
  by_task = {}
  for run in runs:
    by_task.setdefault(run.dataset, []).append(run)
  natural = [t.name for t in vtab.TASKS if t.group == "natural"]
  for i, task in enumerate(natural):  # seeds: 60+i, 70+i, 80+i -> median 70+i
    for run, base in zip(by_task[task], (0.60, 0.70, 0.80)):
      _finish(root, run, base + i / 100)
  _finish(root, by_task["dmlab"][0], 0.40)
  _finish(root, by_task["clevr_count"][0], 0.50)
  text = collect.collect(root)
  cifar = _line(text, "| BiT-M-R152x4 | cifar100")
  assert cifar[2:4] == ["1,000 (VTAB-1k)", "61.0 ← **71.0** → 81.0"]
  # Not the full-data 92.17: VTAB rows have their own references (none per task).
  assert "92.17" not in text
  assert "finished although the suite marks it blocked (said to be blocked)" in text
  means = {cells[1]: cells for cells in (
      line.split(" | ") for line in text.splitlines() if "(mean)" in line)}
  # natural: medians 70..76, mean 73.0; structured: 40 and 50, mean 45.0; all nine:
  # (7 * 73 + 40 + 50) / 9 = 66.78.
  assert means["vtab (mean)"][3] == "66.8 (9/19 tasks)"
  assert means["vtab_natural (mean)"][3] == "73.0 (7/7 tasks)"
  assert means["vtab_structured (mean)"][3] == "45.0 (2/8 tasks)"
  assert means["vtab_specialized (mean)"][3] == "— (0/4 tasks)"
  # References: the paper's BiT-M mean (Table 2) and the README's re-run and groups.
  assert means["vtab (mean)"][6:8] == ["70.64", "73.51"]
  assert means["vtab_natural (mean)"][6:8] == ["", "80.77"]
  rows = {r["dataset"]: r for r in _rows(root) if r["variant"] == "mean"}
  assert rows["vtab"]["top1_median"] == "66.78" and rows["vtab"]["finished"] == "9"
  assert rows["vtab_specialized"]["top1_median"] == "" and rows["vtab"]["runs"] == "19"
  assert rows["vtab"]["references"] == "paper:70.64;readme_vtab:73.51"
  series = figures.vtab_series(_rows(root))
  assert series == {"BiT-M-R152x4": dict(
      {task: 70.0 + i for i, task in enumerate(natural)}, dmlab=40.0, clevr_count=50.0)}
  assert os.path.exists(tmp_path / "vtab.png")


def test_references_say_where_they_come_from_and_keep_vtab_apart():
  sources, by_row = collect.load_references()
  for refs in by_row.values():
    for name, number in refs.items():
      assert name in sources and number["where"]
  paper_rows = {(m, d): n["paper"] for (m, d, s), n in by_row.items() if "paper" in n}
  assert paper_rows[("BiT-M-R152x4", "oxford_iiit_pet")]["median"] == 94.46
  assert paper_rows[("BiT-M-R152x4", "oxford_iiit_pet")]["where"] == "Table 2"
  assert paper_rows[("BiT-S-R152x4", "vtab")]["median"] == 66.87
  assert by_row[("BiT-M-R152x4", "vtab", "vtab1k")]["paper"]["median"] == 70.64
  assert by_row[("BiT-M-R152x4", "imagenet2012", "full")]["paper"]["top5"] == 97.69
  assert not any(d.startswith("vtab") and s != "vtab1k" for _, d, s in by_row)
  r152x2 = by_row[("BiT-M-R152x2", "cifar10", "1")]
  assert [(r152x2[n]["min"], r152x2[n]["max"]) for n in ("readme_jax", "readme_pytorch")] == [
      (44.0, 65.0), (50.9, 59.5)]


# A user's or the disk's mistakes under R: each one line naming the file, exit 2.
def _one_done_run(root):
  runs = [r for r in paper.fewshot_runs()
          if r.model == "BiT-M-R50x1" and r.dataset == "cifar10" and r.shots == "5"][:2]
  runs_lib.record_planned(root, _suite("fewshot"), runs)
  _finish(root, runs[0], 0.81, _plan())
  return runs


def _write(path, text):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(text)


def _metrics(root, runs):
  return os.path.join(runs[0].workdir(root), "metrics.json")


MISTAKES = {
    "a root that is a file": (
        lambda root, runs: (shutil.rmtree(root), _write(root, "x")), [],
        lambda root: f"the root {root} is not a folder"),
    "a truncated metrics.json": (
        lambda root, runs: _write(_metrics(root, runs), '{"top1": 0.8'), [],
        lambda root: f"cannot read the metrics file {root}/fewshot/"),
    "a metrics.json with a top1 that is text": (
        lambda root, runs: _write(_metrics(root, runs), '{"top1": "81%"}'), [],
        lambda root: f"cannot read the metrics file {root}/fewshot/"),
    "a metrics.json with a top1 of 1.7 (it was collected as 170 %)": (
        lambda root, runs: _write(_metrics(root, runs), '{"top1": 1.7}'), [],
        lambda root: "its field 'top1' is 1.7, not a share between 0 and 1"),
    "a metrics.json with a NaN top5": (
        lambda root, runs: _write(_metrics(root, runs), '{"top1": 0.8, "top5": NaN}'),
        [], lambda root: "its field 'top5' is nan, not a share between 0 and 1"),
    "a metrics.json whose evals hold a negative top1": (
        lambda root, runs: _write(_metrics(root, runs),
                                  '{"top1": 0.8, "evals": {"real": {"top1": -0.1}}}'),
        [], lambda root: "its field 'evals.real.top1' is -0.1, not a share between 0 and 1"),
    "a metrics.json whose evals are a list": (
        lambda root, runs: _write(_metrics(root, runs), '{"top1": 0.8, "evals": [1]}'),
        [], lambda root: "its field 'evals' is a list, not an object whose values are each an object"),
    "a garbage failed.json": (
        lambda root, runs: _write(runs_lib.log_path(root, runs[1], ".failed.json"),
                                  "\x00\x01garbage"), [],
        lambda root: f"cannot read the failure record {root}/logs/fewshot/"),
    "a failed.json without why": (
        lambda root, runs: _write(runs_lib.log_path(root, runs[1], ".failed.json"),
                                  '{"returncode": 2}'), [],
        lambda root: "lacks the field 'why'"),
    "a .time log with negative seconds (it summed to a shorter wall time)": (
        lambda root, runs: _write(runs_lib.log_path(root, runs[0], ".time"),
                                  "12.5\n-5\n"), [],
        lambda root: f"cannot read the run time log {root}/logs/fewshot/"),
    "a .time log with NaN seconds": (
        lambda root, runs: _write(runs_lib.log_path(root, runs[0], ".time"), "nan\n"),
        [], lambda root: "a line is not seconds"),
    "a truncated runs.json": (
        lambda root, runs: _write(os.path.join(root, "runs.json"), '{"suites": {'), [],
        lambda root: f"cannot read the list of planned runs {root}/runs.json: it is not "
        "JSON"),
    "a runs.json whose runs lack fields": (
        lambda root, runs: _write(os.path.join(root, "runs.json"),
                                  '{"suites": {}, "runs": [{"suite": "x"}]}'), [],
        lambda root: "lacks the field"),
    "a runs.json naming no suite of its runs": (
        lambda root, runs: _rewrite_json(os.path.join(root, "runs.json"),
                                         lambda r: r.update(suites={})), [],
        lambda root: "runs of suite 'fewshot' but no such suite"),
    "an --out under a file": (
        lambda root, runs: _write(os.path.join(root, "afile"), "x"),
        ["--out", "{root}/afile/results"],
        lambda root: f"cannot write the output folder {root}/afile/results"),
    "a missing --readme": (
        lambda root, runs: None, ["--readme", "{root}/nothere.md"],
        lambda root: f"cannot read the Markdown file {root}/nothere.md: No such file"),
}


def _rewrite_json(path, change):
  with open(path) as f:
    record = json.load(f)
  change(record)
  _write(path, json.dumps(record))


@pytest.mark.parametrize("mistake", MISTAKES)
def test_a_mistake_under_the_root_is_one_line_naming_the_file(tmp_path, mistake):
  root = str(tmp_path / "root")
  runs = _one_done_run(root)
  make, args, says = MISTAKES[mistake]
  make(root, runs)
  with pytest.raises(UserError) as error:
    collect.main([root, *(a.format(root=root) for a in args)])
  message = str(error.value)
  assert "\n" not in message and says(root) in message, message


def test_collect_turns_a_mistake_into_one_line_and_exit_2(tmp_path):
  root = str(tmp_path / "root")
  runs = _one_done_run(root)
  _write(_metrics(root, runs), "[]")
  result = run_module("experiments.collect", root)
  assert result.returncode == 2, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      f"error: cannot read the metrics file {_metrics(root, runs)}: it is a list, not an "
      "object: delete it and run the suite again to redo the run."]


def _finish_as_the_trainer(root, run, top1):
  """metrics.json and the plan.json the trainer writes: the run's config with it."""
  _finish(root, run, top1, _plan())
  config = specs.config_record(plans.load_config(run.config))
  _rewrite_json(os.path.join(run.workdir(root), "plan.json"),
                lambda r: r.update(config=config))


def test_a_run_folder_holding_another_run_is_one_line_not_a_wrong_row(tmp_path):
  root = str(tmp_path / "root")
  runs = [r for r in paper.fewshot_runs() + paper.standard_runs()
          if r.model == "BiT-M-R50x1" and r.dataset == "cifar10"]
  five = [r for r in runs if r.suite == "fewshot" and r.shots == "5"]
  full = [r for r in runs if r.suite == "standard"]
  runs_lib.record_planned(root, _suite("fewshot"), five)
  runs_lib.record_planned(root, _suite("standard"), full)
  _finish_as_the_trainer(root, five[0], 0.81)  # seed 0
  _finish_as_the_trainer(root, full[0], 0.97)
  assert "| BiT-M-R50x1 | cifar10 | 5/class | 81.0 |" in collect.collect(root)
  # Seed 0's folder copied as seed 1's: its 81 % would be tabled as a second seed.
  shutil.copytree(five[0].workdir(root), five[1].workdir(root))
  with pytest.raises(UserError) as error:
    collect.collect(root)
  assert str(error.value) == (
      f"the run folder {five[1].workdir(root)} holds another run than fewshot/"
      f"{five[1].name}: its plan.json has seed=0 (this run: 1), few_shot_seed=0 (this "
      "run: 1): it was copied or linked from another run's folder; delete it (or put "
      "that run where its name says) and run the suite again.")
  shutil.rmtree(five[1].workdir(root))
  # A full-data run's folder linked as a 5-shot one (its argument names no shots).
  shutil.rmtree(five[0].workdir(root))
  os.symlink(full[0].workdir(root), five[0].workdir(root))
  with pytest.raises(UserError, match=r"its plan\.json has examples_per_class=None "
                     r"\(this run: 5\)"):
    collect.collect(root)
