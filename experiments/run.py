"""Plan a suite's runs, then run them here one after another, or emit their commands.

  python -m experiments.run SUITE --root R [--models A,B] [--datasets D] [--shots 1,5]
      [--seeds 0,1] [--variants V] [--batch_size 128 --base_lr 0.001 --lr_scaling none]
      [--batch_split 4] [--set FIELD=VALUE ...] [--dry_run | --emit [--throttle N]]

Every run gets a workdir under R/SUITE named from its settings. Run here (the
default), a finished run (its metrics.json exists) is skipped and an unfinished one
is started again, which resumes from its last checkpoint (the trainer does that). A
finished run whose saved plan.json differs from the plan it would get now (other
scaling flags, say) is named as different and not run: use another --root for the
new setting. `--emit` writes a new folder R/SUITE/emitted/<time>/ holding
commands.txt (one command per line, for any scheduler, calling this interpreter
or --python's, an executable here) and slurm.sh (a Slurm job array over that file;
--throttle N: at most N tasks at once). `--dry_run` prints each run's HyperRule plan and the suite's total step
budget, and writes nothing. Planning, --dry_run and --emit import no TensorFlow.

Scaling for a smaller accelerator, recorded in every run's plan.json: --batch_split N
keeps the recipe (batch 512) in N micro-batches; --batch_size B scales the learning
rate linearly (lr_scaling=linear), or set both as the authors' README did on 8 GPUs
(--batch_size 128 --base_lr 0.001 --lr_scaling none). Multi-host runs pass the
trainer's own strategies through: --set strategy=multi_worker, --set strategy=tpu.
"""

import argparse
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from bit_train import console

console.quiet_native_logs(script=__name__ == "__main__")  # before TensorFlow is imported

from bit_train import cli  # pylint: disable=wrong-import-position
from bit_train import workdir as wd  # pylint: disable=wrong-import-position
from bit_train.errors import Interrupted  # pylint: disable=wrong-import-position
from bit_train.errors import UserError  # pylint: disable=wrong-import-position
from experiments import emit  # pylint: disable=wrong-import-position
from experiments import plans  # pylint: disable=wrong-import-position
from experiments import runs as runs_lib  # pylint: disable=wrong-import-position
from experiments import suites  # pylint: disable=wrong-import-position

SCALING = ("batch_size", "batch_split", "base_lr", "lr_scaling")
STOP_GRACE = 120  # seconds a stopped run gets to save its checkpoint and end
FILTERS = {"models": "model", "datasets": "dataset", "shots": "shots",
           "variants": "variant"}  # flag -> Run field


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog="python -m experiments.run", description=__doc__.splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog="\n".join(__doc__.splitlines()[2:]))
  parser.add_argument("suite", help=", ".join(suites.SUITES) + ", or a .py file "
                      "defining SUITE")
  parser.add_argument("--root", required=True, help="directory of the runs' workdirs")
  for name in FILTERS:
    parser.add_argument(f"--{name}", help=f"comma-separated {name} to keep")
  parser.add_argument("--seeds", help="comma-separated seeds, replacing the suite's")
  parser.add_argument("--batch_size", type=int)
  parser.add_argument("--batch_split", type=int)
  parser.add_argument("--base_lr", type=float)
  parser.add_argument("--lr_scaling", choices=("linear", "none"))
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="any config field for every run, e.g. strategy=multi_worker")
  mode = parser.add_mutually_exclusive_group()
  mode.add_argument("--dry_run", action="store_true", help="print the plans and exit")
  mode.add_argument("--emit", action="store_true",
                    help="write commands.txt and slurm.sh instead of running")
  parser.add_argument("--sbatch", action="append", default=[], metavar="OPTION",
                      help="an #SBATCH line for slurm.sh, e.g. --sbatch=--gres=gpu:8")
  parser.add_argument("--throttle", type=int, metavar="N",
                      help="--emit: at most N array tasks at once (Slurm's %%N)")
  parser.add_argument("--python",
                      help="--emit: the interpreter the emitted commands call, a path or "
                      "a command on PATH (default: this one)")
  return parser.parse_args(argv)


def _keep(values, wanted, what, suite):
  """Filters by a comma-separated list; an unknown value is a UserError."""
  if wanted is None:
    return lambda value: True
  chosen = [w.strip() for w in wanted.split(",") if w.strip()]
  unknown = sorted(set(chosen) - set(values))
  if unknown:
    raise UserError(f"--{what} {','.join(unknown)}: not in suite {suite}; it has "
                    f"{', '.join(sorted(set(values), key=str))}.")
  return lambda value: value in chosen


