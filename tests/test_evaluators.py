"""Evaluators: a new evaluator type is a class and a line in TYPES."""

import pytest
import tensorflow as tf

from bit_train import config as bit_config
from bit_train import evaluators
from bit_train import specs
from bit_train.data.patterns import CLASSES, write_pattern_folder
from bit_train.errors import UserError

from helpers import tiny_resnet


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


def _evals_of(config):
  run = specs.from_config(config, evals=True)
  return run.data, run.evals


def test_an_evaluator_type_is_a_class_and_a_line_in_types(tmp_path, monkeypatch):
  monkeypatch.setitem(evaluators.TYPES, "mean_logit", MeanLogit)
  folder = write_pattern_folder(str(tmp_path), per_class=4)
  config = bit_config.base_config()
  config.update(dataset="image_folder", data_dir=folder, holdout_fraction=0.5)
  config.evals.confidence = dict(type="mean_logit", scale=2.0)
  built = evaluators.build(*_evals_of(config))
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
    evaluators.build(*_evals_of(config))
  config.evals.confidence = dict(type="nope")
  with pytest.raises(UserError, match="type='nope' is not known"):
    evaluators.build(*_evals_of(config))


@pytest.mark.parametrize("entry", ["{tmp}/missing_folder", "cifar11"])
def test_extra_eval_neither_folder_nor_tfds_name_is_one_error(tmp_path, entry):
  config = bit_config.base_config()
  config.extra_evals = entry.format(tmp=tmp_path)
  with pytest.raises(UserError, match="neither an existing folder nor a TFDS name"):
    specs.eval_specs(config, specs.data_spec(config))


def test_ties_count_against_the_model_like_an_argmax():
  """Equal logits (an untrained zero head) score top-1 = the share of class 0."""
  labels = tf.constant([0, 1, 2, 0, 3, 6, 5, 4, 1, 2])
  logits = tf.zeros([10, 7])
  sums = evaluators.metrics.batch_sums(logits, labels, tf.ones([10]), 7)
  assert float(sums["top1"]) == 2  # the two examples of class 0
  assert float(sums["top5"]) == 8  # classes 0-4 are the first five of a stable order
  assert list(sums["class_correct"].numpy()) == [2, 0, 0, 0, 0, 0, 0]
  # A tie between the true class and a later one goes to the true class, as argmax.
  logits = tf.constant([[1.0, 3.0, 3.0, 0.0]])
  for label, hit in ((1, 1.0), (2, 0.0)):
    sums = evaluators.metrics.batch_sums(logits, tf.constant([label]), tf.ones([1]), 4)
    assert float(sums["top1"]) == hit
    assert float(sums["top1"]) == float(tf.argmax(logits[0]) == label)
