"""How long a command takes to answer: --help and a config mistake, beside a bare
`import tensorflow` in the same run.

  .venv/bin/python benchmarks/bench_cli.py [--repeats 5]

Each case is a fresh process (as a user's command is), run `--repeats` times in turn
with the others; prints the median and range of the wall time, and the median as a
share of the bare TensorFlow import's. `bit-train` is the console script
(bit_train.cli.train); `python -m bit_train.train` imports the entry module first.
A mistake in a --config.<field> flag is found by config_flags, after the entry
module's imports. The experiments runner's emission and dry runs plan every run of a
suite (the miniature suite writes its 1,797 images to a scratch folder first). Not a
test.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def console_script(name, *args):
  """The command line of console script `name` (bit-train: bit_train.cli.train)."""
  function = {"bit-train": "train", "bit-eval": "evaluate", "bit-predict": "predict"}[name]
  return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; "
          f"from bit_train import cli; cli.{function}()", *args]


def experiments(*args):
  return [sys.executable, "-m", "experiments.run", *args]


def cases(workdir):
  mistake = ["--config", "transfer:batchsize=64", "--workdir", workdir, "--dry_run"]
  unknown_model = ["--config", "transfer:dataset=cifar10,model=BiT-M-R50", "--workdir",
                   workdir]
  root = ["--root", os.path.join(workdir, "experiments")]
  flag_mistake = ["--config", "transfer", "--config.batchsize=64", "--workdir", workdir]
  return {
      "python -c 'import tensorflow'": ([sys.executable, "-c", "import tensorflow"], 0),
      "bit-train --help": (console_script("bit-train", "--help"), 0),
      "bit-eval --help": (console_script("bit-eval", "--help"), 0),
      "bit-predict --help": (console_script("bit-predict", "--help"), 0),
      "python -m bit_train.train --help": (
          [sys.executable, "-m", "bit_train.train", "--help"], 0),
      "bit-train --config transfer:batchsize=64": (
          console_script("bit-train", *mistake), 2),
      "python -m bit_train.train, the same typo": (
          [sys.executable, "-m", "bit_train.train", *mistake], 2),
      "bit-train --config.batchsize=64": (console_script("bit-train", *flag_mistake), 2),
      "bit-train --config transfer:model=BiT-M-R50": (
          console_script("bit-train", *unknown_model), 2),
      "experiments.run vtab --emit": (experiments("vtab", *root, "--emit"), 0),
      "experiments.run standard --dry_run": (experiments("standard", *root, "--dry_run"), 0),
      "experiments.run vtab --dry_run": (experiments("vtab", *root, "--dry_run"), 0),
      "experiments.run miniature --dry_run": (
          experiments("miniature", *root, "--dry_run"), 0),
  }


def wall_time(command, expected_code):
  start = time.perf_counter()
  result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
  elapsed = time.perf_counter() - start
  if result.returncode != expected_code:
    sys.exit(f"{command} exited {result.returncode}, not {expected_code}:\n"
             f"{result.stderr[-2000:]}")
  return elapsed


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()
  with tempfile.TemporaryDirectory() as workdir:
    commands = cases(os.path.join(workdir, "w"))
    times = {name: [] for name in commands}
    for _ in range(args.repeats):  # in turn, so that load changes hit every case
      for name, (command, code) in commands.items():
        times[name].append(wall_time(command, code))
  baseline = statistics.median(times["python -c 'import tensorflow'"])
  print(f"{'command':44s} {'median s':>9s} {'min-max s':>12s} {'/ import tf':>12s}")
  for name, seconds in times.items():
    median = statistics.median(seconds)
    print(f"{name:44s} {median:9.2f} {min(seconds):5.2f}-{max(seconds):<6.2f} "
          f"{median / baseline:12.2f}")


if __name__ == "__main__":
  main()
