"""`bit-train --dry_run` as a user runs it: the plan, and one-line errors.

The dry runs go through bit-train's own `run()` in this process (absl's app.run, its
flag parsing and one-line errors: helpers.run_here), which spares each case a
TensorFlow start-up; one case per kind of mistake also runs as a real process, for
its exit code and the absence of a traceback on a real stderr.
"""

import json
import os
import shlex

import pytest

from bit_train import train as bit_train
from bit_train.data.patterns import CLASSES, write_pattern_folder

from helpers import error_lines, run_here, run_module, write_tiny_npz

TRANSFER = "transfer"


@pytest.fixture
def dry_run(capsys):
  """dry_run(tmp_path, arg, *extra): bit-train --dry_run in this process, as a
  result with returncode, stdout and stderr."""
  def run(tmp_path, arg, *extra):
    return run_here(bit_train.run, "--config", f"{TRANSFER}:{arg}", "--workdir",
                    tmp_path / "w", "--dry_run", *extra, capsys=capsys)
  return run


def saved_plan(tmp_path):
  with open(tmp_path / "w" / "plan.json") as f:
    return json.load(f)


def test_cifar10_plan_from_the_table_of_known_sizes(tmp_path, dry_run):
  result = dry_run(tmp_path, "dataset=cifar10,model=BiT-M-R50x1",
                   f"--config.data_dir={tmp_path / 'no_data'}")
  assert result.returncode == 0, result.stderr
  assert "49,000" in result.stdout and "table of known split sizes" in result.stdout
  record = saved_plan(tmp_path)
  plan = record["plan"]
  assert plan["num_examples"] == 49_000
  assert (plan["precrop"], plan["crop"], plan["mixup_alpha"]) == (160, 128, 0.1)
  assert plan["supports"][-1] == 10_000
  assert record["dataset"]["train_split"] == "train[:98%]"
  assert os.path.exists(tmp_path / "w" / "plan.txt")


def test_imagenet2012_plan(tmp_path, dry_run):
  result = dry_run(tmp_path, "dataset=imagenet2012,batch_size=256",
                   f"--config.data_dir={tmp_path / 'no_data'}")
  assert result.returncode == 0, result.stderr
  plan = saved_plan(tmp_path)["plan"]
  assert plan["num_examples"] == 1_268_355  # train[:99%] of 1,281,167
  assert (plan["precrop"], plan["crop"]) == (512, 480)
  assert plan["supports"] == [500, 6000, 12000, 18000, 20000]
  assert plan["base_lr"] == pytest.approx(0.0015)


def test_dataset_described_only_in_the_config(tmp_path, dry_run):
  result = dry_run(tmp_path, "dataset=my_scans,num_examples=5000,image_size=300x400,"
                   "resolution_rule=paper")
  assert result.returncode == 0, result.stderr
  plan = saved_plan(tmp_path)["plan"]
  assert (plan["num_examples"], plan["image_size"]) == (5000, [300, 400])
  assert (plan["precrop"], plan["crop"], plan["mixup_alpha"]) == (448, 384, 0.0)
  assert plan["supports"] == [100, 200, 300, 400, 500]


def test_command_line_overrides_reach_the_plan(tmp_path, dry_run):
  result = dry_run(tmp_path, "dataset=my,num_examples=100,image_size=32x32",
                   "--config.supports=(10,20,30)", "--config.mixup_alpha=0.3",
                   "--config.examples_per_class=5", "--config.num_classes=4")
  assert result.returncode == 0, result.stderr
  plan = saved_plan(tmp_path)["plan"]
  assert plan["supports"] == [10, 20, 30] and plan["mixup_alpha"] == 0.3
  assert plan["num_examples"] == 20  # few-shot: 5 per class x 4 classes
  assert sorted(plan["overridden"]) == ["mixup_alpha", "supports"]


