"""One run of a suite: its settings, its workdir under the root, its command, its state.

A run is one `python -m bit_train.train --config FILE:ARGS --workdir W` (or another
program with the same two flags that writes W/metrics.json). The runner and the
emitted scripts execute exactly `Run.command`; collect reads W/metrics.json. A run is
finished when its metrics.json exists; a failed run leaves R/logs/<name>.failed.json
saying why.
"""

import dataclasses
import json
import os
import shlex

from bit_train import workdir as wd

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


def write_json(path, record):
  """Writes a small JSON file whole or not at all (no TensorFlow: the runner stays
  light; the runs import it themselves)."""
  with open(path + ".tmp", "w") as f:
    json.dump(record, f, indent=1)
  os.replace(path + ".tmp", path)


def _read_json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def metrics(root, run):
  """The run's metrics.json as a dict, or None when it has not finished."""
  return _read_json(wd.path(run.workdir(root), wd.METRICS))


def plan_record(root, run):
  """The trainer's plan.json of the run (config and HyperRule plan), or None."""
  return _read_json(wd.path(run.workdir(root), wd.PLAN))


def failure(root, run):
  """Why the run's last attempt failed, or None."""
  return _read_json(log_path(root, run, ".failed.json"))


def add_seconds(root, run, seconds):
  """Adds one attempt's wall time to R/logs/<suite>/<name>.time (a resumed run has
  several attempts)."""
  path = log_path(root, run, ".time")
  with open(path, "a") as f:
    f.write(f"{seconds:.1f}\n")


def seconds(root, run):
  """The run's wall time summed over the attempts the runner made, or None."""
  try:
    with open(log_path(root, run, ".time")) as f:
      return sum(float(line) for line in f if line.strip())
  except FileNotFoundError:
    return None


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
  os.makedirs(root, exist_ok=True)
  write_json(os.path.join(root, PLANNED),
             {"suites": suites, "runs": [r.settings() for r in planned.values()]})


def load_planned(root):
  """({suite: {about, table}}, {"suite/name": Run}) planned under R so far."""
  record = _read_json(os.path.join(root, PLANNED))
  if record is None:
    return {}, {}
  runs = [Run(**dict(r, flags=tuple(r["flags"]))) for r in record["runs"]]
  return record["suites"], {f"{r.suite}/{r.name}": r for r in runs}
