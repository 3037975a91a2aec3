"""bit-eval on the real TFDS imagenet2012 and imagenet2012_real builders, prepared
offline from tiny fake ILSVRC archives, with a tiny exported classification module."""

import csv
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bit_train import labels
from bit_train.data import preprocess
from bit_train.evaluators import metrics as metrics_lib
from bit_train.errors import UserError
from bit_train.models import hub

import helpers
from helpers import error_lines
from helpers import run_module
from helpers import tiny_resnet

NUM_VAL = 7  # with eval_batch_size=4: one full batch and a final batch of 3
CROP = 32
MAIN, REAL, SLICE = ("imagenet2012@validation", "imagenet2012_real@validation",
                     "imagenet2012@validation[:3]")


def logits_of(model, images):
  batch = tf.stack([preprocess.eval_image(tf.constant(i), CROP) for i in images])
  return model(batch).numpy()


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
  """(manual_dir, data_dir, val images, their labels, classifier path, logits, ReaL)."""
  root = tmp_path_factory.mktemp("imagenet")
  manual_dir, data_dir = str(root / "manual"), str(root / "data")
  images = helpers.write_manual_dir(manual_dir, NUM_VAL)
  val_labels = helpers.validation_labels(NUM_VAL)
  # A tiny 1000-class model leaning towards the validation labels, so that some
  # top-1 and top-5 predictions hit and others miss.
  model = tiny_resnet(1000, seed=3)
  lean = 12.0 + 0.5 * np.arange(NUM_VAL, dtype=np.float32)
  model.params["resnet/head/conv2d/bias"].assign_add(
      tf.scatter_nd([[c] for c in val_labels], lean, [1000]))
  path = str(root / "classifier")
  hub.export_module(model, path, "classification")
  logits = logits_of(model, images)
  predicted = logits.argmax(1)
  # Hand-made ReaL labels: a hit, an image without labels (left out), the
  # original label, a miss, several labels with the prediction among them, ...
  real = [[int(predicted[0]), 1], [], [val_labels[2]], [(int(predicted[3]) + 1) % 1000],
          [5, int(predicted[4]), 6], [7], [int(predicted[6])]]
  helpers.write_real_json(manual_dir, real)
  with pytest.MonkeyPatch.context() as monkeypatch:
    helpers.prepare_real(data_dir, manual_dir, monkeypatch)
  return dict(manual_dir=manual_dir, data_dir=data_dir, labels=val_labels,
              model_path=path, logits=logits, real=real)


def eval_args(imagenet, workdir, *fields):
  config = ",".join([f"data_dir={imagenet['data_dir']}", "model_source=hub",
                     f"model_path={imagenet['model_path']}", f"crop={CROP}",
                     "eval_batch_size=4", "strategy=cpu", *fields])
  return ["--config", f"imagenet_eval:{config}", "--workdir", workdir]


@pytest.fixture(scope="module")
def evaluated(imagenet, tmp_path_factory):
  """One bit-eval run that prepares imagenet2012 from the fake archives itself,
  under MirroredStrategy on two CPU devices (2 images per replica per step)."""
  workdir = str(tmp_path_factory.mktemp("eval"))
  result = run_module("bit_train.eval", *eval_args(
      imagenet, workdir, f"manual_dir={imagenet['manual_dir']}",
      f"extra_evals={REAL};{SLICE}", "strategy=mirrored", "cpu_devices=2"))
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    return json.load(f), workdir, result.stdout, result.stderr


