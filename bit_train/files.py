"""Small file helpers: writes that are never seen half-done, and the one rule that turns
the operating system's refusals (full disk, read-only, not a directory...) into one
line naming the path and the OS's reason."""

import contextlib
import errno
import json
import os

from bit_train import reading
from bit_train.errors import UserError
from bit_train.lazy import tensorflow as tf

# What TensorFlow's file system layer says when the OS refused: it raises OpErrors
# whose message ends in "<path>; <strerror>", so the reason is found by its text.
_OS_REASONS = tuple(os.strerror(code) for code in (
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
    errno.EISDIR, errno.EEXIST, errno.ENOENT, errno.EIO, errno.EFBIG, errno.ENAMETOOLONG))
# What to do about a refusal, by its reason; otherwise "make it writable...".
_TODO = {os.strerror(errno.ENOSPC): "free some space",
         os.strerror(errno.EDQUOT): "free some space",
         os.strerror(errno.EISDIR): "a folder has that name: move it away",
         os.strerror(errno.ENOTDIR): "a file stands where a folder of the path "
                                     "should be: move it away",
         os.strerror(errno.ENAMETOOLONG): "choose a shorter path"}


def home_expanded(path):
  """`path` with a leading ~ expanded as a shell would have: in `--workdir=~/w` or
  `data_dir=~/photos` no shell does, and the run wrote into a folder named `~`."""
  if isinstance(path, str) and path.startswith("~"):
    return os.path.expanduser(path)
  return path


def is_local(path):
  return "://" not in str(path)


def os_reason(error):
  """The OS's reason behind an OSError or a TensorFlow file error, else None."""
  if isinstance(error, OSError):
    return error.strerror or str(error)
  if isinstance(error, tf.errors.OpError):
    return next((reason for reason in _OS_REASONS if reason in error.message), None)
  return None


@contextlib.contextmanager
def writing(path, then="run the same command again"):
  """Inside: an OS refusal while writing `path` becomes one UserError line."""
  try:
    yield
  except (OSError, tf.errors.OpError) as e:
    reason = os_reason(e)
    if reason is None:
      raise  # not the OS refusing: a bug, keep its traceback
    todo = _TODO.get(reason, "make it writable or choose another path")
    raise UserError(f"cannot write {path}: {reason}: {todo}, then {then}.") from None


def make_dirs(path, what="directory"):
  """Creates the directory `path` (and parents) and checks that it can be written."""
  if not is_local(path):
    with writing(path):
      tf.io.gfile.makedirs(path)
    return
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f"the {what} {path} is a file, not a directory: choose another "
                    "path.")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
    raise UserError(f"cannot create the {what} {path}: {e.strerror}{where}: choose a "
                    "path you can write to.") from None
  if not os.access(path, os.W_OK):  # root included: access() reports read-only mounts
    read_only = os.statvfs(path).f_flag & os.ST_RDONLY
    reason = os.strerror(errno.EROFS if read_only else errno.EACCES)
    raise UserError(f"cannot write to the {what} {path}: {reason}: choose a path you "
                    "can write to.")


def write_text_atomic(path, text):
  """Writes `text` to `path` through a temporary file and a rename."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with removed_on_failure(tmp), writing(path):
    with tf.io.gfile.GFile(tmp, "w") as f:
      f.write(text)
    tf.io.gfile.rename(tmp, path, overwrite=True)


def append_text(path, text):
  with writing(path):
    with tf.io.gfile.GFile(path, "a") as f:
      f.write(text)


@contextlib.contextmanager
def removed_on_failure(*temporaries):
  """Inside: any failure (a full disk, Ctrl-C) removes these temporary paths."""
  try:
    yield
  except BaseException:
    for temporary in temporaries:
      remove_quietly(temporary)
    raise


def remove_quietly(path):
  """Removes a file or folder of ours if it is there (cleaning up after a failure)."""
  try:
    if tf.io.gfile.isdir(path):
      tf.io.gfile.rmtree(path)
    elif tf.io.gfile.exists(path):
      tf.io.gfile.remove(path)
  except (OSError, tf.errors.OpError):
    pass


def json_text(record):
  return json.dumps(record, indent=2, sort_keys=True) + "\n"


def write_json_atomic(path, record):
  write_text_atomic(path, json_text(record))


def read_json(path, what="file", shape=None):
  """The JSON in `path` through the reading layer (bit_train/reading.py)."""
  return reading.read_json(path, what, shape)
