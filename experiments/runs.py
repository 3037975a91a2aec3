"""One run of a suite: its settings, its workdir under the root, its command, its state.

A run is one `python -m bit_train.train --config FILE:ARGS --workdir W` (or another
program with the same two flags that writes W/metrics.json). The runner and the
emitted scripts execute exactly `Run.command`; collect reads W/metrics.json. A run is
finished when its metrics.json exists; a failed run leaves R/logs/<name>.failed.json
saying why.
"""

import contextlib
import dataclasses
import errno
import json
import math
import os
import shlex

from bit_train import reading
from bit_train import workdir as wd
from bit_train.errors import UserError

TRAINER = "bit_train.train"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLANNED = "runs.json"  # R/runs.json: every run planned under R, for collect
LOGS = "logs"  # R/logs/<name>.log, R/logs/<name>.failed.json


@dataclasses.dataclass(frozen=True)
class Run:
  suite: str
  dataset: str  # a short label (TFDS name, VTAB task, "digits")
  model: str
  shots: str  # "full", the examples per class as text, or "vtab1k" (VTAB-1k's 1,000)
  seed: int  # the run's seed and its few-shot seed
  config: str  # config file and its arguments: "transfer:key=val,..."
  variant: str = ""  # what else tells runs apart in a table (miniature: transfer/...)
  program: str = TRAINER  # the module run with --config and --workdir
  blocked: str = ""  # why bit_train cannot run this yet ("" when it can)
  flags: tuple = ()  # --config.<field>=<value> from the command line (scaling, strategy)
  note: str = ""  # what a reader of its row must know (collect prints it)

  @property
  def name(self):
    """The workdir's name: its settings, readable and unique within a suite."""
    shots = f"{self.shots}shot" if self.shots.isdigit() else self.shots
    parts = [self.dataset, self.model, self.variant, shots, f"seed{self.seed}"]
    return "__".join(p for p in parts if p)

  def workdir(self, root):
    return os.path.join(root, self.suite, self.name)

  def arguments(self, root):
    """What follows `python -m PROGRAM`."""
    return ["--config", self.config, "--workdir", self.workdir(root), *self.flags]

  def command(self, root, python="python"):
    """The shell line that runs it from the repository root."""
    return " ".join(shlex.quote(a) for a in
                    [python, "-m", self.program, *self.arguments(root)])

  def with_flags(self, flags):
    return dataclasses.replace(self, flags=tuple(flags))

  def settings(self):
    return dataclasses.asdict(self)


def log_path(root, run, suffix=".log"):
  return os.path.join(root, LOGS, run.suite, run.name + suffix)


@contextlib.contextmanager
def writing(path, what="file"):
  """Inside: the OS refusing to write `path` (read-only, full, a file where a folder
  should be) is one UserError line (bit_train.files.writing without TensorFlow: the
  runner stays light; the runs import it themselves)."""
  try:
    yield
  except OSError as e:
    where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    raise UserError(f"cannot write the {what} {path}: {e.strerror or e}{where}: make "
                    "it writable or choose another path.") from None


def make_dirs(path, what="folder"):
  with writing(path, what):
    if os.path.exists(path) and not os.path.isdir(path):
      raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
    os.makedirs(path, exist_ok=True)
    if not os.access(path, os.W_OK):  # root included: access() sees read-only mounts
      code = errno.EROFS if os.statvfs(path).f_flag & os.ST_RDONLY else errno.EACCES
      raise OSError(code, os.strerror(code), path)


def write_json(path, record):
  """Writes a small JSON file whole or not at all."""
  with writing(path):
    with open(path + ".tmp", "w") as f:
      json.dump(record, f, indent=1)
    os.replace(path + ".tmp", path)


# The shapes of the files collect and the runner read; anything else is one line.
METRICS_SHAPE = reading.Record(required={"top1": float}, optional={
    "top5": float, "evals": reading.MapOf(reading.Record(required={"top1": float})),
    "provenance": reading.Record(optional={"packages": dict})})
PLAN_SHAPE = reading.Record(required={"plan": reading.Record(
    required={"batch_size": int, "base_lr": float})}, optional={"config": dict})
FAILED_SHAPE = reading.Record(required={"why": str}, optional={"returncode": int,
                                                               "log": str})