def select(suite, runs, args):
  """The suite's runs narrowed by the filters, with --seeds replacing its seeds."""
  for key, field in FILTERS.items():
    keep = _keep([getattr(r, field) for r in runs], getattr(args, key), key, suite)
    runs = [r for r in runs if keep(getattr(r, field))]
  if args.seeds is not None:
    try:
      seeds = sorted({int(s) for s in args.seeds.split(",") if s.strip()})
    except ValueError:
      raise UserError(f"--seeds {args.seeds}: give seeds as numbers, e.g. 0,1,2.") from None
    if not seeds or min(seeds) < 0:
      raise UserError(f"--seeds {args.seeds}: give one or more seeds >= 0.")
    first = min(r.seed for r in runs) if runs else 0
    runs = [_reseed(r, s) for r in runs if r.seed == first for s in seeds]
  if not runs:
    raise UserError(f"the filters leave no run of suite {suite}: widen them.")
  return runs


def _reseed(run, seed):
  """The run with another seed: its seed and few_shot_seed fields both follow."""
  config = re.sub(r"\b(few_shot_seed|seed)=\d+\b", lambda m: f"{m.group(1)}={seed}",
                  run.config)
  return dataclasses.replace(run, seed=seed, config=config)


def config_flags(args):
  """`--config.field=value` for every run: scaling and pass-through settings."""
  flags = [f"--config.{k}={getattr(args, k)}" for k in SCALING
           if getattr(args, k) is not None]
  for item in args.set:
    field, has_value, value = item.partition("=")
    if not has_value or not field:
      raise UserError(f"--set {item}: write it as FIELD=VALUE, e.g. strategy=tpu.")
    flags.append(f"--config.{field}={value}")
  return flags


def dry_run(runs):
  """Prints every run's plan, one line each, and the suite's total steps."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR)  # TFDS's notes on empty local folders
  steps = {"runnable": 0, "blocked": 0}
  images = 0
  print(f"{'run':<58} {'n':>9} {'res':>8} {'mixup':>5} {'steps':>6} {'batch':>5} "
        f"{'split':>5} {'lr':>8}")
  for run in runs:
    try:
      facts, plan = plans.hyperrule_plan(run)
    except UserError as e:
      raise UserError(f"{run.suite}/{run.name}: {e}") from None
    if plan is None:
      print(f"{run.name:<58} {run.program}: no training steps")
      continue
    steps["blocked" if run.blocked else "runnable"] += plan.total_steps
    images += 0 if run.blocked else plan.total_steps * plan.batch_size
    note = f"  BLOCKED: {run.blocked}" if run.blocked else ""
    print(f"{run.name:<58} {facts.num_examples:>9,} {plan.precrop:>4}/{plan.crop:<3} "
          f"{plan.mixup_alpha:>5g} {plan.total_steps:>6,} {plan.batch_size:>5} "
          f"{plan.batch_split:>5} {plan.base_lr:>8.3g}{note}")
  blocked = sum(1 for r in runs if r.blocked)
  print(f"\n{len(runs)} runs: {len(runs) - blocked} runnable, {steps['runnable']:,} steps "
        f"in total ({images:,} images)" + (
            f"; {blocked} blocked ({steps['blocked']:,} steps), each saying why on "
            "its line" if blocked else "") + ".")
  return steps["runnable"]


def differences(root, runs):
  """[(run, why)] of the finished runs whose saved plan differs from their plan now."""
  found = []
  for run in runs:
    if not run.blocked and runs_lib.metrics(root, run) is not None:
      changed = plans.plan_difference(root, run)
      if changed:
        found.append((run, "finished with a different plan (" + ", ".join(changed) +
                      "): use another --root for the new setting"))
  return found


def run_here(root, runs):
  """Runs each unfinished run in turn; a failure is logged and the next run starts.
  Returns (failed, different) runs."""
  failed, different = [], dict(differences(root, runs))
  for index, run in enumerate(runs, 1):
    where = f"[{index}/{len(runs)}] {run.suite}/{run.name}"
    if run.blocked:
      print(f"{where}: skipped, cannot run yet: {run.blocked}", flush=True)
      continue
    if run in different:
      print(f"{where}: DIFFERENT, not run: {different[run]}", flush=True)
      continue
    if runs_lib.metrics(root, run) is not None:
      print(f"{where}: finished, skipped", flush=True)
      continue
    resuming = os.path.isdir(wd.path(run.workdir(root), wd.CHECKPOINTS))
    print(f"{where}: {'resuming' if resuming else 'starting'}", flush=True)
    log = runs_lib.log_path(root, run)
    runs_lib.make_dirs(os.path.dirname(log), "log folder")
    start = time.time()
    with runs_lib.writing(log, "run log"), open(log, "a") as out:
      out.write(f"$ {run.command(root, sys.executable)}\n")
      out.flush()
      returncode = run_child([sys.executable, "-m", run.program, *run.arguments(root)],
                             out)
    failed_path = runs_lib.log_path(root, run, ".failed.json")
    seconds = time.time() - start
    runs_lib.add_seconds(root, run, seconds)
    if returncode == 0 and runs_lib.metrics(root, run) is not None:
      if os.path.exists(failed_path):
        os.remove(failed_path)
      top1 = runs_lib.metrics(root, run)["top1"]
      print(f"{where}: top-1 {100 * top1:.1f}% in {seconds:.0f} s", flush=True)
      continue
    if returncode == cli.EXIT_INTERRUPTED:
      raise KeyboardInterrupt
    why = last_error(log)
    runs_lib.write_json(failed_path, {"returncode": returncode, "why": why,
                                      "log": log})
    print(f"{where}: FAILED ({why}); log {log}", flush=True)
    failed.append(run)
  return failed, list(different)


class Terminated(Interrupted):
  """SIGTERM reached the runner (a scheduler ending the job)."""

  def __init__(self):
    super().__init__("terminated (SIGTERM): the run in progress was stopped and "
                     "waited for; run the same command again to resume.",
                     cli.EXIT_TERMINATED)


def _raise_terminated(signum, frame):
  del signum, frame
  raise Terminated


def run_child(argv, out):
  """Runs a run's program to its end; its return code. If the runner is stopped
  (Ctrl-C, SIGTERM) meanwhile, the child is stopped the same way and waited for
  (it saves a checkpoint on the way out), so nothing is left running."""
  child = subprocess.Popen(argv, cwd=runs_lib.REPO, stdout=out,
                           stderr=subprocess.STDOUT)
  try:
    return child.wait()
  except BaseException as e:
    stop_child(child, signal.SIGINT if isinstance(e, KeyboardInterrupt)
               else signal.SIGTERM)
    raise


def stop_child(child, how, grace=STOP_GRACE):
  """Stops a child still running and waits for it: SIGTERM is forwarded; Ctrl-C in
  a terminal reached the child already, so it is left to end on its own. After
  `grace` seconds to save and end, the child is killed."""
  while True:  # a second signal to the runner must not leave the child behind
    try:
      if child.poll() is None:
        if how != signal.SIGINT:
          child.send_signal(how)
        try:
          child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
          child.kill()
          child.wait()
      return
    except (KeyboardInterrupt, Terminated):
      continue


def last_error(log):
  """The `error:` line of a failed run's log, else its last line."""
  with open(log, errors="replace") as f:
    lines = [line.strip() for line in f if line.strip()]
  errors = [line for line in lines if line.startswith("error:")]
  return (errors or lines or ["no output"])[-1]


