"""A suite's runs as commands for a scheduler: one line each, and a Slurm job array.

  R/SUITE/commands.txt   one shell line per run (cd to the repository first)
  R/SUITE/slurm.sh       `sbatch R/SUITE/slurm.sh`: array task i runs line i+1

Blocked runs (bit_train cannot run them yet) are left out of both and listed as
comments at the end of commands.txt with the reason. Each line first checks for
the run's metrics.json (a finished run exits at once); a task started again resumes
its workdir from the last checkpoint (the trainer does that).
"""

import os
import shlex

from bit_train import workdir as wd
from experiments import runs as runs_lib


def command_line(root, run, python):
  """The run's command, skipped when its metrics.json is already there."""
  metrics = wd.path(run.workdir(root), wd.METRICS)
  return f"test -f {shlex.quote(metrics)} || {run.command(root, python)}"


def slurm_script(suite, count, commands, repo, options):
  lines = ["#!/bin/bash",
           f"#SBATCH --job-name=bit-{suite}",
           f"#SBATCH --array=0-{count - 1}",
           f"#SBATCH --output={os.path.join(os.path.dirname(commands), 'slurm-%A_%a.log')}",
           *[f"#SBATCH {option}" for option in options],
           "# One array task per run: task i runs line i+1 of commands.txt.",
           "set -euo pipefail",
           f"cd {shlex.quote(repo)}",
           f'line=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {shlex.quote(commands)})',
           'echo "$line"',
           'exec bash -c "$line"']
  return "\n".join(lines) + "\n"


def write(root, suite, runs, python="python", options=()):
  """Writes commands.txt and slurm.sh for the runnable runs; returns their paths."""
  runnable = [r for r in runs if not r.blocked]
  blocked = [r for r in runs if r.blocked]
  folder = os.path.join(root, suite)
  os.makedirs(folder, exist_ok=True)
  commands = os.path.join(folder, "commands.txt")
  with open(commands, "w") as f:
    for run in runnable:
      f.write(command_line(root, run, python) + "\n")
  paths = [commands]
  if blocked:
    with open(commands, "a") as f:
      for run in blocked:
        f.write(f"# blocked {run.name}: {run.blocked}\n")
  if runnable:
    script = os.path.join(folder, "slurm.sh")
    with open(script, "w") as f:
      f.write(slurm_script(suite, len(runnable), commands, runs_lib.REPO, options))
    os.chmod(script, 0o755)
    paths.append(script)
  return paths
