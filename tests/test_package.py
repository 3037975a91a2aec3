"""bit_train as a package: no import cycle, and importing it changes nothing."""

import ast
import json
import pkgutil
import subprocess
import sys

import bit_train

from helpers import ROOT


def bit_train_imports():
  """{module: the bit_train modules it imports, anywhere in its code}."""
  names = {m.name for m in pkgutil.walk_packages(bit_train.__path__, "bit_train.")}
  names.add("bit_train")
  graph = {}
  for name in names:
    spec = __import__("importlib").util.find_spec(name)
    with open(spec.origin) as f:
      tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        found.update(alias.name for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        # `from package import module` imports the module; `from m import name` m.
        found.update(f"{node.module}.{alias.name}"
                     if f"{node.module}.{alias.name}" in names else node.module
                     for alias in node.names)
    graph[name] = {m for m in found if m in names and m != name}
  return graph


def find_cycle(graph):
  """One import cycle as a list of modules, or None."""
  state = {}

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        return path[path.index(nxt):] + [nxt]
      if nxt not in state:
        cycle = visit(nxt, path + [nxt])
        if cycle:
          return cycle
    state[node] = "done"
    return None
  for node in sorted(graph):
    if node not in state:
      cycle = visit(node, [node])
      if cycle:
        return cycle
  return None


def test_bit_train_has_no_import_cycle():
  graph = bit_train_imports()
  assert "bit_train.data.sources.tfds" in graph and len(graph) > 30
  assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
  # The check can fail: the old catalog and sources imported each other.
  assert find_cycle({**graph, "bit_train.data.sources.base": {
      "bit_train.data.sources"}}) is not None


def test_importing_bit_train_changes_nothing_in_the_process():
  """A notebook's `import bit_train`, even in a process named like an entry point:
  stderr (its object and its file descriptor), the threads and the environment
  stay as they were. Only a run of an entry point quiets the libraries' logs."""
  script = """
import json, os, sys, threading
sys.argv = ["bit-train"]
def state():
  fd = os.fstat(2)
  return [id(sys.stderr), fd.st_dev, fd.st_ino, sorted(t.name for t in threading.enumerate()),
          dict(os.environ)]
before = state()
import bit_train
print(json.dumps([before, state()]))
"""
  result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                          text=True, check=True, cwd=ROOT)
  before, after = json.loads(result.stdout)
  assert before == after
