"""Few-shot linear evaluation: a closed-form ridge classifier on frozen pre-logits.

For every k in `shots` and every seed in `seeds`, k training examples of every
class are drawn (the same rule as examples_per_class: a smaller k takes a subset of
a larger k's examples), a regularised least-squares classifier is fitted to their
pre-logits, and its top-1 accuracy is measured on the held-out split. The model is
not changed; only the examples drawn go through it, each once.

The classifier (the linear probe big_vision's `fewshot_lsr` fits): features are
whitened with the mean and standard deviation of the k-shot set, a constant
feature BIAS (large, so the bias is almost unregularised) is appended, targets are
one-hot rows in {-1, +1}, and

  W = (X^T X + l2_reg I)^-1 X^T Y      (N >= D: a D x D system)
    = X^T (X X^T + l2_reg I)^-1 Y      (N < D: an N x N system, the same W)

solved in float64 in a TensorFlow graph; predictions are argmax(X_test W).
"""

import functools

import numpy as np
import tensorflow as tf

from bit_train.data import sources
from bit_train.errors import UserError
from bit_train.evaluators import base

BIAS = 100.0
STD_EPS = 1e-5


@tf.function
def fit_lsr(x, y, num_classes, l2_reg):
  """(mean, std, W) of the ridge classifier for features x [N, D], labels y [N]."""
  x = tf.cast(x, tf.float64)
  mean = tf.reduce_mean(x, axis=0, keepdims=True)
  std = tf.math.reduce_std(x, axis=0, keepdims=True) + STD_EPS
  x = _with_bias((x - mean) / std)
  targets = 2.0 * tf.one_hot(y, num_classes, dtype=tf.float64) - 1.0
  l2_reg = tf.cast(l2_reg, tf.float64)
  n, d = tf.shape(x)[0], tf.shape(x)[1]
  if n >= d:
    gram = tf.matmul(x, x, transpose_a=True) + l2_reg * tf.eye(d, dtype=tf.float64)
    w = tf.linalg.cholesky_solve(tf.linalg.cholesky(gram),
                                 tf.matmul(x, targets, transpose_a=True))
  else:
    gram = tf.matmul(x, x, transpose_b=True) + l2_reg * tf.eye(n, dtype=tf.float64)
    w = tf.matmul(x, tf.linalg.cholesky_solve(tf.linalg.cholesky(gram), targets),
                  transpose_a=True)
  return mean, std, w


@tf.function
def predict_lsr(mean, std, w, x):
  """Class predictions [N] of the fitted classifier for features x [N, D]."""
  x = _with_bias((tf.cast(x, tf.float64) - mean) / std)
  return tf.argmax(tf.matmul(x, w), axis=1, output_type=tf.int32)


def _with_bias(x):
  return tf.concat([x, tf.fill([tf.shape(x)[0], 1], tf.constant(BIAS, x.dtype))], 1)


def lsr_accuracy(train_features, train_labels, test_features, test_labels, num_classes,
                 l2_reg):
  """Top-1 accuracy on the test features of the ridge classifier of the train ones."""
  mean, std, w = fit_lsr(tf.constant(train_features), tf.constant(train_labels, tf.int32),
                         num_classes, l2_reg)
  predicted = predict_lsr(mean, std, w, tf.constant(test_features)).numpy()
  return float(np.mean(predicted == np.asarray(test_labels)))


class FewShot(base.Evaluator):
  """Few-shot linear evaluation of the model's pre-logits.

  Options:
    shots: examples per class to fit on, e.g. (1, 5, 10, 25).
    seeds: the seeds drawing the examples; the mean over them is reported.
    l2_reg: the ridge penalty on the whitened features.
    train_split: the split the examples are drawn from; None: the dataset's train
      split. The entry's `split` is the held-out split measured (None: its eval split).
  """
  # The defaults of big_vision's few-shot configs: shots 1/5/10/25, three seeds,
  # l2_reg 2**10.
  OPTIONS = {"shots": (1, 5, 10, 25), "seeds": (0, 1, 2), "l2_reg": 2.0**10,
             "train_split": None}
  OPTION_KINDS = {"shots": "a list of whole numbers >= 1",
                  "seeds": "a list of whole numbers >= 0", "l2_reg": "a number > 0",
                  "train_split": "a split string or None"}
  NEEDS_HEAD = False

  def __init__(self, entry, source):
    super().__init__(entry, source)
    shots, seeds = tuple(self.options["shots"]), tuple(self.options["seeds"])
    self.shots, self.seeds = sorted(set(shots)), list(seeds)
    self.pre_logits = base.PreLogits()
    train_split = self.options["train_split"] or source.facts.train_split
    self.train = source.examples(train_split, entry.label_key)
    self.examples = source.eval_examples(entry.split, entry.label_key)
    for examples in (self.train, self.examples):
      if examples.multilabel:
        raise UserError(f"{examples.name} has several labels per image: few-shot "
                        "evaluation needs one (set the entry's label_key).")

  @property
  def name(self):
    return self.entry.name or f"fewshot {self.examples.name}"

  @functools.cached_property
  def _draws(self):
    """(train labels, {(k, seed): indices}, the drawn examples): drawn once.

    Reading the labels reads the whole train split once (a large TFDS split: name a
    slice with train_split); later runs read only the drawn examples' files, or
    filter the split.
    """
    labels = self.train.labels()
    what = f"shots of {self.name}"
    chosen = {(k, seed): sources.few_shot_indices(labels, k, seed,
                                                  self.train.class_names, what)
              for k in self.shots for seed in self.seeds}
    drawn = sorted(set().union(*chosen.values()))
    return labels, chosen, drawn, self.train.subset(drawn)

  @functools.cached_property
  def _test_labels(self):
    """The held-out split's labels: read once per run, not at every evaluation (for
    a TFDS split that is a pass over its records)."""
    return self.examples.labels()

  def run(self, model, context):
    train_labels, chosen, drawn, drawn_examples = self._draws
    features = self.pre_logits(model, drawn_examples, context)
    row = {index: i for i, index in enumerate(drawn)}
    test_features = self.pre_logits(model, self.examples, context)
    test_labels = self._test_labels
    num_classes = self.train.num_classes
    per_k = {}
    for k in self.shots:
      accuracies = []
      for seed in self.seeds:
        rows = [row[i] for i in chosen[(k, seed)]]
        accuracies.append(lsr_accuracy(features[rows], train_labels[chosen[(k, seed)]],
                                       test_features, test_labels, num_classes,
                                       self.options["l2_reg"]))
      per_k[k] = {"mean": float(np.mean(accuracies)), "per_seed": accuracies}
    record = {"type": "fewshot", "train_split": self.train.split,
              "split": self.examples.split, "count": len(test_labels),
              "seeds": self.seeds, "l2_reg": float(self.options["l2_reg"]),
              "feature_dim": int(features.shape[1]),
              "shots": {str(k): v for k, v in per_k.items()}}
    line = (f"{self.name}: few-shot linear top-1 on {len(test_labels)} images, "
            + ", ".join(f"{k}-shot {v['mean']:.4f}" for k, v in per_k.items())
            + f" (mean of {len(self.seeds)} seed{'s' if len(self.seeds) > 1 else ''})")
    scalars = {f"{base.slug(self.name)}/{k}shot": v["mean"]
               for k, v in per_k.items()}
    return base.Result(self.name, record, line, scalars)