PLANNED_SHAPE = reading.Record(
    required={"suites": reading.MapOf(reading.Record(required={"about": str,
                                                                "table": str})),
              "runs": reading.ListOf(reading.Record(
        required={"suite": str, "dataset": str, "model": str, "shots": str, "seed": int,
                  "config": str},
        optional={"variant": str, "program": str, "blocked": str,
                  "flags": reading.ListOf(str), "note": str}))})


def metrics(root, run):
  """The run's metrics.json as a dict, or None when it has not finished. Its top-1
  and top-5 must be shares (a hand-edited 1.7 was collected as 170 %)."""
  path = wd.path(run.workdir(root), wd.METRICS)
  fix = "delete it and run the suite again to redo the run"
  found = reading.read_json_if_exists(path, "metrics file", METRICS_SHAPE, fix)
  if found is None:
    return None
  shares = {"top1": found["top1"], "top5": found.get("top5"),
            **{f"evals.{k}.top1": r["top1"] for k, r in found.get("evals", {}).items()}}
  for name, value in shares.items():
    if value is not None and not 0 <= value <= 1:
      raise UserError(f"cannot read the metrics file {path}: its field {name!r} is "
                      f"{value}, not a share between 0 and 1: {fix}.")
  return found


def plan_record(root, run):
  """The trainer's plan.json of the run (config and HyperRule plan), or None."""
  return reading.read_json_if_exists(
      wd.path(run.workdir(root), wd.PLAN), "run record", PLAN_SHAPE,
      "delete the run's workdir and run the suite again to redo it")


def failure(root, run):
  """Why the run's last attempt failed, or None."""
  return reading.read_json_if_exists(
      log_path(root, run, ".failed.json"), "failure record", FAILED_SHAPE,
      "delete it (the runner writes it again if the run fails again)")


def add_seconds(root, run, seconds):
  """Adds one attempt's wall time to R/logs/<suite>/<name>.time (a resumed run has
  several attempts)."""
  path = log_path(root, run, ".time")
  with writing(path), open(path, "a") as f:
    f.write(f"{seconds:.1f}\n")


def seconds(root, run):
  """The run's wall time summed over the attempts the runner made, or None."""
  path = log_path(root, run, ".time")
  if not os.path.exists(path):
    return None
  try:
    found = [float(line) for line in reading.read_lines(path, "run time log") if line]
  except ValueError:
    found = [math.nan]
  if not all(0 <= s < math.inf for s in found):  # NaN too
    raise UserError(f"cannot read the run time log {path}: a line is not seconds: "
                    "delete it (collect then leaves the time out).")
  return sum(found)


def config_arg(**fields):
  """`key=val,...` for the part after `file.py:`; None values are left out, tuples
  are written with / (commas separate fields)."""
  def text(value):
    if isinstance(value, (tuple, list)):
      return "/".join(str(v) for v in value)
    return str(value)
  return ",".join(f"{k}={text(v)}" for k, v in fields.items() if v is not None)


def record_planned(root, suite, runs):
  """Adds the runs to R/runs.json, collect's list of what should exist under R, with
  the suite's description and table kind."""
  suites, planned = load_planned(root)
  suites[suite.name] = {"about": suite.about, "table": suite.table}
  for run in runs:
    planned[f"{run.suite}/{run.name}"] = run
  make_dirs(root, "root")
  write_json(os.path.join(root, PLANNED),
             {"suites": suites, "runs": [r.settings() for r in planned.values()]})


def load_planned(root):
  """({suite: {about, table}}, {"suite/name": Run}) planned under R so far."""
  path = os.path.join(root, PLANNED)
  fix = "delete it and run the suites again (finished runs are skipped)"
  record = reading.read_json_if_exists(path, "list of planned runs", PLANNED_SHAPE, fix)
  if record is None:
    return {}, {}
  lost = sorted({r["suite"] for r in record["runs"]} - set(record["suites"]))
  if lost:
    raise UserError(f"cannot read the list of planned runs {path}: runs of suite "
                    f"{lost[0]!r} but no such suite: {fix}.")
  fields = {f.name for f in dataclasses.fields(Run)}
  unknown = sorted({k for r in record["runs"] for k in r} - fields)
  if unknown:
    raise UserError(f"cannot read the list of planned runs {path}: its runs have "
                    f"fields a run does not ({', '.join(map(repr, unknown[:3]))}): {fix}.")
  runs = [Run(**dict(r, flags=tuple(r.get("flags") or ()))) for r in record["runs"]]
  return record["suites"], {f"{r.suite}/{r.name}": r for r in runs}