@pytest.mark.parametrize("arg, extra, names", [
    ("batchsize=64", [], "batchsize"),
    ("dataset=cifar10", ["--config.batchsize=64"], "batchsize"),
    ("batch_size=many", [], "batch_size"),
    ("dataset=cifar10", ["--config.batch_size=many"], "batch_size"),
    ("dataset=cifar11", [], "cifar11"),
    ("model=BiT-X-R50x1", [], "BiT-X-R50x1"),
    ("batch_size=0", [], "batch_size"),
    ("supports=100/50", [], "supports"),
    ("supports=0/-10", [], "supports"),
    ("batch_size=100,batch_split=3", [], "batch_split"),
    ("strategy=gpu", [], "strategy"),
    ("dataset=cifar10", ["--config.image_size=3y4"], "image_size"),
    ("dataset=cifar10", ["stray_argument"], "stray_argument"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, dry_run, arg, extra, names):
  assert_one_line_exit_2_and_no_plan(dry_run(tmp_path, arg, *extra), tmp_path, names)


def assert_one_line_exit_2_and_no_plan(result, tmp_path, names):
  assert result.returncode == 2, result.stderr
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and names in lines[0], result.stderr
  assert "Traceback" not in result.stderr
  assert not os.path.exists(tmp_path / "w" / "plan.json")


@pytest.mark.parametrize("arg, extra, names", [
    ("batchsize=64", [], "batchsize"),  # in the config file's argument
    ("dataset=cifar10", ["--config.batch_size=many"], "batch_size"),  # a flag
    ("supports=100/50", [], "supports"),  # found by validation after the parse
])
def test_bad_input_in_a_real_process_is_one_line_exit_2_and_no_traceback(
    tmp_path, arg, extra, names):
  result = run_module("bit_train.train", "--config", f"{TRANSFER}:{arg}",
                      "--workdir", tmp_path / "w", "--dry_run", *extra)
  assert_one_line_exit_2_and_no_plan(result, tmp_path, names)


def test_missing_config_file_is_one_line(tmp_path):
  result = run_module("bit_train.train", "--config", "configs/nope.py",
                      "--workdir", tmp_path, "--dry_run")
  assert result.returncode == 2
  assert "configs/nope.py" in error_lines(result.stderr)[0]
  assert "Traceback" not in result.stderr


def test_dry_run_names_the_classifier_for_head_keep(tmp_path, dry_run):
  result = dry_run(tmp_path, "dataset=imagenet2012,head=keep,model=BiT-S-R101x3",
                   f"--config.data_dir={tmp_path / 'no_data'}")
  assert result.returncode == 0, result.stderr
  model = saved_plan(tmp_path)["model"]
  assert model["location"].endswith("s-r101x3/ilsvrc2012_classification/1")


@pytest.mark.parametrize("source, make, names", [
    ("npz", None, "does not exist"),
    ("npz", lambda p: p.write_bytes(b"not a zip archive"), "not a valid .npz"),
    ("hub", None, "is not a folder"),
    ("hub", lambda p: p.mkdir(), "has no saved_model.pb"),
    ("hub", lambda p: (p.mkdir(), (p / "saved_model.pb").write_bytes(b"")),
     "holds no MetaGraph"),
])
def test_dry_run_checks_a_local_model_path(tmp_path, dry_run, source, make, names):
  path = tmp_path / ("weights.npz" if source == "npz" else "module")
  if make:
    make(path)
  result = dry_run(tmp_path, f"dataset=cifar10,model_source={source}",
                   f"--config.model_path={path}")
  assert_one_line_exit_2_and_no_plan(result, tmp_path, names)
  assert str(path) in error_lines(result.stderr)[0]


@pytest.mark.parametrize("entry", ["cifar11", "{tmp}/missing_folder"])
def test_dry_run_checks_extra_evals_as_a_run_does(tmp_path, dry_run, entry):
  """The dry run planned and exited 0; the run itself then stopped on the entry."""
  entry = entry.format(tmp=tmp_path)
  result = dry_run(tmp_path, "dataset=cifar10", f"--config.data_dir={tmp_path / 'no'}",
                   f"--config.extra_evals=cifar10@test;{entry}")
  assert_one_line_exit_2_and_no_plan(
      result, tmp_path, f"extra_evals entry {entry!r} is neither an existing folder "
      "nor a TFDS name")
  result = dry_run(tmp_path, "dataset=cifar10", f"--config.data_dir={tmp_path / 'no'}",
                   f"--config.extra_evals=cifar10@test;{tmp_path}")
  assert result.returncode == 0, result.stderr


def test_class_map_is_refused_by_bit_train_in_one_line(tmp_path, dry_run, capsys):
  """bit-train trained and exported the dataset's class names as the outputs' without
  a word about the label file it was given (only bit-eval reads class_map)."""
  labels = tmp_path / "labels.txt"
  labels.write_text("cat\ndog\n")
  expected = (f"class_map={labels}: bit-train names its model's outputs after the "
              "dataset's classes (the export's class_names.txt), so it reads no label "
              "file of outputs: remove class_map (bit-eval reads it, for a model whose "
              "outputs are in another order).")
  result = dry_run(tmp_path, f"dataset=cifar10,class_map={labels}",
                   f"--config.data_dir={tmp_path / 'no'}")
  assert_one_line_exit_2_and_no_plan(result, tmp_path, expected)
  result = run_here(bit_train.run, "--config", f"{TRANSFER}:class_map={labels}",
                    "--workdir", tmp_path / "w", capsys=capsys)
  assert result.returncode == 2 and error_lines(result.stderr) == [f"error: {expected}"]
  assert not os.path.exists(tmp_path / "w")


def test_dry_run_accepts_a_whole_local_npz_without_reading_its_weights(tmp_path, dry_run):
  write_tiny_npz(str(tmp_path / "w.npz"), 5)
  result = dry_run(tmp_path, "dataset=cifar10,model_source=npz",
                   f"--config.model_path={tmp_path / 'w.npz'}")
  assert result.returncode == 0, result.stderr
  assert saved_plan(tmp_path)["model"]["location"] == str(tmp_path / "w.npz")


def test_dry_run_on_a_folder_draws_the_few_shot_subset_a_run_would(tmp_path, dry_run):
  """examples_per_class above a class's size planned n = k x classes and wrote
  plan.json; the run then stopped on it. An image folder's labels are known
  without reading an image, so the dry run draws the subset too."""
  folder = write_pattern_folder(tmp_path / "data", per_class=4)
  arg = f"dataset=image_folder,data_dir={folder},examples_per_class=5"
  result = dry_run(tmp_path, arg)
  assert_one_line_exit_2_and_no_plan(result, tmp_path, "examples_per_class=5")
  result = dry_run(tmp_path, arg.replace("=5", "=3"))
  assert result.returncode == 0, result.stderr
  assert saved_plan(tmp_path)["plan"]["num_examples"] == 3 * len(CLASSES)


def _csv_dir(root, train_rows, test_rows):
  os.makedirs(root)
  for name, rows in (("train", train_rows), ("test", test_rows)):
    with open(os.path.join(root, f"{name}.csv"), "w") as f:
      f.write("".join(f"{path},{label}\n" for path, label in rows))
  return str(root)


def _pattern_rows(folder):
  return [(os.path.join(folder, kind, name), kind) for kind in CLASSES
          for name in sorted(os.listdir(os.path.join(folder, kind)))]


def _eval_layouts(tmp_path, layout):
  """(config argument, the number of shared images expected in the warning or None)."""
  if layout.startswith("cifar10"):
    eval_split = ",eval_split=train[90%:]" if layout == "cifar10_overlap" else ""
    # train[:98%] of 50,000 and train[90%:] share train[90%:98%]: 4,000 of 5,000.
    return (f"dataset=cifar10{eval_split},data_dir={tmp_path / 'no_data'}",
            "4,000 of the 5,000" if eval_split else None)
  folder = write_pattern_folder(tmp_path / "images", per_class=4)
  rows = _pattern_rows(folder)
  if layout == "holdout":
    return f"dataset=image_folder,data_dir={folder}", None
  if layout == "linked_test_folder":
    os.makedirs(tmp_path / "split")
    os.symlink(folder, tmp_path / "split" / "train")
    os.symlink(folder, tmp_path / "split" / "test")
    return f"dataset=image_folder,data_dir={tmp_path / 'split'}", f"{len(rows)} of the {len(rows)}"
  train_rows = rows[::2] if layout == "csv_disjoint" else rows
  test = rows[1::2] if layout == "csv_disjoint" else rows[:5]
  root = _csv_dir(tmp_path / "csv", train_rows, test)
  return f"dataset=csv,data_dir={root}", (None if layout == "csv_disjoint" else "5 of the 5")


@pytest.mark.parametrize("layout", ["cifar10", "cifar10_overlap", "holdout",
                                    "linked_test_folder", "csv_same_rows", "csv_disjoint"])
def test_dry_run_warns_when_evaluation_images_are_training_images(tmp_path, dry_run,
                                                                   layout):
  """A split that repeats training images scored memory as accuracy without a word:
  TFDS split strings that overlap, a test folder linked to the train folder, a
  test.csv listing train.csv's images. The plan now says how many are shared."""
  arg, shared = _eval_layouts(tmp_path, layout)
  result = dry_run(tmp_path, arg)
  assert result.returncode == 0, result.stderr
  warnings = [line for line in result.stdout.splitlines() if "are training images" in line]
  if shared is None:
    assert not warnings, warnings
  else:
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: {shared} images"), (
        result.stdout)


@pytest.mark.parametrize("test_rows", ["missing", "unknown_label"])
def test_a_dry_run_whose_eval_split_fails_writes_no_plan(tmp_path, dry_run, test_rows):
  """A CSV without test.csv, or one naming a label train.csv lacks: the dry run
  printed and wrote its whole plan, then stopped on the eval split (exit 2)."""
  rows = _pattern_rows(write_pattern_folder(tmp_path / "images", per_class=2))
  root = _csv_dir(tmp_path / "csv", rows, rows[:1])
  if test_rows == "missing":
    os.remove(os.path.join(root, "test.csv"))
  else:
    with open(os.path.join(root, "test.csv"), "w") as f:
      f.write(f"{rows[0][0]},dog\n")
  result = dry_run(tmp_path, f"dataset=csv,data_dir={root}")
  assert result.returncode == 2
  assert len(error_lines(result.stderr)) == 1, result.stderr
  assert "test" in error_lines(result.stderr)[0]
  assert "BiT-HyperRule plan" not in result.stdout
  assert not (tmp_path / "w").exists()


def test_the_commands_a_run_ends_with_keep_a_path_with_spaces_one_argument():
  """A workdir or data folder with a space printed `bit-predict --model /w space/export`,
  which a shell splits into two arguments."""
  record = {"top1": 0.98, "count": 60, "dataset": "image_folder", "eval_split": "holdout",
            "step": 10}
  text = bit_train.finished_text("/r/w space", record, {"dataset": "image_folder",
                                                        "data_dir": "/r/my photos é"})
  commands = text.split("Next:\n")[1].splitlines()
  assert shlex.split(commands[0]) == ["bit-predict", "--model", "/r/w space/export", "--top",
                                      "3", "/r/my photos é"]
  assert shlex.split(commands[1]) == [
      "bit-eval", "--config", "imagenet_eval:dataset=image_folder,data_dir=/r/my photos é,"
      "model_path=/r/w space/export", "--workdir", "/r/w space_eval"]
  assert "(tensorboard --logdir '/r/w space/tensorboard')" in text
  plain = bit_train.finished_text("W", record, {"dataset": "image_folder", "data_dir": "D"})
  assert "bit-predict --model W/export --top 3 D" in plain


def test_the_end_of_a_run_repeats_the_warning_and_names_the_data_folder_to_evaluate():
  record = {"top1": 0.98, "count": 60, "dataset": "csv", "eval_split": "test", "step": 10}
  text = bit_train.finished_text("W", record, {"dataset": "csv", "data_dir": "D"},
                                 "60 of the 60 images are training images")
  lines = text.splitlines()
  assert lines[0].startswith("Done: top-1 0.9800 on 60 images")
  assert lines[1] == "  warning: 60 of the 60 images are training images"
  assert "imagenet_eval:dataset=csv,data_dir=D,model_path=" in text
  assert "warning" not in bit_train.finished_text("W", record, {"dataset": "csv"})
