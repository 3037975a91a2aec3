"""The checkpoints in W/checkpoints/: resume from the newest one that restores, and save
without leaving half-written files behind.

A checkpoint is ckpt-<step>.index plus ckpt-<step>.data-*; TensorFlow writes it in
ckpt-<step>_temp/ first and lists it in the `checkpoint` file last. Resuming looks at
every checkpoint on disk, newest first, not only at the listed latest one: a damaged
one is skipped with a warning that says why, and an earlier one is used.
"""

import os
import re

from absl import logging
import tensorflow as tf

from bit_train import files
from bit_train import reading
from bit_train.errors import UserError, quote

NAME = "ckpt"  # tf.train.CheckpointManager's default prefix
_FILE = re.compile(rf"^{NAME}-(\d+)(\.index|\.data-\d+-of-\d+)$")
_PARTIAL = re.compile(rf"^{NAME}-(\d+)(_temp|\..*\.tempstate\d+)$|^checkpoint\.tmp")
# What restoring raises for a checkpoint of another model (shapes, missing variables)
# and for damaged files (missing, truncated: the reader raises IndexError).
_RESTORE_ERRORS = (AssertionError, ValueError, IndexError, tf.errors.OpError)


def step_of(prefix):
  return int(prefix.rsplit("-", 1)[1])


def candidates(directory):
  """Prefixes of the checkpoints that have any file in `directory`, newest first."""
  if not tf.io.gfile.isdir(directory):
    return []
  steps = {int(m.group(1)) for m in map(_FILE.match, tf.io.gfile.listdir(directory)) if m}
  return [os.path.join(directory, f"{NAME}-{step}") for step in sorted(steps, reverse=True)]


def _unreadable(prefix):
  """Why the checkpoint's files cannot be read in full, or None when they can."""
  damaged = reading.damaged_checkpoint(prefix)
  return damaged and damaged[1]


def _short(text, limit=160):
  return text if len(text) <= limit else text[:limit] + "..."


DAMAGED = "damaged"  # W/checkpoints/damaged/: where --force moves damaged checkpoints


def restore_newest(checkpoint, directory, check=None, force=False, move=True):
  """Restores the newest checkpoint in `directory` that restores; returns its prefix.

  Returns None when the directory holds no checkpoint at all. A checkpoint that
  cannot be read in full (or that `check()` rejects after restoring, with a reason)
  is damaged. Damaged checkpoints newer than the one that restores are a UserError
  naming each and the fix, unless `force`: then their files are moved to
  `directory`/damaged/ (by this worker when `move`; another worker leaves them to
  the chief) and the run resumes from the intact one. When none restores, or one is
  readable but belongs to another model, raises UserError with nothing changed.
  """
  found = candidates(directory)
  damaged = []
  for prefix in found:
    try:
      checkpoint.restore(prefix).assert_existing_objects_matched()
    except _RESTORE_ERRORS as e:
      problem = _unreadable(prefix)
      if problem is None and isinstance(e, (AssertionError, ValueError)):
        raise UserError(
            f"the checkpoints in {directory} hold another model than this config "
            f"builds ({os.path.basename(prefix)}: {_short(quote(e))}): a changed "
            "architecture or class count cannot resume; use a new --workdir.") from None
      if problem is None:
        raise
    else:
      problem = check() if check else None
      if problem is None:
        if damaged:
          _set_damaged_aside(directory, damaged, prefix, force, move)
        return prefix
    damaged.append((prefix, problem))
  if found:
    raise UserError(f"no checkpoint in {directory} can be resumed from: "
                    f"{_listed(damaged)}. Nothing was changed: move the folder away "
                    "to start again from step 0, or use a new --workdir.")
  return None


def _listed(damaged):
  return "; ".join(f"{os.path.basename(prefix)} ({problem})" for prefix, problem in damaged)


