"""What a run keeps in its workdir, and the check that a resumed run is the same run.

  W/config.json, W/plan.json   what was asked and what the HyperRule decided
  W/checkpoints/               tf.train.CheckpointManager (model, optimizer, step, iterator)
  W/history.jsonl              one line per logged step and evaluation (for the curves)
  W/tensorboard/{train,eval}   summaries
  W/metrics.json               final evaluation
  W/curves.png                 loss and accuracy curves
  W/export/                    serving SavedModel and reusable Hub module
"""

import json
import os

import tensorflow as tf

from bit_train import files
from bit_train.errors import UserError

# Config fields that may change between a run and its resumption without changing
# what is computed.
RESUMABLE_CHANGES = frozenset({
    "log_every", "eval_every", "checkpoint_every", "keep_checkpoints", "data_dir",
    "manual_dir", "model_path", "strategy", "cpu_devices", "tpu", "jit_compile"})


def path(workdir, *parts):
  return os.path.join(workdir, *parts)


def _differences(old, new, ignore=()):
  keys = sorted(set(old) | set(new))
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
          if k not in ignore and old.get(k) != new.get(k)]


def check_same_run(workdir, config, plan, force=False):
  """Raises UserError when W holds checkpoints of a run with another config or plan.

  Writes config.json and plan.json (atomically) when the run is new or forced.
  """
  has_checkpoint = tf.train.latest_checkpoint(path(workdir, "checkpoints")) is not None
  config_record = json.loads(json.dumps(config.to_dict()))  # tuples -> lists
  plan_record = plan.to_dict()
  if has_checkpoint and not force and tf.io.gfile.exists(path(workdir, "plan.json")):
    saved = files.read_json(path(workdir, "plan.json"))
    changes = (_differences(saved.get("plan", {}), plan_record) +
               _differences(saved.get("config", {}), config_record, RESUMABLE_CHANGES))
    if changes:
      raise UserError(f"workdir {workdir} holds a run with a different config or plan "
                      f"({'; '.join(changes[:3])}): use a new --workdir, or pass "
                      "--force to resume it with the new settings.")
  tf.io.gfile.makedirs(workdir)
  files.write_json_atomic(path(workdir, "plan.json"),
                          {"config": config_record, "plan": plan_record})
  return has_checkpoint


class History:
  """Appends one JSON line per record; on resume, forgets records after the step."""

  def __init__(self, workdir, resumed_step, enabled=True):
    self.file = path(workdir, "history.jsonl")
    self.enabled = enabled
    if enabled:
      kept = [r for r in self.read() if r["step"] <= resumed_step]
      files.write_text_atomic(self.file, "".join(json.dumps(r) + "\n" for r in kept))

  def read(self):
    if not tf.io.gfile.exists(self.file):
      return []
    with tf.io.gfile.GFile(self.file) as f:
      return [json.loads(line) for line in f if line.strip()]

  def add(self, **record):
    if self.enabled:
      with tf.io.gfile.GFile(self.file, "a") as f:
        f.write(json.dumps(record) + "\n")


def plot_curves(history, png_path):
  """Training loss and eval accuracy against steps, as one PNG."""
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  records = history.read()
  train = [r for r in records if "loss" in r and "top1" not in r]
  evals = [r for r in records if "top1" in r]
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
  ax_loss.plot([r["step"] for r in train], [r["loss"] for r in train])
  ax_loss.set(xlabel="step", ylabel="train loss", title="Training loss")
  ax_acc.plot([r["step"] for r in evals], [r["top1"] for r in evals], "o-", label="top-1")
  ax_acc.plot([r["step"] for r in evals], [r["top5"] for r in evals], "s--", label="top-5")
  ax_acc.set(xlabel="step", ylabel="accuracy", title="Evaluation", ylim=(0, 1))
  ax_acc.legend()
  fig.tight_layout()
  tmp = png_path + ".tmp.png"
  fig.savefig(tmp, dpi=80)
  plt.close(fig)
  tf.io.gfile.rename(tmp, png_path, overwrite=True)