def numpy_metrics(logits, labels_):
  labels_ = np.asarray(labels_)
  ranks = (logits > logits[np.arange(len(labels_)), labels_][:, None]).sum(1)
  shifted = logits - logits.max(1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
  return dict(top1=np.mean(ranks < 1), top5=np.mean(ranks < 5),
              loss=-np.mean(log_probs[np.arange(len(labels_)), labels_]))


def test_top1_top5_and_loss_equal_numpy_on_every_image(imagenet, evaluated):
  metrics = evaluated[0]["results"][MAIN]
  expected = numpy_metrics(imagenet["logits"], imagenet["labels"])
  assert metrics["count"] == NUM_VAL  # the final batch of 3 counted
  assert "MirroredStrategy with 2 replica(s)" in evaluated[3]
  assert 0 < expected["top1"] < expected["top5"] < 1  # the check can fail
  assert metrics["top1"] == pytest.approx(expected["top1"])
  assert metrics["top5"] == pytest.approx(expected["top5"])
  assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
  assert metrics["images_per_second"] > 0
  assert f"{MAIN}: top-1 {expected['top1']:.4f}" in evaluated[2]


def test_per_class_file_counts_each_class(imagenet, evaluated):
  record, workdir = evaluated[:2]
  path = os.path.join(workdir, "eval", record["results"][MAIN]["per_class_file"])
  with open(path) as f:
    rows = list(csv.DictReader(f, delimiter="\t"))
  assert len(rows) == 1000 and rows[0]["class"] == helpers.wnids()[0]
  predicted = imagenet["logits"].argmax(1)
  for c in set(imagenet["labels"]):
    members = [i for i, label in enumerate(imagenet["labels"]) if label == c]
    assert int(rows[c]["images"]) == len(members)
    assert int(rows[c]["correct"]) == sum(predicted[i] == c for i in members)
  assert sum(int(r["images"]) for r in rows) == NUM_VAL


def test_real_counts_a_hit_on_any_label_and_leaves_out_unlabelled(imagenet, evaluated):
  metrics = evaluated[0]["results"][REAL]
  logits, real = imagenet["logits"], imagenet["real"]
  kept = [i for i, r in enumerate(real) if r]
  top1 = np.mean([logits[i].argmax() in real[i] for i in kept])
  top5 = np.mean([bool(set(np.argsort(-logits[i])[:5]) & set(real[i])) for i in kept])
  assert metrics["count"] == len(kept) == NUM_VAL - 1
  assert metrics["top1"] == pytest.approx(top1)
  assert metrics["top5"] == pytest.approx(top5)
  assert top1 != pytest.approx(numpy_metrics(logits, imagenet["labels"])["top1"])
  assert metrics["scoring"].startswith("ReaL")


def test_any_split_string_is_evaluated_the_same_way(imagenet, evaluated):
  import tensorflow_datasets as tfds
  metrics = evaluated[0]["results"][SLICE]
  # A split slice takes examples in TFDS's stored order, not file-name order.
  names = [helpers.val_name(i) for i in range(NUM_VAL)]
  sliced = tfds.builder("imagenet2012", data_dir=imagenet["data_dir"]).as_dataset(
      split="validation[:3]")
  chosen = [names.index(ex["file_name"].numpy().decode()) for ex in sliced]
  expected = numpy_metrics(imagenet["logits"][chosen],
                           [imagenet["labels"][i] for i in chosen])
  assert metrics["count"] == 3
  assert metrics["top1"] == pytest.approx(expected["top1"])


def test_a_label_file_in_another_order_reorders_the_outputs(imagenet, tmp_path):
  """A model whose outputs are the classes reversed, with its label file, scores
  exactly what the standard-order model scores."""
  wnids = helpers.wnids()
  order = labels.class_order(wnids[::-1], wnids, "test")
  assert order == list(range(999, -1, -1))
  logits = tf.constant(imagenet["logits"][:, ::-1].copy())

  class Reversed(tf.Module):
    def __call__(self, images, training=False):
      return logits

  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  step = metrics_lib.make_eval_step(Reversed(), strategy, 1000, order)
  batch = (tf.zeros([NUM_VAL, 1, 1, 3]), tf.constant(imagenet["labels"]),
           tf.ones([NUM_VAL]))
  metrics = metrics_lib.evaluate(step, [batch])
  expected = numpy_metrics(imagenet["logits"], imagenet["labels"])
  assert metrics.top1 == pytest.approx(expected["top1"])
  assert metrics.top5 == pytest.approx(expected["top5"])


def test_label_files_that_do_not_name_the_classes_are_errors():
  wnids = helpers.wnids()
  with pytest.raises(UserError, match="lists 999 classes but the dataset has 1000"):
    labels.class_order(wnids[1:], wnids, "the label file x")
  with pytest.raises(UserError, match="lacks 1 of the dataset's classes"):
    labels.class_order(["n00000000"] + wnids[1:], wnids, "the label file x")
  # Lemma lists keyed by WordNet id match on their first word.
  assert labels.class_order([f"{w} some lemma" for w in wnids], wnids, "x") is None


def test_a_model_with_the_wrong_number_of_classes_is_one_line(imagenet, tmp_path):
  path = str(tmp_path / "ten")
  hub.export_module(tiny_resnet(10), path, "classification")
  result = run_module("bit_train.eval", *eval_args(
      {**imagenet, "model_path": path}, str(tmp_path / "w")))
  assert result.returncode == 2, result.stderr[-2000:]
  assert error_lines(result.stderr) == [
      f"error: the model outputs 10 classes but {MAIN} has 1000: evaluate a "
      "classifier of this dataset's classes (check model, model_path)."]


def test_an_unprepared_dataset_without_manual_dir_is_one_line(imagenet, tmp_path):
  result = run_module("bit_train.eval", *eval_args(
      {**imagenet, "data_dir": str(tmp_path / "empty")}, str(tmp_path / "w")))
  assert result.returncode == 2
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "imagenet2012 is not prepared" in lines[0]
  assert "manual_dir" in lines[0]


def test_an_image_folder_with_a_class_map_in_another_order(tmp_path):
  """dataset=image_folder: every image of root/<class>/ evaluated; the model's
  outputs are (star, circle, square) as its label file says, the folder's sorted."""
  from bit_train.data.patterns import CLASSES, write_pattern_folder
  root = write_pattern_folder(str(tmp_path / "shapes"), per_class=3)
  model_order = [CLASSES[2], CLASSES[0], CLASSES[1]]
  (tmp_path / "classes.txt").write_text("\n".join(model_order) + "\n")
  model = tiny_resnet(3, seed=4)
  hub.export_module(model, str(tmp_path / "m"), "classification")
  workdir = str(tmp_path / "w")
  result = run_module("bit_train.eval", "--config", "imagenet_eval:"
                      f"dataset=image_folder,data_dir={root},model_source=hub,"
                      f"model_path={tmp_path / 'm'},class_map={tmp_path / 'classes.txt'},"
                      f"crop={CROP},eval_batch_size=4,strategy=cpu", "--workdir", workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  paths = sorted(os.path.join(root, c, f) for c in sorted(CLASSES)
                 for f in os.listdir(os.path.join(root, c)))
  images = [open(p, "rb").read() for p in paths]
  truth = [sorted(CLASSES).index(os.path.basename(os.path.dirname(p))) for p in paths]
  logits = logits_of(model, images)[:, [model_order.index(c) for c in sorted(CLASSES)]]
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    record = json.load(f)
  (name, metrics), = record["results"].items()
  assert name == f"{root}@all images" and metrics["reordered_classes"]
  assert metrics["count"] == len(paths) == 3 * len(CLASSES)
  expected = numpy_metrics(logits, truth)
  assert metrics["top1"] == pytest.approx(expected["top1"])
  assert metrics["loss"] == pytest.approx(expected["loss"], rel=1e-4)
