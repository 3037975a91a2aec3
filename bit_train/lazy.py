"""TensorFlow, imported when first used.

The modules that plan a run as well as run it (the data sources, weight files,
file helpers) write `from bit_train.lazy import tensorflow as tf` and use `tf` as
usual: TensorFlow is imported at the first attribute a function reads, so
`--dry_run`, the experiments runner's planning and emission, and `--help` start
without it.
"""

import importlib


class Deferred:
  """A module imported at its first attribute access."""

  def __init__(self, name):
    self._name = name

  def __getattr__(self, attr):
    return getattr(importlib.import_module(self._name), attr)


tensorflow = Deferred("tensorflow")
