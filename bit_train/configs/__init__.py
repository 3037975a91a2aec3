"""The packaged configs, named without a path: `--config transfer:dataset=cifar10`.

Each file's get_config(arg=None) starts from bit_train.config.base_config() and
changes what its experiment family needs. A --config that is a path (holds a `/` or
ends in `.py`) is the user's own config file and is left as it is.
"""

import ast
import difflib
import importlib
import os

from bit_train.errors import UserError

DIRECTORY = os.path.dirname(os.path.abspath(__file__))


def names():
  return sorted(n[:-3] for n in os.listdir(DIRECTORY)
                if n.endswith(".py") and not n.startswith("_"))


def path(name):
  return os.path.join(DIRECTORY, f"{name}.py")


def describe():
  """[(name, the first line of its docstring)] of every packaged config."""
  described = []
  for name in names():
    with open(path(name), encoding="utf-8") as f:
      doc = ast.get_docstring(ast.parse(f.read())) or ""
    described.append((name, doc.strip().splitlines()[0] if doc.strip() else ""))
  return described


def resolve(argument):
  """The --config argument with a packaged config's name replaced by its file's path:
  `transfer:dataset=cifar10` -> `<package>/configs/transfer.py:dataset=cifar10`.
  A path (your own config file) is returned as it is."""
  name, colon, rest = argument.partition(":")
  if os.sep in name or "/" in name or name.endswith(".py"):
    return argument
  if name not in names():
    close = difflib.get_close_matches(name, names(), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(f"unknown config {name!r}{hint}: name one of {', '.join(names())}, "
                    "or give the path of your own config file (e.g. ./my_config.py).")
  return path(name) + colon + rest


def load(name, arg=None):
  """The ConfigDict of packaged config `name` with `arg` (`key=val,...`) applied."""
  return importlib.import_module(f"{__name__}.{name}").get_config(arg)
