"""The packaged configs named without a path, the console scripts' early answers, and
the README's commands run from a directory outside the checkout."""

import importlib.util
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from bit_train import cli
from bit_train import config as bit_config
from bit_train import configs
from bit_train import train as bit_train
from bit_train.errors import UserError
from helpers import ROOT, error_lines, run_here, run_module
from bit_train.data.patterns import write_pattern_folder


def test_a_name_is_the_packaged_file_and_a_path_is_left_as_it_is():
  assert configs.resolve("transfer:dataset=cifar10") == (
      configs.path("transfer") + ":dataset=cifar10")
  assert configs.resolve("folder") == configs.path("folder")
  assert os.path.isfile(configs.path("folder"))
  for own in ("my_config.py:seed=1", "./transfer", "experiments/x.py"):
    assert configs.resolve(own) == own
  with pytest.raises(UserError, match="unknown config 'transfr' .did you mean 'transfer'"):
    configs.resolve("transfr:dataset=cifar10")


def test_every_form_of_the_config_flag_is_resolved_before_a_double_dash():
  argv = ["bit-train", "--config", "transfer:seed=1", "--config=folder", "--config.seed=2",
          "--", "--config", "transfer"]
  assert cli.resolve_configs(argv) == [
      "bit-train", "--config", configs.path("transfer") + ":seed=1",
      f"--config={configs.path('folder')}", "--config.seed=2", "--", "--config", "transfer"]


def test_the_early_check_leaves_configs_to_config_flags_when_a_field_flag_is_given():
  # batch_split=3 does not divide the default 512, but does divide 96.
  with pytest.raises(SystemExit) as stopped:
    cli.check_packaged_config(["bit-train", "--config", "transfer:batch_split=3"])
  assert stopped.value.code == 2
  cli.check_packaged_config(["bit-train", "--config", "transfer:batch_split=3",
                             "--config.batch_size=96"])
  cli.check_packaged_config(["bit-train", "--config", "./own.py:batch_split=3"])


def early_and_late_errors(args, capsys):
  """The error lines of bit-train's console script, which must end with exit 2
  before TensorFlow is imported, and of the entry module run the whole way (exit 2)."""
  code = ("import sys; sys.argv[0] = 'bit-train'\nfrom bit_train import cli\n"
          "try:\n  cli.train()\nexcept SystemExit as e:\n"
          "  print('exit', e.code, 'tensorflow' in sys.modules, file=sys.stderr)\n")
  early = subprocess.run([sys.executable, "-c", code, *args], capture_output=True,
                         text=True, timeout=120)
  assert early.stderr.splitlines()[-1] == "exit 2 False", early.stderr
  late = run_here(bit_train.run, *args, capsys=capsys)
  assert late.returncode == 2
  return error_lines(early.stderr), error_lines(late.stderr)


@pytest.mark.parametrize("arg", ["transfer:batchsize=64", "transfr:dataset=cifar10",
                                 "transfer:batch_size=100,batch_split=3",
                                 "transfer:jit_compile=maybe",
                                 "transfer:dataset=cifar10,model=BiT-M-R50"])
def test_a_config_mistake_is_one_line_before_tensorflow_is_imported(arg, tmp_path, capsys):
  early, late = early_and_late_errors(
      ["--config", arg, "--workdir", str(tmp_path / "w"), "--dry_run"], capsys)
  assert early == late != []  # the entry module's own line


def test_a_missing_workdir_is_one_line_before_tensorflow_is_imported(capsys):
  early, late = early_and_late_errors(
      ["--config", "transfer:dataset=cifar10", "--dry_run"], capsys)
  assert early == late == [
      "error: --workdir is required: the directory for the plan, checkpoints and "
      "exports."]


def test_bit_eval_without_a_config_suggests_a_bit_eval_command(tmp_path):
  """It suggested bit-train's `--config transfer:dataset=cifar10`. Each command's
  suggestion is one of its README commands."""
  result = run_module("bit_train.eval", "--workdir", tmp_path / "e")
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      "error: --config is required, e.g. bit-eval --config imagenet_eval:"
      "dataset=image_folder,data_dir=photos,model_path=W/export --workdir E "
      "(`bit-eval --help` lists the configs)."]
  for command, example in cli.CONFIG_EXAMPLES.items():
    assert example.split()[1:] in readme_commands(command), command


