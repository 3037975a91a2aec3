"""The tf.distribute strategy a run asks for: auto | cpu | mirrored | multi_worker | tpu.

The training loop is the same for all of them; only this module knows the difference.
"""

import json
import os
import socket
import time

from absl import logging
import tensorflow as tf

from bit_train.errors import UserError, quote


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
    raise UserError(f"strategy=tpu, but no TPU was found ({quote(e)}): "
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


# The jobs whose tasks MultiWorkerMirroredStrategy trains with (and waits for).
SYNCED_JOBS = ("chief", "worker")


def _tasks(addresses):
  """{index: "host:port"} of one job of a TF_CONFIG cluster (a list, or a dict by index)."""
  if isinstance(addresses, list):
    addresses = dict(enumerate(addresses))
  if not isinstance(addresses, dict) or not addresses:
    return None
  try:
    return {int(i): str(a) for i, a in addresses.items()}
  except (TypeError, ValueError):
    return None


def tf_config_cluster():
  """({job: {index: address}}, (job, index) of this task) from TF_CONFIG."""
  text = os.environ.get("TF_CONFIG")
  if not text:
    raise UserError("strategy=multi_worker needs TF_CONFIG on every worker (cluster "
                    "and task); see the README's multi-host section.")
  try:
    tf_config = json.loads(text)
  except json.JSONDecodeError as e:
    raise UserError(f"TF_CONFIG is not valid JSON: {e}") from None
  cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
  if isinstance(cluster, dict) and cluster:
    cluster = {job: _tasks(addresses) for job, addresses in cluster.items()}
  if not isinstance(cluster, dict) or not cluster or None in cluster.values():
    raise UserError('TF_CONFIG must be a JSON object {"cluster": {"worker": '
                    '["host:port", ...]}, "task": {"type": "worker", "index": i}}; '
                    "see the README's multi-host section.")
  task = tf_config.get("task")
  job = task.get("type") if isinstance(task, dict) else None
  index = task.get("index", 0) if isinstance(task, dict) else None
  if job not in cluster:
    raise UserError(f"TF_CONFIG task {task!r} must name its job as \"type\", one of "
                    f"the cluster's: {', '.join(cluster)}.")
  if not isinstance(index, int) or index not in cluster[job]:
    raise UserError(f"TF_CONFIG task index {index!r} is not in the cluster: job {job!r} "
                    f"has tasks {sorted(cluster[job])}.")
  return cluster, (job, index)


def _answers(address):
  """Whether something listens at "host:port"."""
  host, _, port = address.rpartition(":")
  try:
    socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
  except (OSError, ValueError):
    return False
  return True


def _listen(address):
  """A socket listening on the port of this task's address, on every interface."""
  port = int(address.rpartition(":")[2])
  try:
    if socket.has_dualstack_ipv6():
      return socket.create_server(("", port), family=socket.AF_INET6,
                                  dualstack_ipv6=True)
    return socket.create_server(("", port))
  except OSError as e:
    raise UserError(f"this task cannot listen on {address} from TF_CONFIG ({e}): "
                    "choose a free port.") from None


def _close_waiting(listener):
  """Accepts and closes the other tasks' probes, so that the queue never fills."""
  while True:
    try:
      connection, _ = listener.accept()
    except (BlockingIOError, InterruptedError):
      return
    connection.close()


def wait_for_tasks(cluster, me, timeout):
  """Returns once every task of the cluster answers at its address; a UserError
  naming those that do not after `timeout` seconds.

  TensorFlow's own start-up waits for missing tasks forever, inside a call that
  holds the interpreter (no thread or signal can interrupt it), so the tasks meet
  here first: each listens on its own port until it has seen all the others
  answer (on that port, or on TensorFlow's server that replaces the listener).
  """
  others = {(job, i): address for job, tasks in cluster.items() if job in SYNCED_JOBS
            for i, address in tasks.items() if (job, i) != me}
  deadline = time.monotonic() + timeout
  with _listen(cluster[me[0]][me[1]]) as listener:
    listener.setblocking(False)
    while True:
      _close_waiting(listener)
      others = {task: address for task, address in others.items()
                if not _answers(address)}
      if not others:
        return
      if time.monotonic() > deadline:
        missing = ", ".join(f"{job} {i} ({address})"
                            for (job, i), address in sorted(others.items()))
        raise UserError(f"the cluster did not start within startup_timeout={timeout:g}"
                        f" s: no answer from {missing}. Start the same command with "
                        "its TF_CONFIG on every task, or raise startup_timeout.")
      time.sleep(0.5)


def _multi_worker_strategy(startup_timeout):
  cluster, me = tf_config_cluster()
  wait_for_tasks(cluster, me, startup_timeout)
  return tf.distribute.MultiWorkerMirroredStrategy()


def _local_devices():
  """All GPUs, else every (logical) CPU device."""
  gpus = tf.config.list_logical_devices("GPU")
  return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]


def create_strategy(run):
  """The strategy a specs.RunSpec names (see the README for launching each)."""
  name = run.strategy
  if run.deterministic:
    # Same seed -> the same weights; on a busy CPU some kernels may still sum in
    # another order, so reruns can differ in the last bits.
    tf.config.experimental.enable_op_determinism()
  if name == "multi_worker":
    # Must come before any other TF op.
    strategy = _multi_worker_strategy(run.startup_timeout)
  else:
    split_cpu(run.cpu_devices)
    if name == "tpu":
      strategy = _tpu_strategy(run.tpu)
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


def worker_index(strategy):
  """This worker's index in its job (multi-worker strategies only)."""
  return strategy.cluster_resolver.task_id


def worker_count(strategy):
  """How many workers write a folder of their own under W (W/workers/<i>): the
  tasks of this worker's job; 1 without a cluster."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return 1
  return max(1, len(resolver.cluster_spec().as_dict().get(resolver.task_type, ())))


def is_chief(strategy):
  """Whether this worker writes summaries, exports and the final metrics."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not getattr(resolver, "task_type", None):
    return True
  return resolver.task_type == "chief" or (
      resolver.task_type == "worker" and resolver.task_id == 0 and
      "chief" not in resolver.cluster_spec().as_dict())


def check_shared(batch, strategy, what, fix):
  """Raises UserError unless a global batch splits evenly over the replicas: `what`
  names the batch, `fix` what to make a multiple of the replica count."""
  replicas = strategy.num_replicas_in_sync
  if batch % replicas:
    raise UserError(f"{what} cannot be shared by {replicas} replicas: {fix} a "
                    f"multiple of {replicas}.")
