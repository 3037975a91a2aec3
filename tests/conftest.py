"""The fixtures every test file may use; the helpers are in helpers.py."""

import pytest

from bit_train.data.patterns import write_pattern_folder

from helpers import run_module


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  """The TINY runs' image folder: 12 pattern images per class (bit_train.data.patterns)."""
  return write_pattern_folder(tmp_path_factory.mktemp("patterns"), per_class=12)


@pytest.fixture
def cli():
  return run_module
