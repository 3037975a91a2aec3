"""Configuration and distribution promises of issue 11: numbers that make no sense,
TF_CONFIG mistakes, a worker whose peers never start, and config file mistakes are
each one clear error."""

import json
import socket
import sys
import time

from absl import flags
import pytest

from bit_train import cli as bit_cli
from bit_train import config as bit_config
from bit_train import configs
from bit_train import distribute
from bit_train import train  # defines --config, as bit-train does
from bit_train.errors import UserError
from bit_train.models import bit
from bit_train.models import registry
from conftest import error_lines, run_here
from test_trainer import _free_ports as free_ports

TRANSFER = configs.path("transfer")


@pytest.mark.parametrize("arg, field", [
    ("width=0", "width"), ("width=-0.5", "width"), ("num_units=0/1/1/1", "num_units"),
    ("num_units=1/1/1", "num_units"), ("seed=-1", "seed"),
    ("few_shot_seed=-1", "few_shot_seed"), ("holdout_fraction=-0.1", "holdout_fraction"),
    ("holdout_fraction=1", "holdout_fraction"), ("mixup_alpha=-1", "mixup_alpha"),
    ("startup_timeout=0", "startup_timeout")])
def test_zero_or_negative_numbers_that_make_no_sense_are_errors(arg, field):
  config = bit_config.apply_arg(bit_config.base_config(), arg)
  with pytest.raises(UserError, match=rf"config field {field}=.+ must"):
    bit_config.validate(config)


def test_no_falsy_value_is_replaced_by_the_models_default():
  spec = registry.lookup("BiT-M-R50x1")
  config = bit_config.base_config()
  assert bit.config_arch(config, spec) == spec.arch
  config.width, config.num_units = 0.0, (1, 1, 1, 1)  # past validation, as a caller may
  assert bit.config_arch(config, spec) == ((1, 1, 1, 1), 0.0)


def test_width_zero_dry_run_is_one_line_and_writes_no_plan(tmp_path, capsys):
  # bit-train's run() in this process (conftest.run_here): no TensorFlow start-up.
  result = run_here(train.run, "--config",
                    "transfer:model_source=native,width=0", "--workdir",
                    tmp_path, "--dry_run", capsys=capsys)
  assert result.returncode == 2
  assert error_lines(result.stderr) == ["error: config field width=0.0 must be positive."]
  assert not (tmp_path / "plan.json").exists()


@pytest.mark.parametrize("tf_config", [
    [], "worker", {"task": {"type": "worker", "index": 0}},
    {"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}},
    {"cluster": {}, "task": {"type": "worker", "index": 0}}])
def test_tf_config_that_is_not_a_cluster_is_one_error(monkeypatch, tf_config):
  monkeypatch.setenv("TF_CONFIG", json.dumps(tf_config))
  config = bit_config.base_config()
  config.strategy = "multi_worker"
  with pytest.raises(UserError, match="TF_CONFIG must be a JSON object"):
    distribute.create_strategy(config)


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
    distribute.create_strategy(config)


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


def parse_config_flag(argument, capsys):
  """bit-train's flag parsing of `--config argument`: (exit code, stderr)."""
  # ml_collections loads every config file as the module "config_config" and
  # re-executes a later file into the same module object, so a get_config left by
  # a config another test loaded in this process would hide a missing one.
  sys.modules.pop("config_config", None)
  try:
    with pytest.raises(SystemExit) as exit_info:
      bit_cli._parse_flags(["bit-train", "--config", argument])
  finally:
    flags.FLAGS.unparse_flags()
  return exit_info.value.code, capsys.readouterr().err


def test_config_file_syntax_error_shows_python_s_lines_without_library_frames(
    tmp_path, capsys):
  path = tmp_path / "broken.py"
  path.write_text("def get_config(arg=None):\n  return dict(a=1\n")
  code, stderr = parse_config_flag(str(path), capsys)
  assert code == 2
  assert f'File "{path}", line 2' in stderr and "^" in stderr
  assert "SyntaxError" in stderr
  assert "absl" not in stderr and "ml_collections" not in stderr
  assert len(error_lines(stderr)) == 1


def test_config_file_without_get_config_says_so(tmp_path, capsys):
  path = tmp_path / "no_function.py"
  path.write_text("CONFIG = {}\n")
  code, stderr = parse_config_flag(str(path), capsys)
  assert code == 2
  assert error_lines(stderr) == [
      f"error: the config file {path} has no get_config(arg=None) returning a "
      "ConfigDict: define it (see bit_train/configs/transfer.py)."]


def test_comma_inside_a_value_hints_at_the_config_flag(capsys):
  code, stderr = parse_config_flag(f"{TRANSFER}:data_dir=a,b", capsys)
  assert code == 2
  line, = error_lines(stderr)
  assert "unknown config field 'b'" in line and "--config.data_dir=" in line


@pytest.mark.parametrize("bug, error", [
    ("config.no_such_field", "AttributeError"),  # ml_collections' own error type
    ("{}['x']", "KeyError"),
    ("int('abc')", "ValueError"),  # config_flags wraps it twice: the original shows
])
def test_a_bug_in_a_config_file_shows_its_traceback(tmp_path, cli, bug, error):
  path = tmp_path / "buggy.py"
  path.write_text("from bit_train import config as bit_config\n\n\n"
                  "def get_config(arg=None):\n"
                  "  config = bit_config.base_config()\n"
                  f"  return {bug}\n")
  result = cli("bit_train.train", "--config", path, "--workdir", tmp_path / "w",
               "--dry_run")
  assert result.returncode == 1, result.stderr[-2000:]
  assert "Traceback" in result.stderr and not error_lines(result.stderr)
  assert f'File "{path}", line 6, in get_config' in result.stderr
  assert result.stderr.rstrip().splitlines()[-1].startswith(error)


def test_a_bad_value_on_the_command_line_stays_one_line(tmp_path, capsys):
  # In this process; test_train_cli.py runs this kind of mistake as a real process.
  result = run_here(train.run, "--config", TRANSFER, "--config.batch_size=abc",
                    "--workdir", tmp_path / "w", "--dry_run", capsys=capsys)
  assert result.returncode == 2, result.stderr[-2000:]
  line, = error_lines(result.stderr)
  assert "--config.batch_size=abc" in line and "Traceback" not in result.stderr