def _set_damaged_aside(directory, damaged, intact, force, move):
  """Without `force`: the one line naming the damaged checkpoints and the fix.
  With it: their files moved to directory/damaged/ (never deleted), and the
  `checkpoint` state file listing only what is left."""
  aside = os.path.join(directory, DAMAGED)
  if not force:
    files_of = ", ".join(name for prefix, _ in damaged for name in _files(prefix))
    raise UserError(
        f"the newest checkpoint{'s' if len(damaged) > 1 else ''} in {directory} "
        f"cannot be resumed from: {_listed(damaged)} [files: {files_of or 'none'}]; "
        f"{os.path.basename(intact)} (step {step_of(intact)}) is intact. Nothing was "
        f"changed: restore the files from a copy, or run the same command with --force "
        f"to move them to {aside}/ and resume from step {step_of(intact)}.")
  if not move:
    return
  with files.writing(aside, "run the same command again"):
    tf.io.gfile.makedirs(aside)
    for prefix, problem in damaged:
      for name in _files(prefix):
        target = _free_name(os.path.join(aside, name))
        tf.io.gfile.rename(os.path.join(directory, name), target)
        logging.warning("Moved the damaged checkpoint file %s to %s (%s).",
                        os.path.join(directory, name), target, problem)
    kept = list(reversed(candidates(directory)))
    tf.compat.v1.train.update_checkpoint_state(
        directory, intact, all_model_checkpoint_paths=kept)


def _files(prefix):
  """The names of the checkpoint files of `prefix` in its folder."""
  directory, step = os.path.dirname(prefix), step_of(prefix)
  return sorted(name for name in tf.io.gfile.listdir(directory)
                if (m := _FILE.match(name)) and int(m.group(1)) == step)


def _free_name(path):
  """`path`, or `path.1`, `path.2`... when it is taken (an earlier damaged copy)."""
  candidate, n = path, 0
  while tf.io.gfile.exists(candidate):
    n += 1
    candidate = f"{path}.{n}"
  return candidate


def manager(checkpoint, directory, max_to_keep):
  """The CheckpointManager of `directory`. A `checkpoint` state file TensorFlow
  cannot read (empty, or naming no latest checkpoint: a crash while it was written)
  is rewritten from the checkpoints on disk, which are what a resume reads."""
  try:
    tf.train.get_checkpoint_state(directory)
  except ValueError:
    found = list(reversed(candidates(directory)))
    state = os.path.join(directory, "checkpoint")
    logging.warning("%s lists no checkpoint TensorFlow can read: rewritten from the "
                    "checkpoints on disk (%d).", state, len(found))
    with files.writing(state, "run the same command again"):
      if found:  # with their times, so that max_to_keep still removes old ones
        times = [_mtime(f"{prefix}.index") for prefix in found]
        tf.compat.v1.train.update_checkpoint_state(
            directory, found[-1], all_model_checkpoint_paths=found,
            all_model_checkpoint_timestamps=times,
            last_preserved_timestamp=min(times) - 1)
      else:
        tf.io.gfile.remove(state)
  return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep)


def _mtime(path):
  try:
    return tf.io.gfile.stat(path).mtime_nsec / 1e9
  except tf.errors.OpError:
    return 0.0


class Saver:
  """Saves through a CheckpointManager and knows the newest checkpoint of this run's
  state (which, after a damaged one was skipped, is not the manager's latest)."""

  def __init__(self, manager, resumed):
    self.manager, self.latest = manager, resumed
    remove_partial(manager.directory)  # what a killed run's unfinished save left

  def save(self, step):
    """Saves at `step`; a failure (full disk, Ctrl-C) leaves no partial files."""
    prefix = os.path.join(self.manager.directory, f"{NAME}-{step}")
    then = "run the same command to resume from the last checkpoint"
    try:
      with files.writing(prefix, then):
        self.latest = self.manager.save(checkpoint_number=step)
    except BaseException:
      remove_partial(self.manager.directory)
      # Ctrl-C can land after the files are whole but before the manager returns:
      # that checkpoint is on disk and is what a resume takes.
      if _unreadable(prefix) is None:
        self.latest = prefix
      raise


def remove_partial(directory):
  """Removes what an interrupted save leaves (TensorFlow's temporary names only)."""
  if not tf.io.gfile.isdir(directory):
    return
  for name in tf.io.gfile.listdir(directory):
    if _PARTIAL.match(name):
      files.remove_quietly(os.path.join(directory, name))
