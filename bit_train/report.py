"""The run report: one HTML page that opens without a server (its images are data
URIs), written by bit-train to W/report.html and by bit-eval to W/eval/report.html.

It shows the files beside it (metrics.json; for a training run also plan.json and
history.jsonl) and what it measures itself from the model on the evaluated split,
one prediction per example (`predict`): per-class accuracy, the confusion matrix and
the worst mistakes (the wrong predictions made with the most confidence) as
thumbnails. The same numbers are in the page as JSON (`<script id="report-data">`).

  report.write_report(W, model, examples, crop)   # W/report.html
"""

import base64
import dataclasses
import html
import io
import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from bit_train import files
from bit_train import labels
from bit_train import reading
from bit_train import workdir as wd
from bit_train.data import pipeline
from bit_train.data import preprocess

REPORT = "report.html"
MAX_MISTAKES = 16  # thumbnails of the worst mistakes
THUMBNAIL = 128  # pixels, the longer side
MAX_MATRIX_CLASSES = 40  # larger confusion matrices are listed as pairs only
MAX_TABLE_CLASSES = 100  # larger per-class tables show the least accurate
SMOOTHING = 0.6  # weight of the past in the train loss's moving average


@dataclasses.dataclass(frozen=True)
class Predictions:
  """The model's prediction for every example of a split, in order: kept as the
  predicted class and its probability, so a split of many classes stays small."""
  labels: np.ndarray  # [N] true class
  predicted: np.ndarray  # [N] the class of the highest probability
  confidence: np.ndarray  # [N] that probability
  num_classes: int

  @property
  def count(self):
    return len(self.labels)

  def correct(self):
    return self.predicted == self.labels

  def per_class(self):
    """(images, correct) per true class."""
    return (np.bincount(self.labels, minlength=self.num_classes),
            np.bincount(self.labels[self.correct()], minlength=self.num_classes))

  def confusion(self):
    """[true class, predicted class] -> images."""
    matrix = np.zeros([self.num_classes, self.num_classes], np.int64)
    np.add.at(matrix, (self.labels, self.predicted), 1)
    return matrix

  def confused_pairs(self, k):
    """The k most frequent (true, predicted, images) of the wrong predictions."""
    wrong = ~self.correct()
    pairs, counts = np.unique(np.stack([self.labels[wrong], self.predicted[wrong]], 1),
                              axis=0, return_counts=True)
    best = np.argsort(-counts, kind="stable")[:k]
    return [(int(t), int(p), int(c)) for (t, p), c in zip(pairs[best], counts[best])]

  def worst_mistakes(self, k):
    """Indices of the k wrong predictions made with the highest probability."""
    wrong = np.flatnonzero(~self.correct())
    return wrong[np.argsort(-self.confidence[wrong], kind="stable")[:k]]


def predict(model, examples, crop, batch_size=32, class_order=None):
  """Predictions of `model` (images in [0, 1] -> logits) on every example of
  `examples` (single-label), preprocessed as the evaluation does.

  class_order: the model's output index of every dataset class (labels.class_order),
  None when output i is class i.
  """
  @tf.function(autograph=False)
  def step(images):
    logits = tf.cast(model(images, training=False), tf.float32)
    if class_order is not None:
      logits = tf.gather(logits, class_order, axis=1)
    return (tf.argmax(logits, axis=1, output_type=tf.int32),
            tf.reduce_max(tf.nn.softmax(logits), axis=1))

  parts = []  # (labels, predicted, confidence) of each batch's real examples
  for images, batch_labels, mask in pipeline.eval_dataset(examples, crop, batch_size):
    real = mask.numpy() > 0
    predicted, confidence = (t.numpy()[real] for t in step(images))
    parts.append((batch_labels.numpy()[real], predicted, confidence))
  true, predicted, confidence = (np.concatenate(p) for p in zip(*parts))
  return Predictions(true.astype(np.int64), predicted.astype(np.int64), confidence,
                     examples.num_classes)


