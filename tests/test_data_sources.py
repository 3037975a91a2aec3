"""Data sources: a new kind of source is a module and a line in the lookup (a CSV of
paths and labels, trained and evaluated here)."""

import json
import os

import numpy as np
import pytest

from bit_train import config as bit_config
from bit_train import specs
from bit_train.data import sources
from bit_train.data.patterns import CLASSES, write_pattern_folder
from bit_train.data.sources import csv_files
from bit_train.errors import UserError
import bit_train.train  # bit-train's entry point, run in this process

from helpers import run_here, run_module


def write_csv_dataset(root, per_class=8):
  """root/images/<class>_<i>.png and train.csv / test.csv: every 4th image to test."""
  folder = write_pattern_folder(os.path.join(root, "images"), per_class=per_class)
  rows = {"train": ["path,label"], "test": ["path,label"]}
  for name in CLASSES:
    for i, file_name in enumerate(sorted(os.listdir(os.path.join(folder, name)))):
      rows["test" if i % 4 == 0 else "train"].append(f"images/{name}/{file_name},{name}")
  for split, lines in rows.items():
    with open(os.path.join(root, f"{split}.csv"), "w") as f:
      f.write("\n".join(lines) + "\n")
  return str(root), len(rows["train"]) - 1, len(rows["test"]) - 1


def test_a_csv_source_is_one_module_and_a_line_in_the_lookup(tmp_path):
  assert sources.kind("csv") is csv_files.CsvSource
  assert sources.kind("cifar10") is sources.tfds.TfdsSource
  root, num_train, num_test = write_csv_dataset(tmp_path)
  config = bit_config.base_config()
  config.update(dataset="csv", data_dir=root, examples_per_class=2)
  source = sources.for_training(specs.data_spec(config))
  assert source.class_names == tuple(sorted(CLASSES))
  assert source.facts.num_examples == 2 * len(CLASSES)
  labels = [int(l) for _, l in source.train_examples().read().as_numpy_iterator()]
  assert np.bincount(labels).tolist() == [2] * len(CLASSES)
  assert source.eval_examples().num_examples == num_test
  config.examples_per_class = None
  assert sources.for_training(specs.data_spec(config)).facts.num_examples == num_train
  (tmp_path / "test.csv").write_text("images/missing.png,checker\n")
  with pytest.raises(UserError, match="missing.png"):
    sources.for_training(specs.data_spec(config))


def test_training_and_bit_eval_read_a_csv_source(tmp_path, capsys):
  root, _, num_test = write_csv_dataset(tmp_path / "data")
  workdir = tmp_path / "w"
  # bit-train in this process (helpers.run_here); bit-eval as a real process (its
  # flags clash with bit-train's in one process).
  result = run_here(bit_train.train.run, "--config", "transfer:dataset=csv,"
                    f"data_dir={root},model_source=native,num_units=1/1/1/1,width=0.5,"
                    "precrop=36,crop=32,batch_size=8,supports=1/2/3,lr_scaling=none,"
                    "strategy=cpu", "--workdir", workdir, capsys=capsys)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.load(open(workdir / "metrics.json"))
  assert metrics["count"] == num_test and metrics["eval_split"] == "test"
  result = run_module("bit_train.eval", "--config", "imagenet_eval:"
                      f"dataset=csv,data_dir={root},model_path={workdir / 'export'},"
                      "eval_batch_size=4,strategy=cpu", "--workdir", tmp_path / "e")
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.load(open(tmp_path / "e" / "eval" / "metrics.json"))
  assert record["results"][f"{root}@test"]["top1"] == pytest.approx(metrics["top1"])


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_a_csv_with_a_bom_quoted_fields_and_any_line_ends_reads_the_same(tmp_path,
                                                                          encoding):
  """Spreadsheet programs write a byte order mark, quote fields and end lines in
  CRLF: the header is still the header and a quoted comma stays in its path."""
  root, num_train, _ = write_csv_dataset(tmp_path)
  for split in ("train", "test"):
    path = os.path.join(root, f"{split}.csv")
    with open(path) as f:
      lines = f.read().splitlines()
    quoted = [lines[0]] + [f'"{p}","{label}"' for p, label in
                           (line.split(",") for line in lines[1:])]
    with open(path, "wb") as f:
      f.write("\r\n".join(quoted).encode(encoding))
  os.rename(os.path.join(root, "images", CLASSES[0]),
            os.path.join(root, "images", "a, b"))
  for split in ("train", "test"):
    path = os.path.join(root, f"{split}.csv")
    with open(path, "rb") as f:
      text = f.read().decode(encoding)
    with open(path, "wb") as f:
      f.write(text.replace(f"images/{CLASSES[0]}/", "images/a, b/").encode(encoding))
  config = bit_config.base_config()
  config.update(dataset="csv", data_dir=root)
  source = sources.for_training(specs.data_spec(config))
  assert source.class_names == tuple(sorted(CLASSES))
  assert source.facts.num_examples == num_train


def test_a_csv_in_latin_1_is_one_line_naming_it(tmp_path):
  root, _, _ = write_csv_dataset(tmp_path)
  with open(os.path.join(root, "train.csv"), "ab") as f:
    f.write("images/caf\u00e9.png,checker\n".encode("latin-1"))
  config = bit_config.base_config()
  config.update(dataset="csv", data_dir=root)
  with pytest.raises(UserError) as error:
    sources.for_training(specs.data_spec(config))
  assert str(error.value).startswith(
      f"cannot read the train split's CSV file {root}/train.csv: it is not UTF-8 text")
  assert "\n" not in str(error.value)


def test_an_image_listed_under_two_labels_is_one_line_naming_it(tmp_path):
  """It trained on both labels of the same image without a word (listed twice
  under one label, it is merely seen twice)."""
  root, _, _ = write_csv_dataset(tmp_path)
  first = open(os.path.join(root, "train.csv")).read().splitlines()[1]
  path, label = first.split(",")
  other = next(name for name in CLASSES if name != label)
  config = bit_config.base_config()
  config.update(dataset="csv", data_dir=root)
  with open(os.path.join(root, "train.csv"), "a") as f:
    f.write(f"{first}\n")
  sources.for_training(specs.data_spec(config)).train_examples()
  with open(os.path.join(root, "train.csv"), "a") as f:
    f.write(f"./{path},{other}\n")
  with pytest.raises(UserError) as error:
    sources.for_training(specs.data_spec(config)).train_examples()
  assert str(error.value) == (
      f"train.csv lists {root}/./{path} under two labels, {label!r} and {other!r}: "
      "keep the row with the right one.")
