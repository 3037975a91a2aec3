"""Tiny BiT models for tests: native, as official-layout .npz files, as TF Hub modules.

  model = export_tiny_hub_module(path, kind="feature_vector")  # or "classification"
  config = tiny_config(model_source="hub", model_path=str(path))

The returned native model gives the outputs the exported file must reproduce.
"""

import numpy as np
import tensorflow as tf

from bit_train import config as bit_config
from bit_train.models import bit
from bit_train.models import hub

TINY_UNITS = (1, 1, 1, 1)
TINY_WIDTH = 0.25  # 16 root channels, 512 pre-logits


def tiny_resnet(num_classes=10, seed=0, num_units=TINY_UNITS, width=TINY_WIDTH):
  """A tiny native model whose GN parameters and head are random (not the
  initial identity / zeros), so every parameter shows in its outputs."""
  model = bit.ResNetV2(num_units, width, num_classes, seed=seed)
  rng = np.random.default_rng(seed)
  for key, var in model.params.items():
    if key.endswith("/gamma"):
      var.assign(1. + 0.2 * rng.standard_normal(var.shape))
    elif key.endswith(("/beta", "/bias")) or key == bit.HEAD_KERNEL:
      var.assign(0.2 * rng.standard_normal(var.shape))
  return model


def export_tiny_hub_module(path, kind="feature_vector", num_classes=10, seed=0):
  """Writes a tiny hub-style SavedModel to `path`; returns the model it holds.

  kind="feature_vector": `__call__` gives pre-logits (like google/bit/m-r50x1/1);
  kind="classification": logits of `num_classes` (like .../ilsvrc2012_classification/1).
  """
  model = tiny_resnet(num_classes, seed)
  hub.export_module(model, str(path), kind)
  return model


def write_tiny_npz(path, num_classes=10, seed=0, suffix_convs=False, **arch):
  """Writes a tiny model's variables as an official-layout .npz; returns the model.

  suffix_convs=True names convs `standardized_conv2d_N` as some official files do.
  """
  model = tiny_resnet(num_classes, seed, **arch)
  arrays = {}
  for n, (key, var) in enumerate(model.params.items()):
    if suffix_convs:
      key = key.replace("standardized_conv2d/", f"standardized_conv2d_{n}/")
    arrays[key] = var.numpy()
  np.savez(path, **arrays)
  return model


def tiny_config(**fields):
  """The base config with the tiny native architecture and `fields` set."""
  config = bit_config.base_config()
  config.num_units = TINY_UNITS
  config.width = TINY_WIDTH
  config.update(fields)
  return config


def images(batch=2, height=32, width=32, seed=0):
  return tf.random.stateless_uniform([batch, height, width, 3], seed=[seed, 1])
