"""Few-shot linear evaluation: the closed-form ridge fit against numpy, its accuracy on
separable features, and bit-eval / bit-train running it from config on an image
folder and a TFDS dataset, with a hub export, an .npz model and a native model."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bit_train import evaluators
from bit_train import specs
from bit_train.data import preprocess
from bit_train.data import sources
from bit_train.errors import UserError
from bit_train.data.patterns import CLASSES, write_pattern_folder
from bit_train.evaluators import fewshot

from helpers import error_lines
from helpers import export_tiny_hub_module, write_tiny_npz
from helpers import folder_config
from helpers import run_module
from helpers import TinyShapes, tfds_config

CROP = 32
SHOTS = (1, 2)
SEEDS = (0, 1)


def numpy_ridge(x, y, num_classes, l2_reg):
  """W of the ridge classifier, as plain numpy normal equations (always D x D)."""
  mean, std = x.mean(0, keepdims=True), x.std(0, keepdims=True) + fewshot.STD_EPS
  x = np.pad((x - mean) / std, ((0, 0), (0, 1)), constant_values=fewshot.BIAS)
  targets = 2.0 * np.eye(num_classes)[y] - 1.0
  w = np.linalg.solve(x.T @ x + l2_reg * np.eye(x.shape[1]), x.T @ targets)
  return mean, std, w


def numpy_accuracy(train_x, train_y, test_x, test_y, num_classes, l2_reg):
  mean, std, w = numpy_ridge(train_x.astype(np.float64), train_y, num_classes, l2_reg)
  test = np.pad((test_x - mean) / std, ((0, 0), (0, 1)), constant_values=fewshot.BIAS)
  return float(np.mean((test @ w).argmax(1) == test_y))


@pytest.mark.parametrize("n,d", [(40, 8), (12, 64)])  # N >= D, and N < D (dual form)
@pytest.mark.parametrize("l2_reg", [1e-2, 1024.0])
def test_the_fit_in_the_graph_equals_numpy_least_squares(n, d, l2_reg):
  rng = np.random.default_rng(n + d)
  x = rng.standard_normal((n, d)).astype(np.float32) * rng.uniform(0.5, 5, d)
  y = np.arange(n) % 4
  mean, std, w = (t.numpy() for t in fewshot.fit_lsr(
      tf.constant(x), tf.constant(y, tf.int32), 4, l2_reg))
  want_mean, want_std, want_w = numpy_ridge(x.astype(np.float64), y, 4, l2_reg)
  np.testing.assert_allclose(mean, want_mean, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(std, want_std, rtol=1e-6)
  np.testing.assert_allclose(w, want_w, rtol=1e-4, atol=1e-4 * np.abs(want_w).max())
  test_x = rng.standard_normal((30, d)).astype(np.float32)
  test_y = np.arange(30) % 4
  assert fewshot.lsr_accuracy(x, y, test_x, test_y, 4, l2_reg) == pytest.approx(
      numpy_accuracy(x, y, test_x, test_y, 4, l2_reg), abs=1e-9)


def clusters(centres, per_class, seed):
  """per_class points of unit Gaussian noise around every centre, and their labels."""
  labels = np.repeat(np.arange(len(centres)), per_class)
  noise = np.random.default_rng(seed).standard_normal((len(labels), centres.shape[1]))
  return (centres[labels] + noise).astype(np.float32), labels


def test_well_separated_features_are_near_perfect_from_five_shots():
  # Ten classes in 64 dimensions: centres drawn with unit spread per dimension,
  # unit noise around them. Over six such draws (seeds 0-5, three few-shot seeds
  # each) k >= 5 scored 0.998-1.0 and k = 1 0.95-0.996.
  centres = np.random.default_rng(0).standard_normal((10, 64))
  train_x, train_y = clusters(centres, 30, seed=1)
  test_x, test_y = clusters(centres, 50, seed=2)
  accuracy = {}
  for k in (1, 5, 10, 25):
    for seed in range(3):
      chosen = sources.few_shot_indices(train_y, k, seed, tuple(range(10)))
      accuracy[k, seed] = fewshot.lsr_accuracy(train_x[chosen], train_y[chosen],
                                               test_x, test_y, 10, 1024.0)
  assert min(a for (k, _), a in accuracy.items() if k >= 5) >= 0.98, accuracy
  # The check can fail: with shuffled labels the same features are near chance
  # (0.002-0.226 over the six draws).
  shuffled = np.random.default_rng(0).permutation(train_y)
  chosen = sources.few_shot_indices(shuffled, 5, 0, tuple(range(10)))
  assert fewshot.lsr_accuracy(train_x[chosen], shuffled[chosen], test_x, test_y, 10,
                              1024.0) < 0.4


def expected_fewshot(pre_logits, config, shots=SHOTS, seeds=SEEDS, l2_reg=1024.0):
  """{k: [accuracy per seed]} computed here: the source's splits, the model's
  pre-logits of every image at CROP, the same draws, numpy's ridge fit."""
  source = sources.open_source(specs.data_spec(config))
  train = source.examples(source.facts.train_split)
  test = source.eval_examples()

  def features(examples):
    images = [preprocess.eval_image(encoded, CROP)
              for encoded, _ in examples.read().as_numpy_iterator()]
    return np.concatenate([np.asarray(pre_logits(tf.stack(images[i:i + 16])))
                           for i in range(0, len(images), 16)])
  train_x, test_x = features(train), features(test)
  train_y, test_y = train.labels(), test.labels()
  return {k: [numpy_accuracy(train_x[c], train_y[c], test_x, test_y, train.num_classes,
                             l2_reg)
              for c in [sources.few_shot_indices(train_y, k, s, train.class_names)
                        for s in seeds]]
          for k in shots}


