"""report.html of a bit-train run and of bit-eval: self-contained, its numbers those of
metrics.json (and bit-eval's per-class file), its images decodable; the per-example
predictions, confusion matrix and worst mistakes it is built from."""

import base64
import io
import json
import os
import re

import numpy as np
from PIL import Image
import pytest

from bit_train import report
from bit_train.data.sources import base
from helpers import finished_folder_run
from helpers import run_module
from bit_train.data.patterns import CLASSES
from bit_train.data.patterns import write_pattern_folder
from helpers import tiny_resnet

TINY = ("model_source=native,num_units=1/1/1/1,width=0.5,precrop=36,crop=32,"
        "batch_size=8,supports=1/2,eval_every=1,log_every=1,checkpoint_every=100,"
        "lr_scaling=none,holdout_fraction=0.5")


def read_json(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def read_report(path):
  """(HTML text, its JSON block)."""
  with open(path) as f:
    text = f.read()
  block = re.search(r'<script type="application/json" id="report-data">(.*?)</script>',
                    text, re.S).group(1)
  return text, json.loads(block.replace("<\\/", "</"))


def embedded_images(text):
  """Every <img>'s (mime type, decoded PIL image); fails on any other src."""
  sources = re.findall(r'<img src="([^"]*)"', text)
  found = []
  for src in sources:
    match = re.fullmatch(r"data:(image/(?:png|jpeg));base64,([A-Za-z0-9+/=]+)", src)
    assert match, src[:80]
    image = Image.open(io.BytesIO(base64.b64decode(match.group(2))))
    image.load()
    found.append((match.group(1), image))
  return found


# A tiny run and a bit-eval of its export each start TensorFlow (tens of seconds):
# once for the module, the tests only read what they wrote.
@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(image folder, training workdir, bit-eval workdir), both finished."""
  folder, workdir, _ = finished_folder_run(tmp_path_factory, TINY)
  evaldir = str(tmp_path_factory.mktemp("e"))
  result = run_module("bit_train.eval", "--config", "imagenet_eval:"
                      f"dataset=image_folder,data_dir={folder},"
                      f"model_path={os.path.join(workdir, 'export')},eval_batch_size=4,"
                      "strategy=cpu", "--workdir", evaldir)
  assert result.returncode == 0, result.stderr[-3000:]
  return folder, workdir, evaldir


def assert_mistakes_shown(text, data):
  wrong = data["count"] - data["correct"]
  assert len(data["mistakes"]) == min(report.MAX_MISTAKES, wrong)
  thumbnails = [image for mime, image in embedded_images(text) if mime == "image/jpeg"]
  assert len(thumbnails) == len(data["mistakes"])
  assert all(max(image.size) == report.THUMBNAIL for image in thumbnails)
  for mistake in data["mistakes"]:
    assert mistake["true"] != mistake["predicted"]
    assert (f"true: <b>{mistake['true']}</b><br>predicted: <b>{mistake['predicted']}"
            in text)
  probabilities = [m["probability"] for m in data["mistakes"]]
  assert probabilities == sorted(probabilities, reverse=True)


def test_training_report_has_metrics_json_numbers_curves_and_decodable_images(run):
  _, workdir, _ = run
  metrics = read_json(workdir, "metrics.json")
  text, data = read_report(os.path.join(workdir, "report.html"))
  assert data["count"] == metrics["count"]
  assert data["correct"] == round(metrics["top1"] * metrics["count"])
  assert data["top1"] == pytest.approx(metrics["top1"], abs=1e-6)
  assert f"<td class=\"n\">{metrics['top1']:.4f}</td>" in text
  assert sum(c["images"] for c in data["per_class"]) == metrics["count"]
  assert [c["class"] for c in data["per_class"]] == list(CLASSES)
  matrix = np.array(data["confusion"])
  assert matrix.sum() == metrics["count"] and np.trace(matrix) == data["correct"]
  images = embedded_images(text)
  pngs = [image for mime, image in images if mime == "image/png"]
  assert len(pngs) == 2 and 'alt="training curves"' in text  # curves, confusion
  assert_mistakes_shown(text, data)
  plan = read_json(workdir, "plan.json")["plan"]
  assert f"<td>supports</td><td>{', '.join(map(str, plan['supports']))}</td>" in text
  assert "http://" not in text and "https://" not in text


def test_eval_report_has_metrics_json_and_per_class_file_numbers(run):
  _, _, evaldir = run
  record = read_json(evaldir, "eval", "metrics.json")
  (metrics,) = record["results"].values()
  text, data = read_report(os.path.join(evaldir, "eval", "report.html"))
  assert (data["count"], data["correct"]) == (
      metrics["count"], round(metrics["top1"] * metrics["count"]))
  with open(os.path.join(evaldir, "eval", metrics["per_class_file"])) as f:
    rows = [line.split("\t") for line in f.read().splitlines()[1:]]
  assert [(c["class"], c["images"], c["correct"]) for c in data["per_class"]] == [
      (name, int(images), int(correct)) for _, name, images, correct, _ in rows]
  assert 'alt="training curves"' not in text and "<h2>Evaluation</h2>" in text
  assert_mistakes_shown(text, data)


def test_confusion_matrix_pairs_and_worst_mistakes_of_known_predictions():
  predictions = report.Predictions(
      labels=np.array([0, 0, 1, 1, 2, 2, 1]), predicted=np.array([0, 1, 1, 0, 2, 2, 0]),
      confidence=np.array([.9, .7, .8, .6, .95, .8, .5]), num_classes=3)
  np.testing.assert_array_equal(predictions.confusion(),
                                [[1, 1, 0], [2, 1, 0], [0, 0, 2]])
  np.testing.assert_array_equal(predictions.worst_mistakes(5), [1, 3, 6])
  np.testing.assert_array_equal(predictions.worst_mistakes(1), [1])
  assert predictions.confused_pairs(5) == [(1, 0, 2), (0, 1, 1)]
  summary = report.summarise(predictions, ["a", "b", "c"], [1, 3])
  assert [c["accuracy"] for c in summary["per_class"]] == [0.5, 1 / 3, 1.0]
  assert summary["confused_pairs"][0] == {"true": "b", "predicted": "a", "images": 2}
  assert summary["confusion"] == predictions.confusion().tolist()
  many = report.Predictions(np.arange(50), np.arange(50), np.ones(50), 50)
  assert "confusion" not in report.summarise(many, [str(i) for i in range(50)], [])


def test_predictions_are_every_example_in_order_and_follow_a_class_order(tmp_path):
  """7 examples in batches of 4 (a padded last batch); outputs reordered by
  class_order are predicted under their new index."""
  folder = write_pattern_folder(tmp_path, per_class=3)
  paths = sorted(os.path.join(folder, c, f) for c in CLASSES
                 for f in os.listdir(os.path.join(folder, c)))[:7]
  true = [CLASSES.index(os.path.basename(os.path.dirname(p))) for p in paths]

  def examples(chosen):
    return base.Examples("patterns", "all", CLASSES, lambda: base.file_examples(
        [paths[i] for i in chosen], [true[i] for i in chosen]))
  model = tiny_resnet(3, seed=2)
  plain = report.predict(model, examples(range(7)), 32, batch_size=4)
  np.testing.assert_array_equal(plain.labels, true)
  assert len(set(plain.predicted)) > 1  # the class order below is visible
  one = report.predict(model, examples([5]), 32, batch_size=4)
  assert one.predicted[0] == plain.predicted[5]
  np.testing.assert_allclose(one.confidence[0], plain.confidence[5], atol=1e-5)
  order = [2, 0, 1]  # dataset class j is model output order[j]
  reordered = report.predict(model, examples(range(7)), 32, batch_size=4,
                             class_order=order)
  np.testing.assert_array_equal([order[j] for j in reordered.predicted], plain.predicted)
  np.testing.assert_allclose(reordered.confidence, plain.confidence, atol=1e-6)


def test_smoothed_loss_starts_at_the_first_value_and_lags_a_jump():
  values = [2.0] * 5 + [1.0] * 5
  out = report.smoothed(values)
  assert out[:5] == pytest.approx([2.0] * 5)
  assert 1.0 < out[5] < out[4] and out[5] > out[-1] > 1.0
