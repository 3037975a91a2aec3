"""`make benchmarks` entry: runs bench_models.py (marked benchmark, not in `make test`)."""

import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.benchmark
def test_native_resnetv2_throughput_against_the_keras_baseline():
  result = subprocess.run([sys.executable, os.path.join(HERE, "bench_models.py")],
                          cwd=os.path.dirname(HERE), capture_output=True, text=True)
  print(result.stdout)
  assert result.returncode == 0, result.stderr[-2000:]
