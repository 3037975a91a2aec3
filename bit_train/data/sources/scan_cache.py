"""What the folder scan learned about each image file, kept in the workdir.

The scan decodes every image once to learn its shape and whether the streams can
read it. bit-train keeps those facts in W/scan_cache.json, keyed by the file's path,
size and modification time, so a resumed or repeated run decodes only the files
that are new or changed. A missing, unreadable or unwritable cache only costs the
decoding; it never stops a run.
"""

import contextlib
import json
import os

from bit_train import files
from bit_train.errors import UserError

FILE = "scan_cache.json"

_active = None  # the Cache of the run in progress (kept_in), else None


class Cache:
  """{path: [size, mtime_ns, [height, width] or None, reason or None]}."""

  def __init__(self, path):
    self.path, self.entries, self.changed = path, {}, False
    try:
      with open(path) as f:
        entries = json.load(f)
      if isinstance(entries, dict):
        self.entries = entries
    except (OSError, ValueError):
      pass

  @staticmethod
  def _stamp(path):
    stat = os.stat(path)
    return [stat.st_size, stat.st_mtime_ns]

  def known(self, paths):
    """{index: ((height, width) or None, reason or None)} of the paths whose size
    and modification time are those recorded."""
    found = {}
    for i, path in enumerate(paths):
      entry = self.entries.get(path)
      try:
        if entry and entry[:2] == self._stamp(path):
          found[i] = (tuple(entry[2]) if entry[2] else None, entry[3])
      except OSError:
        continue
    return found

  def add(self, path, shape, reason):
    try:
      self.entries[path] = self._stamp(path) + [list(shape) if shape else None, reason]
      self.changed = True
    except OSError:
      pass

  def save(self):
    if not self.changed or not os.path.isdir(os.path.dirname(self.path) or "."):
      return
    try:
      files.write_text_atomic(self.path, json.dumps(self.entries))
      self.changed = False
    except Exception:  # pylint: disable=broad-except
      pass  # a cache that cannot be written costs the decoding next time, no more


def active():
  return _active


@contextlib.contextmanager
def kept_in(directory, save=True):
  """Inside: folder scans read and extend directory/scan_cache.json, which is written
  at the end (when `save`) unless a UserError ends the block: a refused run leaves
  the workdir as it was, a finished or interrupted one keeps what its scan learned."""
  global _active
  previous, _active = _active, Cache(os.path.join(directory, FILE))
  cache = _active
  try:
    yield cache
  except UserError:
    save = False
    raise
  finally:
    _active = previous
    if save:
      cache.save()
