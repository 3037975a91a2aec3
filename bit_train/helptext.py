"""The text of `--help` and of docs/configuration.md, from the declarations.

A command's help lists its own flags, the packaged configs and every config field
it reads (bit_train.config.FIELDS), grouped. The flags are read from the entry
module's source (its `DEFINE_*` calls), not by importing it, so `--help` answers
before TensorFlow is imported; tests/test_helptext.py checks the source reading against
the flags the module defines when imported.
"""

import ast
import importlib.util
import os
import shutil
import sys
import textwrap

from absl import flags

from bit_train import config as bit_config
from bit_train import configs

# Console script -> its entry module.
COMMANDS = {"bit-train": "bit_train.train", "bit-eval": "bit_train.eval",
            "bit-predict": "bit_train.predict"}
# The module whose flags every command has (--verbose), imported before any help.
SHARED_FLAGS_MODULE = "bit_train.cli"
USAGE = {
    "bit-train": "bit-train --config NAME[:field=value,...] --workdir DIR [flags]",
    "bit-eval": "bit-eval --config NAME[:field=value,...] --workdir DIR [flags]",
    "bit-predict": "bit-predict --model MODEL [flags] IMAGE_OR_FOLDER...",
}
WIDTH = 100  # help lines are wrapped to this, or to a narrower terminal


def command_of(module_name):
  """The console script whose entry module is `module_name`, or None."""
  return next((c for c, m in COMMANDS.items() if m == module_name), None)


def _literal(node):
  try:
    return ast.literal_eval(node)
  except ValueError:  # a name or expression: shown as written
    return ast.unparse(node)


def module_flags(module_name):
  """[(name, default, help)] of the flags a module defines at its top level, in
  order, read from its source: `flags.DEFINE_x(name, default, help)` and
  `config_flags.DEFINE_config_file(name, default, help)`."""
  path = importlib.util.find_spec(module_name).origin
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  found = []
  for node in tree.body:
    call = getattr(node, "value", None)
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr.startswith("DEFINE_")):
      continue
    args = dict(zip(("name", "default", "help"), call.args))
    args.update((k.arg, k.value) for k in call.keywords)
    found.append((_literal(args["name"]), _literal(args["default"]),
                  _literal(args["help"])))
  return found


def command_flags(command):
  """The command's own flags, then those every command has."""
  shared = flags.FLAGS.get_flags_for_module(SHARED_FLAGS_MODULE)
  return module_flags(COMMANDS[command]) + [(f.name, f.default, f.help) for f in shared]


def fields_of(command):
  """The config fields `command` reads, in declaration order."""
  return [f for f in bit_config.FIELDS if command in f.commands]


def show_default(value):
  if isinstance(value, bool):
    return str(value).lower()
  if value == "":
    return '""'
  return "None" if value is None else str(value)


def _rows(rows, indent, width):
  """Two columns: names padded to the longest, meanings wrapped after them."""
  pad = max(len(name) for name, _ in rows) + 2
  wrap_width = max(width - indent - pad, 30)
  lines = []
  for name, text in rows:
    wrapped = textwrap.wrap(text, wrap_width) or [""]
    lines.append(" " * indent + name.ljust(pad) + wrapped[0])
    lines += [" " * (indent + pad) + more for more in wrapped[1:]]
  return lines


def command_help(command, width=None):
  """The whole --help text of a console script."""
  width = min(width or shutil.get_terminal_size((WIDTH, 24)).columns, WIDTH)
  module = COMMANDS[command]
  summary = _docstring(module).strip().splitlines()[0]
  lines = [f"usage: {USAGE[command]}", "", summary, "", "Flags:"]
  lines += _rows([(f"--{name}", f"{help_} (default: {show_default(default)})")
                  for name, default, help_ in command_flags(command)], 2, width)
  fields = fields_of(command)
  if not fields:
    lines += ["", f"{command} reads no config file: the flags above are all it takes."]
  else:
    lines += ["", "Configs (--config NAME, or the path of your own config file):"]
    lines += _rows([(name, summary_) for name, summary_ in configs.describe()], 2, width)
    lines += [""] + textwrap.wrap(
        "Config fields: NAME:field=value,field=value (tuples as 300x400 or 100/200/300;"
        " a bare field sets true), or --config.field=value. Defaults in [brackets].",
        width)
    for group, about in bit_config.GROUPS.items():
      in_group = [f for f in fields if f.group == group]
      if in_group:
        lines += ["", f"{group.capitalize()} ({about}):"]
        lines += _rows([(f.name, f"{f.meaning} [{show_default(f.default)}]")
                        for f in in_group], 2, width)
  lines += ["", "absl's and TensorFlow's own flags: --helpfull."]
  return "\n".join(lines)


def _docstring(module_name):
  path = importlib.util.find_spec(module_name).origin
  with open(path, encoding="utf-8") as f:
    return ast.get_docstring(ast.parse(f.read(), path)) or ""


def _cell(text):
  return text.replace("|", "\\|")


def config_page():
  """docs/configuration.md: every field, grouped, as Markdown tables."""
  lines = [
      "# Configuration reference",
      "",
      "<!-- Generated by `python -m bit_train.helptext --markdown > "
      "docs/configuration.md`",
      "     from bit_train/config.py's FIELDS: edit those, not this page. -->",
      "",
      "A config is named after `--config`: a packaged one by its name "
      f"({', '.join(f'`{name}`' for name, _ in configs.describe())}) or your own file "
      "by its path (`my_config.py`, whose `get_config(arg=None)` returns "
      "`bit_train.config.base_config()` changed as it needs). Every field can be set "
      "after the colon (`transfer:dataset=cifar100,batch_size=128`; tuples as "
      "`300x400` or `100/200/300`, since commas separate fields; a bare `flag` sets "
      "true) or with `--config.<field>=<value>`. `bit-train --help` and "
      "`bit-eval --help` print the same list.",
      "",
      "Kind: an *identity* field says what a run computes, so a resumed run must keep "
      "it (`--force` overrides); a *run-only* field says where the inputs are or how "
      "the run executes and reports, so it may change when the run resumes.",
      "",
      "| config | what it is for |",
      "| --- | --- |",
  ]
  lines += [f"| `{name}` | {_cell(summary)} |" for name, summary in configs.describe()]
  for group, about in bit_config.GROUPS.items():
    lines += ["", f"## {group.capitalize()}", "", f"{about[0].upper()}{about[1:]}.", "",
              "| field | default | kind | read by | meaning |",
              "| --- | --- | --- | --- | --- |"]
    lines += [f"| `{f.name}` | `{show_default(f.default)}` | {f.kind} | "
              f"{', '.join(f.commands)} | {_cell(f.meaning)} |"
              for f in bit_config.FIELDS if f.group == group]
  return "\n".join(lines) + "\n"


def page_path():
  """Where the generated page lives in a checkout."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                      "docs", "configuration.md")


if __name__ == "__main__":  # python -m bit_train.helptext --markdown > docs/configuration.md
  if sys.argv[1:] != ["--markdown"]:
    sys.exit("usage: python -m bit_train.helptext --markdown > docs/configuration.md")
  print(config_page(), end="")