def test_out_of_memory_without_a_tensor_shape_is_a_whole_line(capsys):
  """tf.data's out-of-memory error names no shape: the line said TensorFlow 'could
  not allocate Graph execution error:' (its message's first line)."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  def main():
    raise tf.errors.ResourceExhaustedError(
        None, None, "Graph execution error:\n\nDetected at node IteratorGetNext\n"
        "Failed to allocate memory for the batch of component 0")
  with pytest.raises(SystemExit) as stopped:
    cli.guarded(main)
  assert stopped.value.code == 2
  assert capsys.readouterr().err == (
      "error: out of memory: TensorFlow could not allocate the memory it needed: use a "
      "smaller crop or batch size (bit-train: batch_split=k keeps the batch in k smaller "
      "micro-batches).\n")


def readme_commands(program):
  """The README's `program` command lines (from its bash blocks), as argument lists;
  lines that are not one shell command (inside a quoted script) are left out."""
  with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    text = f.read().replace("\\\n", " ")
  commands = []
  for block in text.split("```bash")[1:]:
    for line in block.split("```")[0].splitlines():
      try:
        words = shlex.split(line, comments=True)
      except ValueError:
        continue
      if program in words and "--help" not in words:
        commands.append(words[words.index(program) + 1:])
  return commands


def flag_value(args, flag):
  return args[args.index(flag) + 1]


def set_flag(args, flag, value):
  args = list(args)
  args[args.index(flag) + 1] = value
  return args


def test_the_readme_has_commands_with_packaged_configs():
  train = readme_commands("bit-train")
  assert len(train) >= 4 and len(readme_commands("bit-eval")) >= 3
  assert {flag_value(a, "--config").partition(":")[0] for a in train} <= set(configs.names())


def test_the_readmes_bit_train_commands_plan_from_outside_the_checkout(tmp_path):
  """Each README bit-train command, as a --dry_run in a fresh process whose working
  directory is outside the checkout (with the README's `photos` folder there)."""
  write_pattern_folder(tmp_path / "photos", per_class=4)
  env = dict(os.environ, TFDS_DATA_DIR=str(tmp_path / "no_tfds"))
  seen = set()
  for i, args in enumerate(readme_commands("bit-train")):
    config = flag_value(args, "--config")
    if config in seen:
      continue
    seen.add(config)
    args = set_flag(args, "--workdir", f"w{i}")
    args += [] if "--dry_run" in args else ["--dry_run"]
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.argv[0] = 'bit-train'\n"
         "from bit_train import cli; cli.train()", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (args, result.stderr[-3000:])
    assert "BiT-HyperRule plan" in result.stdout, args
    assert os.path.isfile(tmp_path / f"w{i}" / "plan.json")


def test_the_readmes_bit_eval_configs_load_and_validate():
  for args in readme_commands("bit-eval"):
    path, _, arg = configs.resolve(flag_value(args, "--config")).partition(":")
    spec = importlib.util.spec_from_file_location("readme_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bit_config.validate(module.get_config(arg or None))


@pytest.mark.parametrize("command", [
    ["bit_train.train", "--config", "transfer:dataset=cifar10", "--workdir", "{w}",
     "--dry_run"],
    ["experiments.run", "standard", "--root", "{w}", "--dry_run"]])
def test_output_into_a_pipe_its_reader_closed_ends_quietly(tmp_path, command):
  """`| head -1`: printing to the closed pipe was a BrokenPipeError traceback."""
  process = subprocess.Popen(
      [sys.executable, "-m", *(a.format(w=tmp_path / "w") for a in command)],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  process.stdout.close()  # the reader is gone before anything is printed
  stderr = process.stderr.read()
  assert process.wait(timeout=600) == cli.EXIT_BROKEN_PIPE, stderr[-3000:]
  assert "Traceback" not in stderr and "BrokenPipe" not in stderr, stderr[-3000:]
  assert not error_lines(stderr)


def test_two_configs_are_one_line(tmp_path, capsys):
  """The last --config won and the first was dropped without a word."""
  result = run_here(bit_train.run, "--config", "quickstart:data_dir=photos",
                    "--config=transfer:dataset=cifar10", "--workdir", tmp_path / "w",
                    "--dry_run", capsys=capsys)
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      "error: --config is given 2 times (quickstart:data_dir=photos, "
      "transfer:dataset=cifar10): give one, and set fields after its name "
      "(NAME:field=value,...) or with --config.<field>=<value>."]
  assert not (tmp_path / "w").exists()


def _importing_tensorflow(pid):
  with open(f"/proc/{pid}/maps") as maps:
    return "_pywrap_tensorflow_internal" in maps.read()


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["ctrl_c", "sigterm"])
def test_ctrl_c_or_sigterm_while_tensorflow_is_imported_is_one_line(tmp_path, signum,
                                                                    code):
  """In the first seconds (the entry module importing TensorFlow, before any guard
  runs) Ctrl-C was a KeyboardInterrupt traceback through TensorFlow's imports, and
  SIGTERM ended the process with 143 and nothing printed."""
  write_pattern_folder(tmp_path / "images", per_class=4)
  process = subprocess.Popen(
      [sys.executable, "-m", "bit_train.train", "--config",
       f"quickstart:data_dir={tmp_path / 'images'}", "--workdir", tmp_path / "w"],
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
      preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
  deadline = time.time() + 120
  while not _importing_tensorflow(process.pid):  # its native library is mapped first
    assert process.poll() is None and time.time() < deadline
    time.sleep(0.01)
  process.send_signal(signum)
  stderr = process.stderr.read()
  assert process.wait(timeout=120) == code, stderr[-3000:]
  assert "Traceback" not in stderr, stderr[-3000:]
  # The import's line, or the guard's if the run was quicker: the same.
  assert error_lines(stderr) == ["error: interrupted before the run started (nothing "
                                 "saved): run the same command again."]
