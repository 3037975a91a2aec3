"""The fixtures every test file may use; the helpers are in helpers.py."""

import errno
import os

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


@pytest.fixture
def unreadable(monkeypatch):
  """unreadable(folder): makes the folder unreadable until the test ends. chmod 000
  for a user; as root, whom chmod does not stop, os.scandir and os.listdir raise the
  PermissionError the OS gives a user."""
  changed = []

  def make(folder):
    folder = os.path.abspath(os.fspath(folder))
    if os.geteuid() != 0:
      os.chmod(folder, 0)
      changed.append(folder)
      return
    for name in ("scandir", "listdir"):
      def refused(path=".", _original=getattr(os, name)):
        if os.path.abspath(os.fsdecode(path)) == folder:
          raise PermissionError(errno.EACCES, os.strerror(errno.EACCES),
                                os.fsdecode(path))
        return _original(path)
      monkeypatch.setattr(os, name, refused)

  yield make
  for folder in changed:
    os.chmod(folder, 0o755)