def thumbnails(examples, indices, size=THUMBNAIL):
  """{index: JPEG bytes} of the examples at `indices`, decoded as the evaluation
  decodes them, the longer side `size` pixels."""
  indices = sorted(int(i) for i in indices)
  if examples.files is not None:  # only these files are read
    paths = examples.files[0]
    found = ((i, tf.io.read_file(paths[i])) for i in indices)
  else:
    wanted = tf.constant(indices, tf.int64)
    found = ((i, encoded) for i, (encoded, _) in examples.read().enumerate().filter(
        lambda i, example: tf.reduce_any(tf.equal(i, wanted))))
  result = {}
  for i, encoded in found:
    image = preprocess.decode(encoded)
    # Small images are enlarged in blocks of pixels, large ones averaged down.
    method = "nearest" if max(image.shape[:2]) < size else "area"
    image = tf.image.resize(image, [size, size], method, preserve_aspect_ratio=True)
    result[int(i)] = tf.io.encode_jpeg(tf.cast(tf.round(image), tf.uint8),
                                       quality=85).numpy()
  return result


def smoothed(values, weight=SMOOTHING):
  """The moving average TensorBoard draws: debiased, so it starts at the first value."""
  average, out = 0.0, []
  for n, value in enumerate(values, 1):
    average = weight * average + (1 - weight) * value
    out.append(average / (1 - weight ** n))
  return out


def _figure_png(fig):
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  try:
    fig.savefig(out, format="png", dpi=80)
  finally:
    plt.close(fig)
  return out.getvalue()


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def curves_png(history, num_classes=0):
  """Train loss (raw and smoothed), learning rate and eval top-1 against steps, as
  PNG bytes; None without train records. Top-5 is drawn beside top-1 when there are
  more than 5 classes (with 5 or fewer it is always 1)."""
  train = sorted((r for r in history if "loss" in r and "top1" not in r),
                 key=lambda r: r["step"])
  evals = sorted((r for r in history if "top1" in r), key=lambda r: r["step"])
  if not train:
    return None
  plt = _pyplot()
  fig, (ax_loss, ax_lr, ax_acc) = plt.subplots(1, 3, figsize=(13, 3.6))
  steps = [r["step"] for r in train]
  losses = [r["loss"] for r in train]
  ax_loss.plot(steps, losses, color="C0", alpha=0.35, label="raw")
  ax_loss.plot(steps, smoothed(losses), color="C0", label="smoothed")
  ax_loss.set(xlabel="step", ylabel="train loss", title="Training loss")
  ax_loss.legend()
  ax_lr.plot([r["step"] for r in train if "lr" in r],
             [r["lr"] for r in train if "lr" in r], color="C2")
  ax_lr.set(xlabel="step", ylabel="learning rate", title="Learning rate")
  ax_acc.plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-", color="C1",
              label="top-1")
  if num_classes > 5 and any("top5" in r for r in evals):
    ax_acc.plot([r["step"] for r in evals if "top5" in r],
                [r["top5"] for r in evals if "top5" in r], "s--", color="C3",
                label="top-5")
    ax_acc.legend()
  if evals:
    ax_acc.annotate(f"{evals[-1]['top1']:.4f}", (evals[-1]["step"], evals[-1]["top1"]),
                    textcoords="offset points", xytext=(-8, -14), ha="right")
  ax_acc.set(xlabel="step", ylabel="accuracy", title="Evaluation", ylim=(0, 1),
             xlim=(0, max([steps[-1]] + [r["step"] for r in evals]) * 1.02))
  fig.tight_layout()
  return _figure_png(fig)


