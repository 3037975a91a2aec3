"""Classification metrics: top-1, top-5, loss and per-class accuracy over an eval
stream, no example dropped.

The stream yields (images, labels, mask) batches; padding examples have mask 0 and
count nowhere, so the final partial batch is evaluated under every strategy. The
classification and ReaL evaluators (so the trainer and `bit-eval`) share this code. `bit-eval` adds two hooks: `class_order`
(the model's output index of every dataset class, for models whose classes are in
another order) and multi-label scoring (ReaL: labels are multi-hot rows and a
prediction is right when it hits any of them).
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf



@dataclasses.dataclass
class Metrics:
  count: int
  top1: float
  top5: float
  loss: float | None  # None for multi-label scoring
  per_class_correct: np.ndarray | None
  per_class_count: np.ndarray | None
  images_per_second: float | None = None  # after the first (compiling) batch

  def to_dict(self):
    record = {"count": self.count, "top1": self.top1, "top5": self.top5,
              "loss": self.loss}
    if self.images_per_second is not None:
      record["images_per_second"] = self.images_per_second
    return record

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
  # Rank of the true class in a stable descending order: the classes with a
  # larger logit, plus the tied classes of a smaller index. Ties count against the
  # model as for an argmax prediction (the first index wins), so equal logits
  # score class 0 only.
  true_logit = tf.gather(logits, labels, batch_dims=1)[:, None]
  earlier = tf.range(tf.shape(logits)[1])[None, :] < labels[:, None]
  ahead = (logits > true_logit) | ((logits == true_logit) & earlier)
  rank = tf.reduce_sum(tf.cast(ahead, tf.int32), axis=1)
  top1 = tf.cast(rank < 1, tf.float32) * mask
  top5 = tf.cast(rank < 5, tf.float32) * mask
  return {
      "count": tf.reduce_sum(mask), "top1": tf.reduce_sum(top1),
      "top5": tf.reduce_sum(top5), "loss": tf.reduce_sum(loss * mask),
      "class_correct": tf.math.unsorted_segment_sum(top1, labels, num_classes),
      "class_count": tf.math.unsorted_segment_sum(mask, labels, num_classes),
  }


def multilabel_sums(logits, labels, mask):
  """Masked sums for multi-hot labels [B, classes]: a top-1 hit is a predicted
  class among the labels, a top-5 hit any label among the five best classes."""
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.float32)
  mask = tf.cast(mask, tf.float32)
  best = tf.argmax(logits, axis=1, output_type=tf.int32)
  top1 = tf.gather(labels, best, batch_dims=1)
  _, top_five = tf.math.top_k(logits, k=min(5, logits.shape[-1]))
  top5 = tf.reduce_max(tf.gather(labels, top_five, batch_dims=1), axis=1)
  return {"count": tf.reduce_sum(mask), "top1": tf.reduce_sum(top1 * mask),
          "top5": tf.reduce_sum(top5 * mask)}


def make_eval_step(model, strategy, num_classes, class_order=None, multilabel=False):
  """A tf.function summing one distributed batch over all replicas.

  Args:
    model: images in [0, 1] -> logits.
    strategy: the tf.distribute strategy the model's variables live in.
    num_classes: classes of the dataset.
    class_order: None when model output i is dataset class i; else the model's
      output index of every dataset class (length num_classes).
    multilabel: labels are multi-hot rows (ReaL) rather than class indices.
  """
  order = None if class_order is None else tf.constant(class_order, tf.int32)

  def replica_step(batch):
    images, labels, mask = batch
    logits = model(images, training=False)
    if order is not None:
      logits = tf.gather(logits, order, axis=1)
    if multilabel:
      return multilabel_sums(logits, labels, mask)
    return batch_sums(logits, labels, mask, num_classes)

  @tf.function(autograph=False)  # models are traced without AutoGraph (registry.Family)
  def eval_step(batch):
    sums = strategy.run(replica_step, args=(batch,))
    return tf.nest.map_structure(
        lambda x: strategy.reduce(tf.distribute.ReduceOp.SUM, x, axis=None), sums)

  return eval_step


def evaluate(eval_step, dist_dataset):
  """Runs `eval_step` over every batch of a distributed dataset -> Metrics.

  images_per_second counts the examples after the first batch (which includes
  tracing and compiling) over the time they took; with one batch, all of it.
  """
  began = time.perf_counter()
  totals, first_count, first_done = None, 0.0, began
  for batch in dist_dataset:
    sums = {k: v.numpy() for k, v in eval_step(batch).items()}
    if totals is None:
      totals, first_count, first_done = sums, sums["count"], time.perf_counter()
    else:
      totals = {k: totals[k] + sums[k] for k in totals}
  if totals is None or totals["count"] == 0:
    raise ValueError("the eval stream produced no examples")
  count = totals["count"]
  timed, since = count - first_count, first_done
  if timed <= 0:  # one batch: its time, compiling included
    timed, since = count, began
  rate = timed / max(time.perf_counter() - since, 1e-9)
  loss = totals.get("loss")
  return Metrics(count=int(round(count)), top1=float(totals["top1"] / count),
                 top5=float(totals["top5"] / count),
                 loss=None if loss is None else float(loss / count),
                 per_class_correct=totals.get("class_correct"),
                 per_class_count=totals.get("class_count"),
                 images_per_second=float(rate))
