"""Distribution: TF_CONFIG mistakes and a worker whose peers never start are each one
clear error."""

import json
import socket
import time

import pytest

from bit_train import config as bit_config
from bit_train import distribute
from bit_train import specs
from bit_train.errors import UserError

from helpers import error_lines, free_ports


@pytest.mark.parametrize("tf_config", [
    [], "worker", {"task": {"type": "worker", "index": 0}},
    {"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}},
    {"cluster": {}, "task": {"type": "worker", "index": 0}}])
def test_tf_config_that_is_not_a_cluster_is_one_error(monkeypatch, tf_config):
  monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
  config = bit_config.base_config()
  config.strategy = "multi_worker"
  with pytest.raises(UserError, match="TF_CONFIG must be a JSON object"):
    distribute.create_strategy(specs.run_spec(config))


@pytest.mark.parametrize("task, message", [
    ({"type": "worker", "index": 2}, r"task index 2 is not in the cluster: job "
                                     r"'worker' has tasks \[0, 1\]"),
    ({"type": "chief", "index": 0}, "must name its job"),
    ({"type": "worker", "index": "first"}, "task index 'first'")])
def test_tf_config_task_outside_the_cluster_is_one_error(monkeypatch, task, message):
  monkeypatch.setenv("TF_CONFIG", json.dumps({
      "cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": task}))
  config = bit_config.base_config()
  config.strategy = "multi_worker"
  with pytest.raises(UserError, match=message):
    distribute.create_strategy(specs.run_spec(config))


def test_wait_for_tasks_names_the_missing_tasks_and_returns_when_all_answer():
  mine, missing, present = free_ports(3)
  cluster = {"chief": {0: f"127.0.0.1:{mine}"},
             "worker": {0: f"127.0.0.1:{missing}", 1: f"127.0.0.1:{present}"}}
  with socket.create_server(("127.0.0.1", present)):
    start = time.monotonic()
    with pytest.raises(UserError, match=(
        rf"within startup_timeout=1 s: no answer from worker 0 \(127.0.0.1:{missing}\)"
        r"\. Start")):
      distribute.wait_for_tasks(cluster, ("chief", 0), timeout=1)
    assert time.monotonic() - start < 10
    with socket.create_server(("127.0.0.1", missing)):
      distribute.wait_for_tasks(cluster, ("chief", 0), timeout=5)


def test_a_worker_whose_peer_never_starts_stops_after_the_startup_timeout(
    tmp_path, cli):
  ports = free_ports(2)
  tf_config = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
               "task": {"type": "worker", "index": 0}}
  result = cli("bit_train.train", "--config",
               "transfer:model_source=native,num_units=1/1/1/1,width=0.25,"
               "strategy=multi_worker,startup_timeout=2", "--workdir", tmp_path,
               env={"TF_CONFIG": json.dumps(tf_config)}, timeout=300)
  assert result.returncode == 2, result.stderr[-2000:]
  line, = error_lines(result.stderr)
  assert f"no answer from worker 1 (127.0.0.1:{ports[1]})" in line
