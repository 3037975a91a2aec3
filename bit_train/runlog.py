"""What a run reports as it goes: progress lines with img/s and ETA, evaluations,
and the same scalars in W/history.jsonl (for the curves) and TensorBoard.

`RunLog` is the trainer's one reporter; `History` keeps history.jsonl across a
resumed run; `plot_curves` draws W/curves.png from it at the end. File names are
workdir.py's.
"""

import json
import time

from absl import logging
import tensorflow as tf

from bit_train import files
from bit_train import reading
from bit_train import workdir as wd


class RunLog:
  """What a run reports: progress lines with img/s and ETA, evaluations, and the
  same scalars in W/history.jsonl (for the curves) and TensorBoard (chief only)."""

  def __init__(self, workdir, plan, log_every, start, chief):
    self.plan, self.log_every = plan, log_every
    self.history = History(workdir, start, enabled=chief)
    self._writers = {
        name: tf.summary.create_file_writer(wd.path(workdir, wd.TENSORBOARD, name))
        for name in ("train", "eval")} if chief else {}
    self._tick, self._tick_step = time.time(), start

  def _summary(self, kind, step, **scalars):
    self.history.add(step=step, **scalars)
    if kind in self._writers:
      with self._writers[kind].as_default(step=step):
        for name, value in scalars.items():
          tf.summary.scalar(name, value)

  def progress(self, done, loss, lr):
    """After step `done`: a line and summaries every log_every steps and at the end."""
    plan = self.plan
    if done % self.log_every and done != plan.total_steps:
      return
    elapsed = time.time() - self._tick
    rate = (done - self._tick_step) * plan.batch_size / max(elapsed, 1e-9)
    eta = (plan.total_steps - done) * plan.batch_size / max(rate, 1e-9)
    logging.info("step %d/%d  loss %.4f  lr %.6g  %.1f img/s  ETA %s", done,
                 plan.total_steps, loss, lr, rate, _eta(eta))
    self._summary("train", done, loss=loss, lr=lr, images_per_second=rate)
    self._tick, self._tick_step = time.time(), done

  def evaluation(self, step, results):
    """Reports the evaluations at `step` (Trainer.evaluate's results); returns them."""
    main, *others = results
    metrics = main.metrics
    logging.info("Eval at step %d/%d: top-1 %.4f, top-5 %.4f, loss %.4f (%d examples)",
                 step, self.plan.total_steps, metrics.top1, metrics.top5, metrics.loss,
                 metrics.count)
    for result in others:
      logging.info("Eval at step %d/%d: %s", step, self.plan.total_steps, result.line)
    self._summary("eval", step, **main.scalars,
                  **{k: v for result in others for k, v in result.scalars.items()})
    return results


def _eta(seconds):
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}"


def _parse(lines):
  """(records, numbers of the lines that are not a record)."""
  records, broken = [], []
  for number, line in enumerate(lines, 1):
    if not line.strip():
      continue
    try:
      record = json.loads(line)
      if isinstance(record, dict) and isinstance(record.get("step"), int):
        records.append(record)
        continue
    except ValueError:
      pass
    broken.append(number)
  return records, broken


class History:
  """Appends one JSON line per record; on resume, forgets records after the step.

  A line that is not a record (a kill while appending cuts the last one off) is
  dropped with a warning when the run resumes.
  """

  def __init__(self, workdir, resumed_step, enabled=True):
    self.file = wd.path(workdir, wd.HISTORY)
    self.enabled = enabled
    if enabled:
      records, broken = self._read()
      if broken:
        logging.warning("%s: dropped %d unreadable line(s) (line %s), as a run killed "
                        "while writing leaves.", self.file, len(broken),
                        ", ".join(map(str, broken)))
      kept = [r for r in records if r["step"] <= resumed_step]
      files.write_text_atomic(self.file, "".join(json.dumps(r) + "\n" for r in kept))

  def _read(self):
    if not tf.io.gfile.exists(self.file):
      return [], []
    return _parse(reading.read_text(self.file, "run history").splitlines())

  def read(self):
    return self._read()[0]

  def add(self, **record):
    if self.enabled:
      files.append_text(self.file, json.dumps(record) + "\n")


def plot_curves(history, png_path):
  """Training loss and eval accuracy against steps, as one PNG."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  records = history.read()
  train = [r for r in records if "loss" in r and "top1" not in r]
  evals = [r for r in records if "top1" in r]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train])
  ax_loss.set(xlabel="step", ylabel="train loss", title="Training loss")
  ax_acc.plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-", label="top-1")
  ax_acc.plot([r["step"] for r in evals], [r["top5"] for r in evals], "s--", label="top-5")
  ax_acc.set(xlabel="step", ylabel="accuracy", title="Evaluation", ylim=(0, 1))
  ax_acc.legend()
  fig.tight_layout()
  tmp = png_path + ".tmp.png"
  try:
    with files.removed_on_failure(tmp), files.writing(png_path):
      fig.savefig(tmp, dpi=80)
      tf.io.gfile.rename(tmp, png_path, overwrite=True)
  finally:
    plt.close(fig)
