"""Classification: top-1, top-5, loss and per-class accuracy of the model's logits.

Every example is counted once under any strategy (metrics.py sums masked
batches). In bit-eval the model's outputs may be in another class order than the
dataset's (class_map, a trainer export's names): they are reordered first.
"""

import numpy as np

from bit_train import labels
from bit_train.data import pipeline
from bit_train.errors import UserError
from bit_train.evaluators import base
from bit_train.evaluators import metrics as metrics_lib


def per_class_file(name):
  """The name of an evaluation's per-class accuracy file."""
  return f"{base.slug(name)}.per_class.tsv"


def per_class_text(metrics, class_names):
  """TSV: index, class, images, top-1 correct, top-1 accuracy."""
  rows = ["index\tclass\timages\tcorrect\taccuracy"]
  accuracy = metrics.per_class_accuracy()
  for i, name in enumerate(class_names):
    count = int(round(metrics.per_class_count[i]))
    value = "" if np.isnan(accuracy[i]) else f"{accuracy[i]:.6f}"
    rows.append(f"{i}\t{name}\t{count}\t{int(round(metrics.per_class_correct[i]))}"
                f"\t{value}")
  return "\n".join(rows) + "\n"


class Classification(base.Evaluator):
  """Single-label scoring of a split (its label: see the data source's label rule)."""
  MULTILABEL = False
  SCORING = "single label"

  def __init__(self, entry, source):
    super().__init__(entry, source)
    self.examples = source.eval_examples(entry.split, self._label_key())
    if self.examples.multilabel != self.MULTILABEL:
      raise UserError(f"{self.examples.name} has {'several labels' if self.examples.multilabel else 'one label'} "
                      f"per image: evaluate it with type="
                      f"{'real' if self.examples.multilabel else 'classification'}.")
    self._stream = None  # (key, distributed dataset): built once, cached in memory
    self._step = None  # (model, order, eval step)

  def _label_key(self):
    return self.entry.label_key

  def _order(self, context):
    if context.model_class_names is None:
      return None
    return labels.class_order(context.model_class_names, self.examples.class_names,
                              f"the label file {context.names_origin}")

  def metrics(self, model, context):
    """(metrics.Metrics, the class order used or None)."""
    examples = self.examples
    if model.num_classes != examples.num_classes:
      raise UserError(f"the model outputs {model.num_classes} classes but "
                      f"{self.name} has {examples.num_classes}: evaluate a "
                      "classifier of this dataset's classes (check model, model_path).")
    order = self._order(context)
    if self._step is None or self._step[0] is not model or self._step[1] != order:
      self._step = (model, order, metrics_lib.make_eval_step(
          model, context.strategy, examples.num_classes, order, self.MULTILABEL))
    key = (id(context.strategy), context.crop, context.batch_size)
    if self._stream is None or self._stream[0] != key:
      self._stream = (key, context.strategy.distribute_datasets_from_function(
          lambda ctx: pipeline.eval_dataset(examples, context.crop, context.batch_size,
                                            ctx)))
    try:
      return metrics_lib.evaluate(self._step[2], self._stream[1]), order
    except ValueError as e:
      raise UserError(f"{self.name}: {e}{self._why_empty()}.") from None

  def _why_empty(self):
    return ""

  def run(self, model, context):
    metrics, order = self.metrics(model, context)
    record = dict(metrics.to_dict(), scoring=self.SCORING,
                  reordered_classes=order is not None)
    files = {}
    if metrics.per_class_count is not None:
      files["per_class_file"] = (per_class_file(self.name), per_class_text(
          metrics, self.examples.class_names))
    loss = "" if metrics.loss is None else f", loss {metrics.loss:.4f}"
    line = (f"{self.name}: top-1 {metrics.top1:.4f}, top-5 {metrics.top5:.4f}{loss}"
            f" on {metrics.count} images ({metrics.images_per_second:.1f} img/s)")
    scalars = {"top1": metrics.top1, "top5": metrics.top5}
    if metrics.loss is not None:
      scalars["loss"] = metrics.loss
    return base.Result(self.name, record, line, scalars, files, metrics)
