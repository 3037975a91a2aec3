"""Small file helpers: writes that are never seen half-done."""

import json
import os

import tensorflow as tf


def write_text_atomic(path, text):
  """Writes `text` to `path` through a temporary file and a rename."""
  tmp = f"{path}.tmp-{os.getpid()}"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(text)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def json_text(record):
  return json.dumps(record, indent=2, sort_keys=True) + "\n"


def write_json_atomic(path, record):
  write_text_atomic(path, json_text(record))


def read_json(path):
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)
