"""bit_train/checkpoints.py against damaged files: Hypothesis truncates, flips and
inserts bytes in the newest checkpoint's .index or .data file, and a resume either
restores exactly what was saved or is one line naming the checkpoint and --force;
with --force it resumes from the intact checkpoint before, exactly, and the damaged
files are in damaged/, unchanged. In this process, on a small tf.train.Checkpoint
(the trainer's own resumes are tests/test_workdir.py's)."""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf

from bit_train import checkpoints
from bit_train.errors import UserError

from helpers import changed_bytes

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def values(step):
  return {"w": np.arange(24, dtype=np.float32).reshape(4, 6) * step,
          "b": np.full([6], step, np.float32)}


def state():
  return {name: tf.Variable(np.zeros_like(v)) for name, v in values(0).items()}


def save_two(directory):
  """ckpt-1 and ckpt-2 in `directory`, through a CheckpointManager as the trainer
  saves; returns ckpt-2's data and index file paths."""
  variables = state()
  manager = tf.train.CheckpointManager(tf.train.Checkpoint(**variables), directory,
                                       max_to_keep=5)
  for step in (1, 2):
    for name, value in values(step).items():
      variables[name].assign(value)
    manager.save(checkpoint_number=step)
  return (os.path.join(directory, "ckpt-2.data-00000-of-00001"),
          os.path.join(directory, "ckpt-2.index"))


def restored(directory, force):
  """(the prefix restore_newest returned, the values it put in a fresh state)."""
  variables = state()
  prefix = checkpoints.restore_newest(tf.train.Checkpoint(**variables), directory,
                                      force=force)
  return prefix, {name: v.numpy() for name, v in variables.items()}


@FUZZ
@given(which=st.sampled_from(["data", "index"]), where=st.floats(0, 0.999),
       how=st.integers(0, 2), value=st.integers(1, 255))
def test_fuzzed_newest_checkpoint_is_one_line_or_restores_exactly(tmp_path_factory,
                                                                 which, where, how,
                                                                 value):
  directory = str(tmp_path_factory.mktemp("ckpt"))
  data_file, index_file = save_two(directory)
  path = data_file if which == "data" else index_file
  with open(path, "rb") as f:
    original = f.read()
  damaged = changed_bytes(original, where, how, value)
  with open(path, "wb") as f:
    f.write(damaged)
  listing = sorted(os.listdir(directory))
  try:
    prefix, found = restored(directory, force=False)
  except UserError as error:
    message = str(error)
    assert "\n" not in message and directory in message and "ckpt-2" in message
    assert "--force" in message and sorted(os.listdir(directory)) == listing
  else:  # the bytes that changed are not read (or change nothing read)
    assert prefix.endswith("ckpt-2")
    for name, value_ in values(2).items():
      np.testing.assert_array_equal(found[name], value_)
    return
  prefix, found = restored(directory, force=True)
  assert prefix.endswith("ckpt-1")
  for name, value_ in values(1).items():
    np.testing.assert_array_equal(found[name], value_)
  aside = os.path.join(directory, checkpoints.DAMAGED)
  assert sorted(os.listdir(aside)) == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
  with open(os.path.join(aside, os.path.basename(path)), "rb") as f:
    assert f.read() == damaged
  assert tf.train.latest_checkpoint(directory).endswith("ckpt-1")


def test_force_never_overwrites_an_earlier_damaged_copy(tmp_path):
  directory = str(tmp_path)
  _, index_file = save_two(directory)
  aside = tmp_path / checkpoints.DAMAGED
  aside.mkdir()
  (aside / "ckpt-2.index").write_bytes(b"an earlier damaged copy")
  os.truncate(index_file, 3)
  assert restored(directory, force=True)[0].endswith("ckpt-1")
  assert (aside / "ckpt-2.index").read_bytes() == b"an earlier damaged copy"
  assert os.path.getsize(aside / "ckpt-2.index.1") == 3


def test_when_no_checkpoint_restores_force_changes_nothing(tmp_path):
  directory = str(tmp_path)
  data_file, _ = save_two(directory)
  os.truncate(data_file, 5)
  os.truncate(os.path.join(directory, "ckpt-1.data-00000-of-00001"), 5)
  listing = sorted(os.listdir(directory))
  with pytest.raises(UserError, match="no checkpoint in .* can be resumed from"):
    restored(directory, force=True)
  assert sorted(os.listdir(directory)) == listing


@pytest.mark.parametrize("text", ["", "all_model_checkpoint_paths: \"ckpt-1\"\n"])
def test_a_checkpoint_list_tensorflow_cannot_read_is_rewritten_from_the_files(tmp_path,
                                                                             text):
  """An empty `checkpoint` state file (a crash while it was written) made the
  CheckpointManager raise a ValueError with its traceback; the checkpoints on disk
  are what a resume reads, so the list is rewritten from them."""
  directory = str(tmp_path)
  save_two(directory)
  (tmp_path / "checkpoint").write_text(text)
  prefix, _ = restored(directory, force=False)
  manager = checkpoints.manager(tf.train.Checkpoint(**state()), directory, 5)
  assert manager.latest_checkpoint == prefix
  assert manager.checkpoints == [os.path.join(directory, f"ckpt-{s}") for s in (1, 2)]
