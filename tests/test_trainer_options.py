"""bit-train end to end with other model sources and precisions, and the runs it
stops or refuses (CPU, offline), on the TINY run (helpers.py).
"""

import json

import numpy as np
import pytest
import tensorflow as tf

from helpers import error_lines, final_weights, record_training_calls, train, train_here


def test_non_finite_loss_stops_and_leaves_the_checkpoint(tmp_path, folder):
  result = train(tmp_path, folder, "base_lr=1e38,supports=1/5/8,checkpoint_every=1,"
                 "mixup_alpha=0.0")
  assert result.returncode == 2
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "non-finite" in lines[0]
  assert "Traceback" not in result.stderr
  weights = final_weights(tmp_path / "checkpoints")
  assert all(np.isfinite(w).all() for w in weights.values())


def test_micro_batch_not_divisible_by_replicas_is_one_line(tmp_path, folder):
  result = train(tmp_path, folder, "strategy=mirrored,cpu_devices=2,batch_size=6,"
                 "batch_split=2")
  assert result.returncode == 2
  assert "batch" in error_lines(result.stderr)[0]
  assert "Traceback" not in result.stderr


def test_eval_batch_not_divisible_by_replicas_is_one_line(tmp_path, folder):
  result = train(tmp_path, folder, "strategy=mirrored,cpu_devices=2,eval_batch_size=5")
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      "error: eval_batch_size=5 cannot be shared by 2 replicas: make it a multiple of 2."]
  assert "Traceback" not in result.stderr


@pytest.mark.parametrize("source", ["hub", "npz"])
def test_pretrained_sources_fine_tune_end_to_end(tmp_path, folder, source):
  from helpers import export_tiny_hub_module, write_tiny_npz
  if source == "hub":
    location = tmp_path / "module"
    export_tiny_hub_module(location, kind="feature_vector", num_classes=5)
  else:
    location = tmp_path / "BiT-tiny.npz"
    write_tiny_npz(location, num_classes=21843)  # an upstream head, dropped for ours
  # The tiny modules are width 0.25; model_path overrides the registry's location.
  result = train(tmp_path / "w", folder,
                 f"model_source={source},model_path={location},width=0.25")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.load(open(tmp_path / "w" / "metrics.json"))
  assert metrics["step"] == 6 and metrics["count"] > 0
  serving = tf.saved_model.load(str(tmp_path / "w" / "export" / "serving"))
  out = serving.signatures["serve_float"](tf.zeros([1, 32, 32, 3]))
  assert out["probabilities"].shape == (1, 3)  # the folder's 3 classes


@pytest.mark.parametrize("arg, compute_dtype, xla", [
    ("precision=mixed_bfloat16,jit_compile=True", tf.bfloat16, True),
    ("precision=mixed_float16", tf.float16, False)], ids=["bfloat16_xla", "float16"])
def test_mixed_precision_and_xla_train_with_finite_weights(tmp_path, folder, monkeypatch,
                                                           arg, compute_dtype, xla):
  calls = record_training_calls(monkeypatch)
  assert train_here(tmp_path, folder, arg) is None
  # The trainer's step ran the convolutions in the low precision, inside XLA when
  # jit_compile is on (a float32 run records {float32} and no XLA:
  # test_trainer.py::test_batch_split_update_equals_the_full_batch); the variables
  # it saved are float32.
  assert calls.conv_dtypes == {compute_dtype}
  assert calls.in_xla == {xla}
  weights = final_weights(tmp_path / "checkpoints")
  assert all(w.dtype == np.float32 and np.isfinite(w).all() for w in weights.values())
  assert json.load(open(tmp_path / "metrics.json"))["count"] > 0
