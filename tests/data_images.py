"""Small generated images and folders for the data tests."""

import io
import os

import numpy as np
from PIL import Image

from bit_train import config as bit_config


def random_image(rng, height=40, width=48, mode="RGB"):
  pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  return Image.fromarray(pixels).convert(mode)


def encode(image, fmt="PNG"):
  buffer = io.BytesIO()
  image.save(buffer, fmt)
  return buffer.getvalue()


def write_folder(root, counts, size=(40, 48), fmt="JPEG", ext="jpg", seed=0):
  """root/<class>/<i>.<ext> with counts[class] random images; returns the root."""
  rng = np.random.default_rng(seed)
  for name, count in counts.items():
    os.makedirs(os.path.join(root, name), exist_ok=True)
    for i in range(count):
      random_image(rng, *size).save(os.path.join(root, name, f"{i}.{ext}"), fmt)
  return str(root)


def folder_config(root, **fields):
  """A base config reading the image folder at root, with `fields` set."""
  config = bit_config.base_config()
  config.dataset = "image_folder"
  config.data_dir = str(root)
  config.update(fields)
  return config
