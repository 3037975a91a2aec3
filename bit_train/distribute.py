"""The tf.distribute strategy a config asks for: auto | cpu | mirrored | multi_worker | tpu.

The training loop is the same for all of them; only this module knows the difference.
"""

import json
import os

from absl import logging
import tensorflow as tf

from bit_train.errors import UserError


def split_cpu(num_devices):
  """Splits the host CPU into `num_devices` logical devices (tests, CPU-only hosts).

  Must run before TensorFlow initialises its devices, i.e. before any op.
  """
  if num_devices <= 1:
    return
  cpus = tf.config.list_physical_devices("CPU")
  try:
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * num_devices)
  except RuntimeError:
    logging.warning("cpu_devices=%d ignored: TensorFlow's devices were already set up.",
                    num_devices)


def _tpu_strategy(tpu_name):
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu_name or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, tf.errors.OpError, RuntimeError) as e:
    raise UserError(f"strategy=tpu, but no TPU was found ({' '.join(str(e).split())}): "
                    "run on a Cloud TPU VM or choose strategy=auto.") from None
  return tf.distribute.TPUStrategy(resolver)


def _find_tpu():
  """A TPU resolver when this host has a TPU, else None (quietly)."""
  if not os.path.exists("/dev/accel0") and "TPU_NAME" not in os.environ:
    return None
  try:
    return _tpu_strategy(os.environ.get("TPU_NAME", ""))
  except UserError:
    return None


def _multi_worker_strategy():
  tf_config = os.environ.get("TF_CONFIG")
  if not tf_config:
    raise UserError("strategy=multi_worker needs TF_CONFIG on every worker (cluster "
                    "and task); see the README's multi-host section.")
  try:
    json.loads(tf_config)
  except json.JSONDecodeError as e:
    raise UserError(f"TF_CONFIG is not valid JSON: {e}") from None
  return tf.distribute.MultiWorkerMirroredStrategy()


def _local_devices():
  """All GPUs, else every (logical) CPU device."""
  gpus = tf.config.list_logical_devices("GPU")
  return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def create_strategy(config):
  """The strategy named by config.strategy (see the README for launching each)."""
  name = config.strategy
  if config.deterministic:
    # Same seed -> the same weights; on a busy CPU some kernels may still sum in
    # another order, so reruns can differ in the last bits.
    tf.config.experimental.enable_op_determinism()
  if name == "multi_worker":
    strategy = _multi_worker_strategy()  # must come before any other TF op
  else:
    split_cpu(config.cpu_devices)
    if name == "tpu":
      strategy = _tpu_strategy(config.tpu)
    elif name == "mirrored":
      strategy = tf.distribute.MirroredStrategy(_local_devices())
    elif name == "cpu":
      strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    else:  # auto: a TPU, else all GPUs (or CPU devices), else the CPU
      strategy = _find_tpu()
      if strategy is None:
        devices = _local_devices()
        strategy = (tf.distribute.MirroredStrategy(devices) if len(devices) > 1
                    else tf.distribute.OneDeviceStrategy(devices[0]))
  logging.info("Strategy %s with %d replica(s).", type(strategy).__name__,
               strategy.num_replicas_in_sync)
  return strategy


def is_chief(strategy):
  """Whether this worker writes summaries, exports and the final metrics."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  return resolver.task_type == "chief" or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in resolver.cluster_spec().as_dict())
