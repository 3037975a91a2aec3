"""`--help` of bit-train, bit-eval and bit-predict, and the generated configuration
page: both come from bit_train/config.py's declarations."""

import json
import re
import subprocess
import sys

import pytest

from bit_train import cli
from bit_train import config as bit_config
from bit_train import helptext
from bit_train import train as bit_train
from helpers import run_here

COMMANDS = tuple(helptext.COMMANDS)


def console_help(command, monkeypatch, capsys):
  """(exit code, stdout) of console script `command --help`, in this process."""
  monkeypatch.setattr(sys, "argv", [command, "--help"])
  with pytest.raises(SystemExit) as stopped:
    cli.console_script(command)
  return stopped.value.code, capsys.readouterr().out


def listed_fields(text):
  """The field names the help lists: a two-space indent, then a lowercase name."""
  return [m.group(1) for m in re.finditer(r"^  ([a-z_]+)\s", text, re.M)]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_exits_0_with_the_commands_flags_and_the_fields_it_reads(
    command, monkeypatch, capsys):
  code, text = console_help(command, monkeypatch, capsys)
  assert code in (0, None)
  assert text.startswith(f"usage: {command} ")
  for name, _, _ in helptext.command_flags(command):
    assert re.search(rf"^  --{name}\s", text, re.M), name
  assert re.search(r"^  --verbose\s", text, re.M)
  reads = [f.name for f in bit_config.FIELDS if command in f.commands]
  assert [f for f in listed_fields(text) if f in bit_config.base_config()] == reads
  assert "--alsologtostderr" not in text and "--helpfull" in text  # absl's stay behind


def test_every_field_is_listed_by_bit_train_and_only_evaluation_ones_by_bit_eval(
    monkeypatch, capsys):
  train_fields = listed_fields(console_help("bit-train", monkeypatch, capsys)[1])
  eval_fields = listed_fields(console_help("bit-eval", monkeypatch, capsys)[1])
  assert set(bit_config.base_config()) <= set(train_fields)
  assert "base_lr" not in eval_fields and "supports" not in eval_fields
  assert "crop" in eval_fields and "class_map" in eval_fields


def test_python_m_entry_module_gives_the_same_help(monkeypatch, capsys):
  expected = console_help("bit-train", monkeypatch, capsys)[1]
  result = run_here(bit_train.run, "--help", capsys=capsys)
  assert result.returncode == 0 and result.stdout == expected


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_answered_without_importing_tensorflow(command):
  function = {"bit-train": "train", "bit-eval": "evaluate", "bit-predict": "predict"}
  code = (f"import sys; sys.argv = [{command!r}, '--help']\n"
          "from bit_train import cli\n"
          f"try:\n  cli.{function[command]}()\n"
          "except SystemExit as e:\n"
          "  print(e.code, 'tensorflow' in sys.modules, file=sys.stderr)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.stderr.split() == ["0", "False"], result.stderr


@pytest.mark.parametrize("module", sorted(helptext.COMMANDS.values()))
def test_flags_read_from_the_source_are_those_the_module_defines(module):
  """The help reads DEFINE_* calls from the entry module's source; importing the
  module must define exactly those flags (name, default, help)."""
  code = (f"import json, {module}\nfrom absl import flags\n"
          f"print(json.dumps([(f.name, f.default, f.help) for f in "
          f"flags.FLAGS.get_flags_for_module({module!r})]))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr
  defined = json.loads(result.stdout.strip().splitlines()[-1])
  assert json.loads(json.dumps(helptext.module_flags(module))) == defined


def test_the_configuration_page_is_generated_from_the_declarations():
  with open(helptext.page_path(), encoding="utf-8") as f:
    page = f.read()
  assert page == helptext.config_page(), (
      "docs/configuration.md differs from bit_train/config.py's FIELDS: run "
      "python -m bit_train.helptext --markdown > docs/configuration.md")
  for field in bit_config.base_config():
    assert f"| `{field}` |" in page