def confusion_png(matrix, class_names):
  """The confusion matrix, rows normalised to each true class, as PNG bytes."""
  plt = _pyplot()
  classes = len(class_names)
  side = min(11, 2 + 0.3 * classes)
  fig, ax = plt.subplots(figsize=(side + 1.2, side))
  rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  shown = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
  fig.colorbar(shown, ax=ax, fraction=0.046, label="share of the true class")
  ticks = [name if len(name) <= 18 else name[:17] + "…" for name in class_names]
  ax.set_xticks(range(classes), ticks, rotation=90, fontsize=8)
  ax.set_yticks(range(classes), ticks, fontsize=8)
  ax.set(xlabel="predicted", ylabel="true")
  if classes <= 15:
    for (t, p), count in np.ndenumerate(matrix):
      if count:
        ax.text(p, t, str(count), ha="center", va="center", fontsize=8,
                color="white" if rows[t, p] > 0.5 else "black")
  fig.tight_layout()
  return _figure_png(fig)


def _data_uri(data, mime):
  return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(data, mime, alt):
  return f'<img src="{_data_uri(data, mime)}" alt="{html.escape(alt)}">'


def _read_json(path):
  return reading.read_json_if_exists(path, shape=dict)


def read_history(path):
  """The records of history.jsonl; a line that is not one (a cut-off last line)
  is left out."""
  if not reading.exists(path):
    return []
  records = []
  for line in reading.read_text(path, "run history").splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if isinstance(record, dict) and isinstance(record.get("step"), int):
      records.append(record)
  return records


def summarise(predictions, class_names, mistakes, paths=None):
  """The numbers the report measured, as its JSON block holds them; `paths`: each
  example's file, when the examples are files. The confusion matrix is there up to
  MAX_MATRIX_CLASSES classes."""
  images, correct = predictions.per_class()
  per_class = [{"index": i, "class": name, "images": int(images[i]),
                "correct": int(correct[i]),
                "accuracy": float(correct[i] / images[i]) if images[i] else None}
               for i, name in enumerate(class_names)]
  summary = {
      "count": predictions.count, "correct": int(correct.sum()),
      "top1": float(correct.sum() / max(predictions.count, 1)), "per_class": per_class,
      "confused_pairs": [{"true": class_names[t], "predicted": class_names[p],
                          "images": n} for t, p, n in predictions.confused_pairs(20)],
      "mistakes": [{"index": int(i), "true": class_names[predictions.labels[i]],
                    "predicted": class_names[predictions.predicted[i]],
                    "probability": float(predictions.confidence[i]),
                    **({"file": paths[i]} if paths else {})} for i in mistakes]}
  if len(class_names) <= MAX_MATRIX_CLASSES:
    summary["confusion"] = predictions.confusion().tolist()
  return summary


