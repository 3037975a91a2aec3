"""The config: config files and the `file.py:key=val,flag` argument, numbers that make
no sense, config file mistakes (one clear error, or the file's own traceback)."""

import importlib.util
import json
import os
import sys

from absl import flags
import pytest

from bit_train import cli as bit_cli
from bit_train import config as bit_config
from bit_train import configs
from bit_train import specs
from bit_train import train  # defines --config, as bit-train does
from bit_train.data.patterns import write_pattern_folder
from bit_train.errors import UserError
from bit_train.models import bit
from bit_train.models import registry

from experiments import plans
from helpers import ROOT, error_lines, run_here


def load_config_file(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, configs.path(name[:-3]))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_argument_string_sets_typed_fields():
  config = load_config_file(
      "transfer.py", "dataset=cifar100,batch_size=64,image_size=300x400,"
      "supports=10/20/30,mixup_alpha=0.2,jit_compile")
  assert config.dataset == "cifar100" and config.batch_size == 64
  assert config.image_size == (300, 400) and config.supports == (10, 20, 30)
  assert config.mixup_alpha == 0.2 and config.jit_compile is True


def test_unset_recipe_fields_are_left_to_the_hyperrule():
  config = load_config_file("transfer.py")
  assert [config[k] for k in ("precrop", "crop", "mixup_alpha", "supports")] == [None] * 4


@pytest.mark.parametrize("arg, field", [
    ("batchsize=3", "batchsize"), ("batch_size=3.5", "batch_size"),
    ("jit_compile=maybe", "jit_compile"), ("image_size=a/b", "image_size")])
def test_bad_argument_names_the_field(arg, field):
  with pytest.raises(UserError, match=field):
    load_config_file("transfer.py", arg)


@pytest.mark.parametrize("arg, field", [
    ("precision=fp8", "precision"), ("model_source=torch", "model_source"),
    ("eval_every=-1", "eval_every"), ("image_size=3/4/5", "image_size"),
    ("batch_split=0", "batch_split"), ("examples_per_class=0", "examples_per_class")])
def test_validate_names_the_field(arg, field):
  config = load_config_file("transfer.py", arg)
  with pytest.raises(UserError, match=field):
    bit_config.validate(config)


def test_quickstart_config_validates_and_its_overrides_are_marked_in_the_plan():
  config = bit_config.validate(load_config_file("quickstart.py"))
  assert config.dataset == "image_folder" and config.model == "BiT-MNIST-R14x0.25"
  plan = specs.recipe(config).plan(1618, (8, 8), "digits")
  assert set(plan.overridden) == {"precrop", "crop", "batch_size", "supports",
                                  "base_lr", "flip"}
  # resolution (precrop and crop), flip, supports, batch and base_lr lines
  assert plan.describe().count("(set by you; the HyperRule:") == 5


def test_every_field_declares_its_kind():
  """A resumed run is compared field by field by kind: a field added without one
  would be compared by no rule."""
  config = bit_config.base_config()
  kinds = {key: bit_config.kind(key) for key in config}
  assert not [key for key, kind in kinds.items() if kind is None]
  assert set(kinds.values()) == {bit_config.IDENTITY, bit_config.RUN_ONLY}
  # What is computed stays; where inputs are and how the run reports may change.
  assert {kinds[k] for k in ("dataset", "model", "batch_size", "seed", "precision",
                             "supports")} == {bit_config.IDENTITY}
  assert {kinds[k] for k in ("data_dir", "model_path", "log_every", "eval_every",
                             "checkpoint_every", "keep_checkpoints", "strategy",
                             "eval_batch_size")} == {bit_config.RUN_ONLY}


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
    specs.from_config(bit_config.validate(config))


@pytest.mark.parametrize("arg", ["base_lr=nan", "mixup_alpha=inf", "width=nan",
                                 "clip_grad_norm=inf", "holdout_fraction=-inf",
                                 "startup_timeout=nan"])
def test_numbers_that_are_not_finite_are_errors(arg):
  """NaN passes every comparison (base_lr=nan trained on a NaN learning rate)."""
  field = arg.split("=")[0]
  config = bit_config.apply_arg(bit_config.base_config(), arg)
  with pytest.raises(UserError, match=rf"config field {field}=.+ must be a finite "):
    specs.from_config(bit_config.validate(config))