def assert_fewshot_record(record, expected, count):
  assert record["type"] == "fewshot" and record["count"] == count
  assert record["seeds"] == list(SEEDS)
  for k, per_seed in expected.items():
    assert record["shots"][str(k)]["per_seed"] == pytest.approx(per_seed, abs=1e-9)
    assert record["shots"][str(k)]["mean"] == pytest.approx(np.mean(per_seed))


FEWSHOT_FLAGS = ("--config.evals.fewshot.shots=(1,2)", "--config.evals.fewshot.seeds=(0,1)")
# A config file as a user writes one: few-shot on the run's own dataset (an image
# folder here) and on a TFDS dataset; base_config's head=new.
CONFIG_FILE = """
from bit_train import config as bit_config


def get_config(arg=None):
  config = bit_config.base_config()
  config.evals.fewshot = dict(type="fewshot", shots=(1, 2), seeds=(0, 1))
  config.evals.fewshot_tfds = dict(type="fewshot", dataset="tiny_shapes",
                                   data_dir="{tfds_dir}", shots=(1, 2), seeds=(0, 1))
  return bit_config.apply_arg(config, arg)
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  return write_pattern_folder(tmp_path_factory.mktemp("patterns"), per_class=8)


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("tfds")
  TinyShapes(data_dir=str(root)).download_and_prepare()
  return str(root)


@pytest.fixture(scope="module")
def config_file(tfds_dir, tmp_path_factory):
  path = tmp_path_factory.mktemp("configs") / "with_fewshot.py"
  path.write_text(CONFIG_FILE.format(tfds_dir=tfds_dir))
  return str(path)


def folder_and_tfds_configs(folder, tfds_dir):
  return (folder_config(folder, holdout_fraction=0.5),
          tfds_config(dataset="tiny_shapes", data_dir=tfds_dir))


def bit_eval(config, workdir, *flags):
  result = run_module("bit_train.eval", "--config", f"{config},crop={CROP},"
                      "eval_batch_size=4,strategy=cpu", *flags, "--workdir", workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    return json.load(f), result.stdout


def test_bit_eval_few_shot_of_an_npz_model_on_an_image_folder(folder, tmp_path):
  model = write_tiny_npz(str(tmp_path / "mine.npz"), num_classes=10)
  record, stdout = bit_eval(
      f"fewshot:dataset=image_folder,data_dir={folder},holdout_fraction=0.5,"
      f"model=mine,model_source=npz,model_path={tmp_path / 'mine.npz'}",
      str(tmp_path / "e"), *FEWSHOT_FLAGS)
  (name, result), = record["results"].items()
  expected = expected_fewshot(model.pre_logits, folder_config(
      folder, holdout_fraction=0.5))
  assert name == "fewshot"
  assert_fewshot_record(result, expected, count=4 * len(CLASSES))
  assert f"fewshot: few-shot linear top-1 on {4 * len(CLASSES)} images, 1-shot" in stdout


def test_bit_eval_few_shot_of_a_hub_export_on_a_folder_and_a_tfds_dataset(
    folder, tfds_dir, config_file, tmp_path):
  model = export_tiny_hub_module(tmp_path / "features", "feature_vector")
  record, _ = bit_eval(f"{config_file}:dataset=image_folder,data_dir={folder},"
                       f"holdout_fraction=0.5,model_source=hub,"
                       f"model_path={tmp_path / 'features'}", str(tmp_path / "e"))
  results = record["results"]
  assert list(results) == ["fewshot", "fewshot_tfds"]
  on_folder, on_tfds = folder_and_tfds_configs(folder, tfds_dir)
  assert_fewshot_record(results["fewshot"], expected_fewshot(model.pre_logits, on_folder),
                        count=4 * len(CLASSES))
  assert_fewshot_record(results["fewshot_tfds"], expected_fewshot(
      model.pre_logits, on_tfds), count=15)
  assert (results["fewshot_tfds"]["train_split"], results["fewshot_tfds"]["split"]) == (
      "train", "test")


def test_bit_eval_with_head_new_and_no_fewshot_entry_is_one_line(folder, tmp_path):
  result = run_module("bit_train.eval", "--config", "imagenet_eval:"
                      f"dataset=image_folder,data_dir={folder},head=new,strategy=cpu",
                      "--workdir", str(tmp_path))
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      "error: bit-eval with head=new measures the model's pre-logits only: give evals "
      "entries of type fewshot (the fewshot config), or set head=keep to measure the "
      "model's own classifier."]


TINY = ("model_source=native,num_units=1/1/1/1,width=0.5,precrop=36,crop=32,"
        "batch_size=8,supports=1/2/3,checkpoint_every=3,lr_scaling=none,strategy=cpu")


def test_training_runs_the_few_shot_evaluations_of_its_config(folder, tfds_dir,
                                                             config_file, tmp_path):
  workdir = tmp_path / "w"
  result = run_module("bit_train.train", "--config", f"{config_file}:dataset=image_folder,"
                      f"data_dir={folder},holdout_fraction=0.5,{TINY}",
                      "--workdir", workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.load(open(workdir / "metrics.json"))
  assert metrics["step"] == 3 and metrics["count"] == 4 * len(CLASSES)  # the head's
  # The final model, read back from its export: its pre-logits are what was fitted.
  module = tf.saved_model.load(str(workdir / "export" / "hub_module"))
  on_folder, on_tfds = folder_and_tfds_configs(folder, tfds_dir)
  assert_fewshot_record(metrics["evals"]["fewshot"], expected_fewshot(
      module.pre_logits, on_folder), count=4 * len(CLASSES))
  assert_fewshot_record(metrics["evals"]["fewshot_tfds"], expected_fewshot(
      module.pre_logits, on_tfds), count=15)
  assert "Eval at step 3/3: fewshot: few-shot linear top-1" in result.stderr
  assert "Eval at step 3/3: fewshot_tfds: few-shot linear top-1" in result.stderr


def test_repeated_evaluations_trace_the_pre_logits_once(folder):
  """The trainer evaluates at every support: the pre-logits step is traced once per
  model, and the same model gives the same record each time."""
  from bit_train.evaluators import base  # pylint: disable=import-outside-toplevel
  from helpers import tiny_resnet  # pylint: disable=import-outside-toplevel
  data = specs.data_spec(folder_config(folder, holdout_fraction=0.5))
  source = sources.open_source(data)
  evaluator = fewshot.FewShot(specs.EvalSpec(name="fs", type="fewshot", data=data,
                                             options=dict(shots=SHOTS, seeds=SEEDS)),
                              source)
  context = base.Context(tf.distribute.get_strategy(), CROP, 8)
  model = tiny_resnet(num_classes=len(CLASSES))
  first = evaluator.run(model, context).record
  step = evaluator.pre_logits._step[2]
  assert evaluator.run(model, context).record == first
  assert evaluator.pre_logits._step[2] is step
  assert step.experimental_get_tracing_count() == 1  # drawn shots and held-out split
  evaluator.run(tiny_resnet(num_classes=len(CLASSES), seed=1), context)
  assert evaluator.pre_logits._step[2] is not step  # another model, its own step


def test_an_evals_entry_that_is_no_dict_is_one_line(folder):
  """`--config.evals={'x': 1}` was a TypeError traceback from specs.py."""
  config = folder_config(folder)
  config.evals.x = 1
  with pytest.raises(UserError) as error:
    specs.from_config(config, evals=True)
  assert str(error.value).startswith("evals entry 'x' is 1, not a dict: write 'x': dict(")


@pytest.mark.parametrize("option,value,kind", [
    ("shots", ("1", "5"), "a list of whole numbers >= 1"),
    ("shots", (1.0, 5.0), "a list of whole numbers >= 1"),
    ("shots", 5, "a list of whole numbers >= 1"),
    ("shots", (0, 5), "a list of whole numbers >= 1"),
    ("seeds", (0, "1"), "a list of whole numbers >= 0"),
    ("l2_reg", "1024", "a number > 0"),
    ("train_split", 3, "a split string or None"),
])
def test_options_of_the_wrong_type_are_one_line_before_data_is_read(folder, option,
                                                                     value, kind):
  """Checked once the specs are made (the entry points' evaluators.check_options),
  before any data is read or a step is run."""
  config = folder_config(folder)
  config.evals.fewshot = dict(type="fewshot", **{option: value})
  with pytest.raises(UserError) as error:
    evaluators.check_options(specs.from_config(config, evals=True).evals)
  assert str(error.value) == (f"evals entry 'fewshot' (fewshot): {option}={value!r} "
                              f"must be {kind}.")