_STYLE = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1150px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{padding:3px 10px;text-align:left}
tr:nth-child(even){background:#f5f5f5}td.n{text-align:right;font-variant:tabular-nums}
.bar{background:#4a8fd4;height:10px;display:inline-block}
.grid{display:flex;flex-wrap:wrap;gap:12px 40px}figure{margin:0;width:140px;font-size:.8em}
figure img{border:2px solid #c33;max-width:136px}.muted{color:#777}
pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:.85em}
"""


def _table(rows, header=None, numeric=()):
  out = ["<table>"]
  if header:
    out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
  for row in rows:
    out.append("<tr>" + "".join(
        f'<td class="n">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
        for i, cell in enumerate(row)) + "</tr>")
  return "".join(out) + "</table>"


def _value(value):
  if isinstance(value, float):
    return f"{value:.6g}"
  if isinstance(value, (list, tuple)):
    return html.escape(", ".join(map(str, value)))
  return html.escape(str(value))


def _results_section(metrics):
  """The final evaluation as metrics.json has it (a bit-eval file: every set)."""
  if metrics is None:
    return "<p class=muted>No metrics.json beside the report.</p>"
  results = metrics.get("results") or {metrics.get("eval_split", "eval"): metrics}
  rows = []
  for name, record in results.items():
    loss = record.get("loss")
    rows.append([html.escape(str(name)), _value(record.get("count")),
                 f"{record.get('top1', float('nan')):.4f}",
                 f"{record.get('top5', float('nan')):.4f}",
                 "" if loss is None else f"{loss:.4f}"])
  return _table(rows, ["evaluated", "images", "top-1", "top-5", "loss"], (1, 2, 3, 4))


def _facts_section(metrics, plan):
  rows = []
  if plan is not None:
    rows += [[html.escape(k), _value(v)] for k, v in sorted(plan["plan"].items())]
  elif metrics is not None:
    rows += [[html.escape(k), _value(metrics[k])]
             for k in ("model", "model_source", "model_path", "crop", "crop_from",
                       "batch", "class_names_from") if k in metrics]
  config = (plan or metrics or {}).get("config")
  half = -(-len(rows) // 2)  # two columns of facts
  rows = [left + right for left, right in
          zip(rows[:half], rows[half:] + [["", ""]] * (half - len(rows[half:])))]
  text = _table(rows) if rows else "<p class=muted>Nothing recorded.</p>"
  if config:
    text += ("<details><summary>config</summary><pre>"
             f"{html.escape(json.dumps(config, indent=1, sort_keys=True))}</pre></details>")
  return text


def _per_class_section(summary):
  rows = summary["per_class"]
  note = ""
  if len(rows) > MAX_TABLE_CLASSES:
    rows = sorted(rows, key=lambda r: (r["accuracy"] is None, r["accuracy"] or 0))
    rows = rows[:MAX_TABLE_CLASSES]
    note = (f"<p class=muted>The {MAX_TABLE_CLASSES} least accurate of "
            f"{len(summary['per_class'])} classes.</p>")
  table = [[str(r["index"]), html.escape(r["class"]), str(r["images"]),
            str(r["correct"]),
            "" if r["accuracy"] is None else f"{r['accuracy']:.4f}",
            "" if r["accuracy"] is None else
            f'<span class="bar" style="width:{100 * r["accuracy"]:.0f}px"></span>']
           for r in rows]
  return note + _table(table, ["index", "class", "images", "correct", "accuracy", ""],
                       (0, 2, 3, 4))


def _confusion_section(summary, class_names):
  parts = []
  if "confusion" in summary:
    parts.append(_img(confusion_png(np.array(summary["confusion"]), class_names),
                      "image/png", "confusion matrix"))
  pairs = summary["confused_pairs"]
  if pairs:
    parts.append("<h3>Most confused pairs</h3>" + _table(
        [[html.escape(p["true"]), html.escape(p["predicted"]), str(p["images"])]
         for p in pairs], ["true", "predicted as", "images"], (2,)))
  if not parts:
    return "<p>No mistakes.</p>"
  return "".join(parts)


def _mistakes_section(summary, images):
  if not summary["mistakes"]:
    return "<p>No mistakes.</p>"
  figures = []
  for m in summary["mistakes"]:
    where = (f'<span title="{html.escape(m["file"])}">'
             f'{html.escape(os.path.basename(m["file"]))}</span>' if "file" in m
             else f"#{m['index']}")
    caption = (f"{where}<br>true: <b>{html.escape(m['true'])}</b><br>predicted: "
               f"<b>{html.escape(m['predicted'])}</b> ({m['probability']:.2f})")
    figures.append(f"<figure>{_img(images[m['index']], 'image/jpeg', 'mistake')}"
                   f"<figcaption>{caption}</figcaption></figure>")
  numbered = "" if "file" in summary["mistakes"][0] else (
      " (#n: the example's position in the split)")
  return (f"<p class=muted>The wrong predictions made with the highest probability"
          f"{numbered}.</p><div class=\"grid\">{''.join(figures)}</div>")


def _section(section):
  """(title, html), or a pair of them, shown side by side."""
  if isinstance(section[0], tuple):
    return '<div class="grid">' + "".join(
        f"<div>{_section(part)}</div>" for part in section) + "</div>"
  return f"<h2>{section[0]}</h2>{section[1]}"


def _headline(metrics):
  """Model, dataset and step of a training run; model and crop of a bit-eval."""
  if metrics is None:
    return ""
  facts = [("model", metrics.get("model")), ("dataset", metrics.get("dataset")),
           ("evaluated on", metrics.get("eval_split")), ("step", metrics.get("step")),
           ("crop", metrics.get("crop"))]
  return "<p>" + " &middot; ".join(f"{k} <b>{html.escape(str(v))}</b>"
                                   for k, v in facts if v is not None) + "</p>"


def render(title, *, metrics=None, plan=None, history=(), examples_name="",
           summary=None, class_names=(), images=None, why_no_examples=None):
  """The report's HTML text."""
  results = _results_section(metrics)
  if summary is not None:
    results += (f"<p>The sections below: {summary['count']} images of "
                f"{html.escape(examples_name)} classified again by the model, "
                f"{summary['correct']} correctly (top-1 {summary['top1']:.4f}).</p>")
  sections = [("Results", results),
              ("Plan" if plan is not None else "Evaluation", _facts_section(metrics, plan))]
  curves = curves_png(history, len(class_names)) if history else None
  if curves:
    sections.append(("Curves", _img(curves, "image/png", "training curves")))
  if summary is not None:
    sections += [(("Per-class accuracy", _per_class_section(summary)),
                  ("Confusion matrix", _confusion_section(summary, class_names))),
                 ("Worst mistakes", _mistakes_section(summary, images))]
  elif why_no_examples:
    sections.append(("Per-example results", f"<p>{html.escape(why_no_examples)}</p>"))
  body = _headline(metrics) + "".join(map(_section, sections))
  data = json.dumps(summary or {}).replace("</", "<\\/")
  return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>"
          f"{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
          f"<h1>{html.escape(title)}</h1>{body}"
          f'<script type="application/json" id="report-data">{data}</script>'
          "</body></html>\n")


def write_report(folder, model, examples, crop, *, model_class_names=None,
                 enabled=True, max_mistakes=MAX_MISTAKES, batch_size=32):
  """Writes folder/report.html from the files in `folder` (metrics.json, and for a
  training run plan.json and history.jsonl) and the predictions of `model` on
  `examples` (sources.Examples) at `crop`; returns its path, or None when not
  `enabled` (a process other than the chief).

  model_class_names: the model's output names when they may be in another order than
  the examples' classes (bit-eval's class_map or a trainer export's names).
  """
  if not enabled:
    return None
  metrics = _read_json(os.path.join(folder, wd.METRICS))
  plan = _read_json(os.path.join(folder, wd.PLAN))
  history = read_history(os.path.join(folder, wd.HISTORY))
  class_names = list(examples.class_names)
  summary = images = why = None
  if examples.multilabel:
    why = (f"{examples.name} has several labels per image: per-class accuracy, the "
           "confusion matrix and mistakes need one.")
  else:
    order = None
    if model_class_names is not None:
      order = labels.class_order(model_class_names, class_names, "the model's names")
    predictions = predict(model, examples, crop, batch_size, order)
    mistakes = predictions.worst_mistakes(max_mistakes)
    summary = summarise(predictions, class_names, mistakes,
                        examples.files[0] if examples.files else None)
    images = thumbnails(examples, mistakes)
  kind = "bit-train run" if plan is not None else "bit-eval"
  text = render(f"{kind}: {folder}", metrics=metrics, plan=plan, history=history,
                examples_name=examples.name, summary=summary, class_names=class_names,
                images=images, why_no_examples=why)
  path = os.path.join(folder, REPORT)
  files.write_text_atomic(path, text)
  logging.info("Wrote the report %s.", path)
  return path
