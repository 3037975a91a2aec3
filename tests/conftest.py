"""Shared test helpers: run an entry point the way a user does."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_module(module, *args, env=None, timeout=600):
  """Runs `python -m module args...` from the repo root; returns the result."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, env=full_env,
                        timeout=timeout)


def error_lines(stderr):
  """Our `error:` lines, without TensorFlow's start-up chatter."""
  return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def cli():
  return run_module