def test_a_bare_name_sets_a_bool_field_and_is_an_error_for_any_other():
  """`flip` alone sets True; `batch_size` alone set True too, which is 1 to an int
  field, and the run planned a batch of 1."""
  config = bit_config.apply_arg(bit_config.base_config(), "flip,deterministic")
  assert config.flip is True and config.deterministic is True
  for arg, kind in [("batch_size", "int"), ("base_lr", "float"), ("supports", "tuple"),
                    ("data_dir", "str"), ("image_size", "tuple")]:
    with pytest.raises(UserError, match=(rf"^config field {arg} needs a value: write "
                                         rf"{arg}=<{kind}>")):
      bit_config.apply_arg(bit_config.base_config(), f"seed=1,{arg}")


def test_no_falsy_value_is_replaced_by_the_models_default():
  spec = registry.lookup("BiT-M-R50x1")
  config = bit_config.base_config()
  assert bit.arch(config, spec, config.model) == spec.arch
  config.width, config.num_units = 0.0, (1, 1, 1, 1)  # past validation, as a caller may
  assert bit.arch(config, spec, config.model) == ((1, 1, 1, 1), 0.0)


def test_width_zero_dry_run_is_one_line_and_writes_no_plan(tmp_path, capsys):
  # bit-train's run() in this process (helpers.run_here): no TensorFlow start-up.
  result = run_here(train.run, "--config",
                    "transfer:model_source=native,width=0", "--workdir",
                    tmp_path, "--dry_run", capsys=capsys)
  assert result.returncode == 2
  assert error_lines(result.stderr) == ["error: config field width=0.0 must be positive."]
  assert not (tmp_path / "plan.json").exists()


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


@pytest.mark.parametrize("parameters, arg, line", [
    # The TypeError's traceback came out flattened into one line of config_flags' frames.
    ("", ":seed=1",
     "the config file {path} takes no arguments (its get_config() has no parameter), "
     "but 'seed=1' follows its name: give --config {path} and set fields with "
     "--config.<field>=<value>, or define get_config(arg=None) and apply arg (see "
     "bit_train/configs/transfer.py)."),
    ("arg", "",
     "the config file {path} needs an argument (its get_config has a parameter without "
     "a default): give it after the file's name, --config {path}:ARG, or define "
     "get_config(arg=None)."),
], ids=["arguments_to_no_parameter", "no_argument_to_a_parameter"])
def test_arguments_get_config_cannot_take_are_one_line(tmp_path, capsys, parameters,
                                                       arg, line):
  """A command-line mistake (the file's code never ran), in bit-train and in the
  experiments' plans."""
  path = tmp_path / "own.py"
  path.write_text("from bit_train import config as c\n\n\n"
                  f"def get_config({parameters}):\n  return c.base_config()\n")
  code, stderr = parse_config_flag(f"{path}{arg}", capsys)
  assert code == 2 and "Traceback" not in stderr
  assert error_lines(stderr) == ["error: " + line.format(path=path)]
  with pytest.raises(UserError) as error:
    plans.load_config(f"{path}{arg}")
  assert str(error.value) == line.format(path=path)


def test_a_tilde_no_shell_expanded_is_the_home_folder(tmp_path, capsys, monkeypatch):
  """`--workdir=~/w` and `data_dir=~/images` reach no shell's tilde expansion: the
  run wrote into a folder named `~` under the current one, and the data folder was
  `not a folder`."""
  monkeypatch.setenv("HOME", str(tmp_path))
  monkeypatch.chdir(tmp_path)
  write_pattern_folder(tmp_path / "images", per_class=3)
  result = run_here(train.run, "--config", "quickstart:data_dir=~/images",
                    "--workdir=~/w", "--dry_run", capsys=capsys)
  assert result.returncode == 0, result.stderr
  assert not (tmp_path / "~").exists()
  plan = json.loads((tmp_path / "w" / "plan.json").read_text())
  assert plan["config"]["data_dir"] == str(tmp_path / "images")


@pytest.mark.parametrize("body,line", [
    # It said `--config is required` to a user who had given it.
    ("  config = {'seed': 1}\n",
     "error: the config file's get_config returned None (--config): return the config, "
     "e.g. bit_train.config.base_config() changed as your run needs."),
    # `config.batchsize = 16` was read by no one: the run planned the default batch of
    # 512 without a word.
    ("  config = c.base_config()\n  config.batchsize = 16\n  return config\n",
     "error: the config sets fields no run reads: 'batchsize' (did you mean "
     "'batch_size'?): rename or remove them (bit-train --help lists every field)."),
], ids=["get_config_returns_none", "a_field_no_run_reads"])
def test_a_config_file_s_mistake_is_one_line_saying_what_it_is(tmp_path, capsys, body,
                                                               line):
  path = tmp_path / "own.py"
  path.write_text(f"from bit_train import config as c\n\n\ndef get_config(arg=None):\n{body}")
  result = run_here(train.run, "--config", str(path), "--workdir", tmp_path / "w",
                    "--dry_run", capsys=capsys)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert error_lines(result.stderr) == [line]
  assert not (tmp_path / "w").exists()