def emit_python(args):
  """The interpreter the emitted commands call: --python, which must be an
  executable here (a path, or a command on PATH), else this one."""
  if args.python is None:
    return sys.executable
  if not args.emit:
    raise UserError(f"--python {args.python}: give it with --emit (runs here call "
                    "this interpreter).")
  if shutil.which(args.python) is None:
    raise UserError(f"--python {args.python}: no such interpreter (neither an "
                    "executable file nor a command on PATH): give the Python the "
                    f"emitted commands should call, e.g. --python {sys.executable}.")
  return args.python


def main(argv=None):
  args = parse_args(argv)
  suite = suites.find(args.suite)
  root = os.path.abspath(args.root)
  flags = config_flags(args)
  if args.throttle is not None and (not args.emit or args.throttle < 1):
    raise UserError("--throttle N: give N >= 1, with --emit.")
  python = emit_python(args)
  for option in args.sbatch:  # a second line would be a shell command in slurm.sh
    if "\n" in option or "\r" in option:
      raise UserError(f"--sbatch {option!r}: give one #SBATCH option on one line per "
                      "--sbatch, e.g. --sbatch=--gres=gpu:8.")
  if os.path.exists(root) and not os.path.isdir(root):
    raise UserError(f"--root {args.root} is a file, not a folder: choose another --root.")
  if args.dry_run:
    with tempfile.TemporaryDirectory() as scratch:  # a dry run writes nothing under R
      if suite.prepare:
        suite.prepare(scratch)
      runs = [r.with_flags(flags) for r in select(suite.name, suite.build(scratch), args)]
      for run in runs:
        plans.check_loads(run)
      dry_run(runs)
    return
  runs_lib.make_dirs(root, "root")
  runs = [r.with_flags(flags) for r in select(suite.name, suite.build(root), args)]
  if suite.prepare:
    suite.prepare(root)
  for run in runs:
    plans.check_loads(run)
  runs_lib.record_planned(root, suite, runs)
  if args.emit:
    paths = emit.write(root, suite.name, runs, python, args.sbatch, args.throttle,
                       differences(root, runs))
    for path in paths:
      print(f"wrote {path}")
    return
  failed, different = run_here(root, runs)
  done = sum(runs_lib.metrics(root, r) is not None for r in runs)
  print(f"{done} of {len(runs)} runs finished; collect them with "
        f"`{console.command('python', '-m', 'experiments.collect', args.root)}`.")
  problems = ([f"{len(failed)} run(s) failed: see R/logs/*.failed.json"] if failed else []) + (
      [f"{len(different)} run(s) finished with a different plan: see the DIFFERENT lines"]
      if different else [])
  if problems:
    raise UserError("; ".join(problems) + ", fix, and run the same command again "
                    "(finished runs are skipped).")


if __name__ == "__main__":
  signal.signal(signal.SIGTERM, _raise_terminated)
  cli.guarded(main, again="run the same command again to resume.")
