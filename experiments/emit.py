"""A suite's runs as commands for a scheduler: one line each, and a Slurm job array.

Every emission writes a folder of its own, so array tasks already queued keep
reading the command file their script names:

  R/SUITE/emitted/<time>/commands.txt   one shell line per run (cd to the repository)
  R/SUITE/emitted/<time>/slurm.sh       `sbatch` it: array task i runs line i+1;
                                        its log R/SUITE/emitted/<time>/slurm-*.log

Runs left out are listed as comments at the end of commands.txt with the reason:
blocked runs (bit_train cannot run them yet) and finished runs whose saved plan
differs from the one they would run now. Each line first checks for the run's
metrics.json (a finished run exits at once); a task started again resumes its
workdir from the last checkpoint (the trainer does that). An array task whose line
is missing, empty or a comment fails (exit 2) instead of doing nothing.
"""

import os
import re
import shlex
import time

from bit_train import workdir as wd
from experiments import runs as runs_lib

FOLDER = "emitted"


def command_line(root, run, python):
  """The run's command, skipped when its metrics.json is already there."""
  metrics = wd.path(run.workdir(root), wd.METRICS)
  return f"test -f {shlex.quote(metrics)} || {run.command(root, python)}"


def sbatch_value(text):
  """`text` as one value on an #SBATCH line, in double quotes. sbatch splits those
  lines itself, not the shell: an unquoted space ends a value, an unquoted # starts
  a comment, a backslash escapes the next character (inside quotes too)."""
  return '"' + re.sub(r'(["\\])', r"\\\1", text) + '"'


def slurm_script(suite, count, commands, repo, options, throttle=None):
  """The job array over `commands`; `throttle` N runs at most N tasks at once."""
  limit = f"%{throttle}" if throttle else ""
  # In the log's name % starts Slurm's patterns (%A job, %a task): %% is a %.
  log = os.path.join(os.path.dirname(commands).replace("%", "%%"), "slurm-%A_%a.log")
  lines = ["#!/bin/bash",
           f"#SBATCH --job-name={sbatch_value(f'bit-{suite}')}",
           f"#SBATCH --array=0-{count - 1}{limit}",
           f"#SBATCH --output={sbatch_value(log)}",
           *[f"#SBATCH {option}" for option in options],
           f"# One array task per run: task i runs line i+1 of {commands}.",
           "set -euo pipefail",
           f"cd {shlex.quote(repo)}",
           f"commands={shlex.quote(commands)}",
           'task=$((${SLURM_ARRAY_TASK_ID:?run it as a Slurm array task} + 1))',
           'line=$(sed -n "${task}p" "$commands")',
           'if [ -z "${line// /}" ] || [ "${line:0:1}" = "#" ]; then',
           '  echo "error: line $task of $commands is missing, empty or a comment" >&2',
           "  exit 2",
           "fi",
           'echo "$line"',
           'exec bash -c "$line"']
  return "\n".join(lines) + "\n"


def new_folder(root, suite):
  """R/SUITE/emitted/<UTC time>[-n], made now, never one that exists."""
  base = os.path.join(root, suite, FOLDER, time.strftime("%Y%m%d-%H%M%S", time.gmtime()))
  folder, n = base, 1
  while True:
    try:
      os.makedirs(folder)
      return folder
    except FileExistsError:
      n += 1
      folder = f"{base}-{n}"


def write(root, suite, runs, python, options=(), throttle=None, left_out=()):
  """Writes commands.txt and slurm.sh of the runnable runs into a new folder;
  returns their paths. `left_out`: (run, why) pairs listed as comments."""
  left_out = [(r, f"blocked: {r.blocked}") for r in runs if r.blocked] + list(left_out)
  skipped = {id(r) for r, _ in left_out}
  runnable = [r for r in runs if id(r) not in skipped]
  folder = new_folder(root, suite)
  commands = os.path.join(folder, "commands.txt")
  with open(commands, "w") as f:
    for run in runnable:
      f.write(command_line(root, run, python) + "\n")
    for run, why in left_out:
      f.write(f"# left out {run.name}: {why}\n")
  paths = [commands]
  if runnable:
    script = os.path.join(folder, "slurm.sh")
    with open(script, "w") as f:
      f.write(slurm_script(suite, len(runnable), commands, runs_lib.REPO, options,
                           throttle))
    os.chmod(script, 0o755)
    paths.append(script)
  return paths