def test_a_config_file_returning_none_prints_its_error_line_alone(tmp_path, cli):
  """A real process: config_flags logs a warning on it before the flags are parsed,
  and absl's "WARNING: Logging before flag parsing goes to stderr." stood above the
  error line."""
  path = tmp_path / "own.py"
  path.write_text("def get_config(arg=None):\n  config = {'seed': 1}\n")
  result = cli("bit_train.train", "--config", path, "--workdir", tmp_path / "w",
               "--dry_run")
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      "error: the config file's get_config returned None (--config): return the config, "
      "e.g. bit_train.config.base_config() changed as your run needs."]


@pytest.mark.parametrize("body", ["return {'dataset': 'cifar10'}",
                                  "return ml_collections.ConfigDict({'seed': 1})"])
def test_a_config_not_made_from_base_config_says_so(tmp_path, capsys, body):
  """It was a KeyError from bit_train/config.py, not a line of the user's file."""
  path = tmp_path / "own.py"
  path.write_text(f"import ml_collections\n\n\ndef get_config(arg=None):\n  {body}\n")
  result = run_here(train.run, "--config", str(path), "--workdir", tmp_path / "w",
                    "--dry_run", capsys=capsys)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  (line,) = error_lines(result.stderr)
  assert line.startswith("error: the config lacks fields every run needs (") and (
      "start get_config from bit_train.config.base_config()" in line)


def test_comma_inside_a_value_hints_at_the_config_flag(capsys):
  code, stderr = parse_config_flag(f"{TRANSFER}:data_dir=a,b", capsys)
  assert code == 2
  line, = error_lines(stderr)
  assert "unknown config field 'b'" in line and "--config.data_dir=" in line


@pytest.mark.parametrize("content, says", [
    (None, "No such file or directory"),
    ("folder", "it is a directory, not a file"),
    (b"\xe9t\xe9 = 1\n", "it is not UTF-8 text (byte b'\\xe9' at offset 0)"),
    (b"# coding: no-such-codec\n", "its encoding cannot be used (unknown encoding"),
    (b"x = 1\x00\n", "it holds NUL characters"),
])
def test_a_config_file_that_cannot_be_read_is_one_line_naming_it(tmp_path, capsys,
                                                                content, says):
  """Checked through the reading layer before config_flags imports it, in bit-train
  and in the experiments' plans (which load a suite's configs the same way)."""
  path = tmp_path / "my_config.py"
  if content == "folder":
    path.mkdir()
  elif content is not None:
    path.write_bytes(content)
  result = run_here(train.run, "--config", f"{path}:seed=1", "--workdir",
                    tmp_path / "w", "--dry_run", capsys=capsys)
  assert result.returncode == 2 and "Traceback" not in result.stderr
  line, = error_lines(result.stderr)
  assert line.startswith(f"error: cannot read the config file {path}: ") and says in line
  with pytest.raises(UserError) as error:
    plans.load_config(f"{path}:seed=1")
  assert str(error.value) == line.removeprefix("error: ")
  assert not (tmp_path / "w").exists()


def test_a_config_file_declaring_its_encoding_is_read_as_python_reads_it(tmp_path):
  path = tmp_path / "latin.py"
  path.write_bytes("# -*- coding: latin-1 -*-\nfrom bit_train import config\n\n\n"
                   "def get_config(arg=None):\n  c = config.base_config()\n"
                   "  c.data_dir = 'Été'\n  return c\n".encode("latin-1"))
  assert bit_cli.load_config(str(path)).data_dir == "Été"


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
  # In this process; test_train.py runs this kind of mistake as a real process.
  result = run_here(train.run, "--config", TRANSFER, "--config.batch_size=abc",
                    "--workdir", tmp_path / "w", "--dry_run", capsys=capsys)
  assert result.returncode == 2, result.stderr[-2000:]
  line, = error_lines(result.stderr)
  assert "--config.batch_size=abc" in line and "Traceback" not in result.stderr


def test_deterministic_with_xla_is_one_line_before_anything_runs():
  config = bit_config.apply_arg(bit_config.base_config(),
                                "deterministic=true,jit_compile=true")
  with pytest.raises(UserError, match="deterministic=True with jit_compile=True"):
    specs.run_spec(bit_config.validate(config))
