"""Top-1, top-5, loss and per-class accuracy over an eval stream, no example dropped.

The stream yields (images, labels, mask) batches; padding examples have mask 0 and
count nowhere, so the final partial batch is evaluated under every strategy. The
trainer and `bit-eval` share this code.
"""

import dataclasses

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Metrics:
  count: int
  top1: float
  top5: float
  loss: float
  per_class_correct: np.ndarray
  per_class_count: np.ndarray

  def to_dict(self):
    return {"count": self.count, "top1": self.top1, "top5": self.top5,
            "loss": self.loss}

  def per_class_accuracy(self):
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(self.per_class_count > 0,
                      self.per_class_correct / np.maximum(self.per_class_count, 1),
                      np.nan)


def batch_sums(logits, labels, mask, num_classes):
  """Masked sums for one batch: count, top-1 hits, top-5 hits, loss, per class."""
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.int32)
  mask = tf.cast(mask, tf.float32)
  loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  # Rank of the true class = number of classes with a strictly larger logit, so
  # ties count in the model's favour exactly like tf.math.in_top_k.
  true_logit = tf.gather(logits, labels, batch_dims=1)
  rank = tf.reduce_sum(tf.cast(logits > true_logit[:, None], tf.int32), axis=1)
  top1 = tf.cast(rank < 1, tf.float32) * mask
  top5 = tf.cast(rank < 5, tf.float32) * mask
  return {
      "count": tf.reduce_sum(mask), "top1": tf.reduce_sum(top1),
      "top5": tf.reduce_sum(top5), "loss": tf.reduce_sum(loss * mask),
      "class_correct": tf.math.unsorted_segment_sum(top1, labels, num_classes),
      "class_count": tf.math.unsorted_segment_sum(mask, labels, num_classes),
  }


def make_eval_step(model, strategy, num_classes):
  """A tf.function summing one distributed batch over all replicas."""

  def replica_step(batch):
    images, labels, mask = batch
    return batch_sums(model(images, training=False), labels, mask, num_classes)

  @tf.function
  def eval_step(batch):
    sums = strategy.run(replica_step, args=(batch,))
    return tf.nest.map_structure(
        lambda x: strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None), sums)

  return eval_step


def evaluate(eval_step, dist_dataset):
  """Runs `eval_step` over every batch of a distributed dataset -> Metrics."""
  totals = None
  for batch in dist_dataset:
    sums = {k: v.numpy() for k, v in eval_step(batch).items()}
    totals = sums if totals is None else {k: totals[k] + sums[k] for k in totals}
  if totals is None or totals["count"] == 0:
    raise ValueError("the eval stream produced no examples")
  count = totals["count"]
  return Metrics(count=int(round(count)), top1=float(totals["top1"] / count),
                 top5=float(totals["top5"] / count), loss=float(totals["loss"] / count),
                 per_class_correct=totals["class_correct"],
                 per_class_count=totals["class_count"])
