"""What a trained model saw, and which images of an eval set it saw.

A bit-train export records its training data in export.json (`run.trained_on`: the
dataset, its train split and held-out split, and for an image folder the folder,
the number of training files and their fingerprint) and, for an image folder, every
training file in W/export/trained_files.txt (`<path relative to the folder>\t<size
in bytes>` a line). bit-eval on the same folder then evaluates only the images the
model never trained on, and says how many it left out.
"""

import hashlib
import os

from absl import logging
import tensorflow as tf

from bit_train import reading
from bit_train import workdir as wd
from bit_train.errors import UserError

FILES = "trained_files.txt"


def _key(path, root):
  return f"{os.path.relpath(path, root)}\t{tf.io.gfile.stat(path).length}"


def describe(source):
  """(record for export.json, lines of trained_files.txt or None) of the train
  split of an open DataSource."""
  facts = source.facts
  record = {"dataset": facts.name, "split": facts.train_split,
            "held_out": facts.eval_split}
  examples = source.train_examples()
  root = getattr(source.spec, "data_dir", None)
  if examples.files is None or not root:
    return record, None
  lines = sorted(_key(path, root) for path in examples.files[0])
  record.update(data_dir=root, files=len(lines), fingerprint=_fingerprint(lines))
  return record, lines


def _fingerprint(lines):
  return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


def _check_recorded(lines, listed, export_root):
  """The list must be the one export.json's trained_on records (when it does): an
  emptied or edited list would let training images into the score."""
  facts = os.path.join(export_root, wd.EXPORT_FACTS)
  record = reading.read_json_if_exists(facts, "export facts")
  about = record.get("run") if isinstance(record, dict) else None
  about = about.get("trained_on") if isinstance(about, dict) else None
  if not isinstance(about, dict) or "fingerprint" not in about:
    return
  if _fingerprint(lines) != about["fingerprint"]:
    raise UserError(f"cannot read the list of training files {listed}: it is not the "
                    f"list of the {about.get('files')} files {facts} records (another "
                    "fingerprint): export the run again, or delete it to evaluate every "
                    "image.")


def unseen(examples, export_root, data_dir):
  """`examples` without the files the export's model trained on (matched by path
  under `data_dir` and size); `examples` itself when the export has no list of
  training files or none of them is among the examples. Says what it left out;
  when every example was trained on, keeps them all and warns."""
  listed = os.path.join(export_root, FILES) if export_root else None
  if examples.files is None or not data_dir or not listed or not tf.io.gfile.exists(
      listed):
    return examples
  lines = reading.read_text(
      listed, "list of training files",
      "export the run again, or delete it to evaluate every image").splitlines()
  _check_recorded(lines, listed, export_root)
  trained = set(lines)
  paths = examples.files[0]
  kept = [i for i, path in enumerate(paths) if _key(path, data_dir) not in trained]
  seen = len(paths) - len(kept)
  if not seen:
    return examples
  if not kept:
    logging.warning("the model trained on all %d images of %s (%s): its scores here "
                    "measure memory, not accuracy on new images.", len(paths),
                    examples.name, listed)
    return examples
  logging.info("Evaluating the %d images of %s the model never trained on; %d others "
               "were among its training images (%s) and are left out.", len(kept),
               examples.name, seen, listed)
  return examples.subset(kept)
