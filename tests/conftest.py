"""Shared test helpers: run an entry point the way a user does."""

import os
import subprocess
import sys
import types

from absl import flags
import pytest

from pattern_images import write_pattern_folder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module, *args, env=None, timeout=600):
  """Runs `python -m module args...` from the repo root; returns the result."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, env=full_env,
                        timeout=timeout)


def run_here(entry_point, *args, capsys):
  """An entry point's `run()` (e.g. bit_train.train.run) in this process, as
  `python -m` would run it (absl's app.run, flag parsing, one-line errors), without
  a TensorFlow start-up: its returncode, stdout and stderr, as run_module gives them.
  For tests whose point is what a run decides or prints; a real process is for exit
  codes, signals and tracebacks. (Not bit_train.eval: its flags clash with
  bit_train.train's in one process.)"""
  argv, defined = sys.argv, set(flags.FLAGS)
  sys.argv = [entry_point.__module__, *map(str, args)]
  flags.FLAGS.unparse_flags()
  try:
    entry_point()
    code = 0
  except SystemExit as e:
    code = 0 if e.code is None else e.code
  finally:
    sys.argv = argv
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - defined:  # --config.<field>: defined per parse
      delattr(flags.FLAGS, name)
  out, err = capsys.readouterr()
  return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


def error_lines(stderr):
  """Our `error:` lines, without TensorFlow's start-up chatter."""
  return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """The TINY runs' image folder: 12 pattern images per class (pattern_images)."""
  return write_pattern_folder(tmp_path_factory.mktemp("patterns"), per_class=12)


@pytest.fixture
def cli():
  return run_module
