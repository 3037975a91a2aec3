"""bit_train.provenance: what a run's metrics.json says about where it ran."""

import subprocess
import types

import tensorflow as tf

from bit_train import provenance


def test_record_names_the_commit_packages_dataset_version_and_devices(tmp_path):
  head = subprocess.run(["git", "-C", provenance.REPO, "rev-parse", "HEAD"],
                        capture_output=True, text=True, check=True).stdout.strip()
  source = types.SimpleNamespace(builder=lambda prepare=True: types.SimpleNamespace(
      info=types.SimpleNamespace(full_name="cifar10/3.0.2")))
  record = provenance.record(tf.distribute.OneDeviceStrategy("/cpu:0"), source)
  assert record["commit"] in (head, head + "+dirty")
  assert record["packages"]["tensorflow"] == tf.__version__
  assert record["dataset_version"] == "cifar10/3.0.2"
  assert record["devices"].startswith("1 x CPU (")
  assert record["seconds"] >= 0
  # An image folder has no TFDS builder; a folder outside git has no commit.
  assert provenance.dataset_version(types.SimpleNamespace()) is None
  assert provenance.commit(str(tmp_path)) is None
