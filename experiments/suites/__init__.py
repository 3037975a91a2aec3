"""The suites: each a list of runs built from a config file and its settings.

A suite is named here (SUITES) or given to the runner as a Python file that
defines `SUITE = Suite(...)` (see docs/extending.md, "Add an experiment").

  standard   BiT-S/BiT-M x 6 architectures on CIFAR-10/100, Pets, Flowers, ILSVRC-2012,
             3 seeds
  fewshot    the same, 1/5/10/25 examples per class (ILSVRC-2012: 1 and 5, BiT-M),
             5 seeds
  vtab       VTAB-1k: 19 tasks, 1,000 examples each, the task_adaptation splits and
             labels, 3 seeds
  miniature  transfer vs scratch vs linear probe on the bundled digits (runs here)
"""

import dataclasses
import importlib.util
import sys
import traceback
from typing import Callable

from bit_train import reading
from bit_train.errors import UserError

from experiments.suites import miniature
from experiments.suites import paper
from experiments.suites import vtab


@dataclasses.dataclass(frozen=True)
class Suite:
  name: str
  about: str
  build: Callable  # root -> [Run]
  prepare: Callable = None  # root -> None: writes data the runs read (miniature)
  table: str = "references"  # collect: "references" (beside the paper) | "variants"


SUITES = {s.name: s for s in (
    Suite("standard", "full-data transfer, median of 3 seeds (paper Table 2: BiT-S and "
          "BiT-M R152x4; authors' README re-runs)", lambda root: paper.standard_runs()),
    Suite("fewshot", "1/5/10/25 examples per class (paper Fig. 6: 1 and 5 examples on "
          "ILSVRC-2012 and CIFAR-10; authors' README re-runs)",
          lambda root: paper.fewshot_runs()),
    Suite("vtab", "VTAB-1k, 19 tasks of 1,000 examples, median of 3 seeds (paper "
          "Table 2: the mean; Fig. 3: per task; authors' README re-runs)",
          lambda root: vtab.runs()),
    Suite("miniature", "transfer vs scratch vs linear probe on the bundled digits",
          miniature.runs, prepare=miniature.prepare, table="variants"),
)}


def find(name):
  """The suite called `name`, or the SUITE defined in the Python file `name`."""
  if name in SUITES:
    return SUITES[name]
  if name.endswith(".py"):  # a file: missing, unreadable, undecodable is one line
    reading.read_source(name, "suite file")
    spec = importlib.util.spec_from_file_location("_suite_file", name)
    module = importlib.util.module_from_spec(spec)
    try:
      spec.loader.exec_module(module)
    except SyntaxError as e:  # Python's file, line and caret only, as for a config file
      print("".join(traceback.format_exception_only(e)).rstrip(), file=sys.stderr)
      raise UserError(f"syntax error in {e.filename}, line {e.lineno} (shown above), "
                      "while loading the suite: fix it.") from None
    if not isinstance(getattr(module, "SUITE", None), Suite):
      raise UserError(f"{name} defines no SUITE = experiments.suites.Suite(...): add it.")
    return module.SUITE
  raise UserError(f"unknown suite {name!r}: use one of {', '.join(SUITES)} or the path "
                  "of a .py file that defines SUITE.")
