"""What a run reports as it goes: progress lines with img/s and ETA, evaluations,
and the same scalars in W/history.jsonl (for the curves) and TensorBoard.

`RunLog` is the trainer's one reporter; `History` keeps history.jsonl across a
resumed run; `plot_curves` draws W/curves.png from it at the end. File names are
workdir.py's.
"""

import json
import os
import sys
import time

from absl import logging
import tensorflow as tf

from bit_train import console
from bit_train import files
from bit_train import hyperrule
from bit_train import reading
from bit_train import report
from bit_train import workdir as wd


class RunLog:
  """What a run reports: progress lines with img/s and ETA, evaluations, and the
  same scalars in W/history.jsonl (for the curves) and TensorBoard (chief only).

  The loss shown is the mean over the steps since the last line. img/s and the ETA
  come from steady steps only: the first step of a process (tracing and compiling)
  and the time of evaluations are left out. On a terminal the progress is one live
  line, rewritten in place; elsewhere (logs, pipes) one line per log_every steps.
  """

  def __init__(self, workdir, plan, log_every, start, chief, live=None):
    self.plan, self.log_every, self.chief = plan, log_every, chief
    self.history = History(workdir, start, enabled=chief)
    # Train and eval scalars share their names (loss), so TensorBoard overlays them.
    # A resumed run first drops the events after its checkpoint's step, as History
    # does, so the steps it trains again are not drawn twice.
    self._writers = {}
    if chief:
      for name in ("train", "eval"):
        directory = wd.path(workdir, wd.TENSORBOARD, name)
        purge_events(directory, start)
        self._writers[name] = tf.summary.create_file_writer(directory)
    self.live = (chief and console.stderr_is_terminal()) if live is None else live
    self._start = start
    self._last = time.perf_counter()
    self._losses = []  # since the last line
    self._window = [0, 0.0]  # steady steps and their seconds since the last line
    self._steady = [0, 0.0]  # all steady steps of this process
    self._estimated = False
    self._live_shown = False

  def _summary(self, kind, step, **scalars):
    self.history.add(step=step, **scalars)
    if kind in self._writers:
      with self._writers[kind].as_default(step=step):
        for name, value in scalars.items():
          tf.summary.scalar(name, value)

  def close(self):
    """Writes out the TensorBoard events still queued (a process may exit before
    the writers' own periodic flush)."""
    for writer in self._writers.values():
      writer.flush()

  def _timed(self, done):
    """Counts the time since the previous step as steady unless `done` is the first
    step of this process."""
    now = time.perf_counter()
    if done > self._start + 1:
      seconds = now - self._last
      for total in (self._window, self._steady):
        total[0] += 1
        total[1] += seconds
    self._last = now

  def rate(self):
    """Images per second over this process's steady steps, or None before any."""
    steps, seconds = self._steady
    return steps * self.plan.batch_size / seconds if steps and seconds > 0 else None

  def progress(self, done, loss, lr):
    """After step `done`: a line and summaries every log_every steps and at the end."""
    plan = self.plan
    self._timed(done)
    self._losses.append(loss)
    if self.live:
      self._show_live(done, lr)
    if done % self.log_every and done != plan.total_steps:
      return
    mean_loss = sum(self._losses) / len(self._losses)
    steps, seconds = self._window
    rate = steps * plan.batch_size / seconds if steps and seconds > 0 else None
    overall = self.rate()
    eta = None if overall is None else (plan.total_steps - done) * plan.batch_size / overall
    if not self.live:
      logging.info("step %d/%d  loss %.4f  lr %.6g  %s img/s  ETA %s", done,
                   plan.total_steps, mean_loss, lr,
                   "-" if rate is None else f"{rate:.1f}", _eta(eta))
    scalars = dict(loss=mean_loss, lr=lr)
    if rate is not None:
      scalars["images_per_second"] = rate
    self._summary("train", done, **scalars)
    self._losses, self._window = [], [0, 0.0]
    self._estimate(done)

  def _show_live(self, done, lr):
    plan = self.plan
    mean_loss = sum(self._losses) / len(self._losses)
    rate = self.rate()
    eta = None if rate is None else (plan.total_steps - done) * plan.batch_size / rate
    line = (f"step {done}/{plan.total_steps}  loss {mean_loss:.4f}  lr {lr:.4g}  "
            f"{'-' if rate is None else f'{rate:.1f}'} img/s  ETA {_eta(eta)}")
    sys.stderr.write("\r" + line + "\033[K")
    if done == plan.total_steps:
      sys.stderr.write("\n")
    sys.stderr.flush()
    self._live_shown = done != plan.total_steps

  def end_live_line(self):
    """Ends the live line so that the next line starts on its own."""
    if self._live_shown:
      sys.stderr.write("\n")
      sys.stderr.flush()
      self._live_shown = False

  def _estimate(self, done):
    """Once, after the first steady steps of a plan with many epochs: how long the
    whole plan takes at their pace."""
    rate = self.rate()
    if (self._estimated or rate is None or self._steady[0] < 2
        or self.plan.epochs < hyperrule.MANY_EPOCHS or not self.chief):
      return
    self._estimated = True
    self.end_live_line()
    total = self.plan.total_steps * self.plan.batch_size / rate
    logging.warning("the plan's %d steps take ~%s at %.1f img/s (the pace of the steps "
                    "timed so far; %s left).", self.plan.total_steps, _eta(total), rate,
                    _eta((self.plan.total_steps - done) * self.plan.batch_size / rate))

  def evaluation(self, step, results):
    """Reports the evaluations at `step` (Trainer.evaluate's results) as one line
    each; returns them. The time they took is not counted in img/s or the ETA."""
    self.end_live_line()
    main, *others = results
    metrics = main.metrics
    logging.info("Eval at step %d/%d: top-1 %.4f  top-5 %.4f  loss %.4f  (%d images)",
                 step, self.plan.total_steps, metrics.top1, metrics.top5, metrics.loss,
                 metrics.count)
    for result in others:
      logging.info("Eval at step %d/%d: %s", step, self.plan.total_steps, result.line)
    self._summary("eval", step,
                  **{k: v for result in others for k, v in result.scalars.items()},
                  **main.scalars)
    self._last = time.perf_counter()
    return results


def purge_events(directory, last_step):
  """Rewrites the TensorBoard event files in `directory` without the events of
  steps after `last_step` (what a resumed run trains again)."""
  if not tf.io.gfile.isdir(directory):
    return
  from tensorboard.compat.proto import event_pb2  # pylint: disable=g-import-not-at-top
  for name in sorted(tf.io.gfile.listdir(directory)):
    if "tfevents" not in name or name.endswith(".tmp"):
      continue
    path = os.path.join(directory, name)
    records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    kept = [r for r in records if event_pb2.Event.FromString(r).step <= last_step]
    if len(kept) == len(records):
      continue
    tmp = path + ".tmp"
    with files.removed_on_failure(tmp):
      with tf.io.TFRecordWriter(tmp) as writer:
        for record in kept:
          writer.write(record)
      tf.io.gfile.rename(tmp, path, overwrite=True)


def _eta(seconds):
  if seconds is None:
    return "-"
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


def plot_curves(history, png_path, num_classes):
  """W/curves.png: the report's curves (report.curves_png) of the run's history."""
  png = report.curves_png(history.read(), num_classes)
  if png is None:
    return
  tmp = png_path + ".tmp.png"
  with files.removed_on_failure(tmp), files.writing(png_path):
    with tf.io.gfile.GFile(tmp, "wb") as f:
      f.write(png)
    tf.io.gfile.rename(tmp, png_path, overwrite=True)
