"""The seams of issue 12: no import cycle in bit_train, a new kind of data source is a
module and a line in the lookup (a CSV of paths and labels, trained and evaluated
here), and a new evaluator type is a class and a line in TYPES."""

import ast
import json
import os
import pkgutil

import numpy as np
import pytest
import tensorflow as tf

import bit_train
import bit_train.train  # bit-train's entry point, run in this process
from bit_train import config as bit_config
from bit_train import evaluators
from bit_train.data import sources
from bit_train.data.sources import csv_files
from bit_train.errors import UserError
from conftest import run_here, run_module
from pattern_images import CLASSES, write_pattern_folder
from tiny_models import tiny_resnet


def bit_train_imports():
  """{module: the bit_train modules it imports, anywhere in its code}."""
  names = {m.name for m in pkgutil.walk_packages(bit_train.__path__, "bit_train.")}
  names.add("bit_train")
  graph = {}
  for name in names:
    spec = __import__("importlib").util.find_spec(name)
    with open(spec.origin) as f:
      tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        found.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from package import module` imports the module; `from m import name` m.
        found.update(f"{node.module}.{alias.name}"
                     if f"{node.module}.{alias.name}" in names else node.module
                     for alias in node.names)
    graph[name] = {m for m in found if m in names and m != name}
  return graph


def find_cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt, path + [nxt])
        if cycle:
          return cycle
    state[node] = "done"
    return None
  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [node])
      if cycle:
        return cycle
  return None


def test_bit_train_has_no_import_cycle():
  graph = bit_train_imports()
  assert "bit_train.data.sources.tfds" in graph and len(graph) > 30
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
  # The check can fail: the old catalog and sources imported each other.
  assert find_cycle({**graph, "bit_train.data.sources.base": {
      "bit_train.data.sources"}}) is not None


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
  source = sources.from_config(config)
  assert source.class_names == tuple(sorted(CLASSES))
  assert source.facts.num_examples == 2 * len(CLASSES)
  labels = [int(l) for _, l in source.train_examples().read().as_numpy_iterator()]
  assert np.bincount(labels).tolist() == [2] * len(CLASSES)
  assert source.eval_examples().num_examples == num_test
  config.examples_per_class = None
  assert sources.from_config(config).facts.num_examples == num_train
  (tmp_path / "test.csv").write_text("images/missing.png,checker\n")
  with pytest.raises(UserError, match="missing.png"):
    sources.from_config(config)


def test_training_and_bit_eval_read_a_csv_source(tmp_path, capsys):
  root, _, num_test = write_csv_dataset(tmp_path / "data")
  workdir = tmp_path / "w"
  # bit-train in this process (conftest.run_here); bit-eval as a real process (its
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


class MeanLogit(evaluators.base.Evaluator):
  """A new evaluator type: the mean of the model's largest logit on a split."""
  OPTIONS = {"scale": 1.0}

  def __init__(self, entry, source):
    super().__init__(entry, source)
    self.examples = source.eval_examples(entry.split)

  def run(self, model, context):
    images = [tf.image.resize(tf.io.decode_png(e), [context.crop] * 2) / 255.0
              for e, _ in self.examples.read().as_numpy_iterator()]
    value = float(tf.reduce_mean(tf.reduce_max(model(tf.stack(images)), 1)))
    value *= self.options["scale"]
    return evaluators.Result(self.name, {"mean_max_logit": value},
                             f"{self.name}: {value:.4f}", {"mean_max_logit": value})


def test_an_evaluator_type_is_a_class_and_a_line_in_types(tmp_path, monkeypatch):
  monkeypatch.setitem(evaluators.TYPES, "mean_logit", MeanLogit)
  folder = write_pattern_folder(str(tmp_path), per_class=4)
  config = bit_config.base_config()
  config.update(dataset="image_folder", data_dir=folder, holdout_fraction=0.5)
  config.evals.confidence = dict(type="mean_logit", scale=2.0)
  built = evaluators.build(config)
  assert [type(e).__name__ for e in built] == ["Classification", "MeanLogit"]
  model = tiny_resnet(len(CLASSES), seed=1)
  context = evaluators.Context(tf.distribute.get_strategy(), 32, 4)
  result = built[1].run(model, context)
  images = [tf.image.resize(tf.io.decode_png(e), [32, 32]) / 255.0
            for e, _ in built[1].examples.read().as_numpy_iterator()]
  want = 2.0 * float(tf.reduce_mean(tf.reduce_max(model(tf.stack(images)), 1)))
  assert result.name == "confidence" and result.record["mean_max_logit"] == pytest.approx(want)
  config.evals.confidence = dict(type="mean_logit", scael=2.0)
  with pytest.raises(UserError, match="unknown option scael"):
    evaluators.build(config)
  config.evals.confidence = dict(type="nope")
  with pytest.raises(UserError, match="type='nope' is not known"):
    evaluators.build(config)
