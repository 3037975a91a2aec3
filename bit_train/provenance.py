"""Where a run's numbers came from, for its metrics.json: the code's commit, the
package versions, the dataset's resolved version, the devices it ran on, and this
attempt's wall time (from the moment this module was imported, at start-up)."""

import importlib.metadata
import os
import platform
import subprocess
import time

STARTED = time.time()
PACKAGES = ("tensorflow", "tensorflow-datasets", "tensorflow-hub", "keras", "numpy")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commit(repo=REPO):
  """The checkout's commit, with `+dirty` when tracked files differ from it; None
  outside a git checkout."""
  try:
    head = subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True,
                          text=True, check=True, timeout=10).stdout.strip()
    changed = subprocess.run(["git", "-C", repo, "status", "--porcelain",
                              "--untracked-files=no"], capture_output=True, text=True,
                             check=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return None
  return head + ("+dirty" if changed else "")


def packages(names=PACKAGES):
  """{package: version} of the installed ones."""
  found = {"python": platform.python_version()}
  for name in names:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      pass
  return found


def devices(strategy):
  """'<count> x <kind>' of the devices the strategy computes on, e.g. '8 x GPU
  (NVIDIA A100-SXM4-40GB)' or '1 x CPU (x86_64)'."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  names = strategy.extended.worker_devices
  kinds = sorted({tf.DeviceSpec.from_string(n).device_type or "CPU" for n in names})
  kind = "/".join(kinds)
  if kinds == ["GPU"]:
    gpus = tf.config.list_physical_devices("GPU")
    models = sorted({tf.config.experimental.get_device_details(g).get("device_name", "")
                     for g in gpus} - {""})
    kind += f" ({', '.join(models)})" if models else ""
  elif kinds == ["CPU"]:
    kind += f" ({platform.machine()}, {os.cpu_count()} cores)"
  return f"{strategy.num_replicas_in_sync} x {kind}"


def dataset_version(source):
  """The dataset's resolved TFDS name and version ('cifar10/3.0.2'), else None."""
  builder = getattr(source, "builder", None)
  if builder is None:
    return None
  return builder(prepare=False).info.full_name


def record(strategy, source):
  """The provenance block of metrics.json."""
  return {"commit": commit(), "packages": packages(),
          "dataset_version": dataset_version(source), "devices": devices(strategy),
          "seconds": round(time.time() - STARTED, 1)}
