"""An easy image task written to disk: stripes a tiny model learns in a few steps.

The tests' and benchmarks' image folder (dataset=image_folder reads it as is).

Class "horizontal" has horizontal stripes, "vertical" vertical ones, "checker" a
checkerboard; colours, phase and noise vary. Horizontal flips and crops keep every
class's pattern, so the HyperRule's augmentation cannot blur the labels.
"""

import os

import numpy as np
from PIL import Image

CLASSES = ("checker", "horizontal", "vertical")


def pattern(kind, size, rng):
  period = int(rng.integers(4, 8))
  phase = int(rng.integers(0, period))
  rows, cols = np.mgrid[0:size, 0:size] + phase
  on = {"horizontal": (rows // (period // 2 or 1)) % 2,
        "vertical": (cols // (period // 2 or 1)) % 2,
        "checker": ((rows // (period // 2 or 1)) + (cols // (period // 2 or 1))) % 2}[kind]
  low, high = rng.uniform(0, 80, 3), rng.uniform(160, 255, 3)
  image = np.where(on[..., None] > 0, high, low) + rng.normal(0, 12, (size, size, 3))
  return np.clip(image, 0, 255).astype(np.uint8)


def write_pattern_folder(root, per_class=12, size=32, seed=0, classes=CLASSES,
                         fmt="png"):
  """Writes root/<class>/<i>.<fmt>; returns the root."""
  rng = np.random.default_rng(seed)
  for kind in classes:
    os.makedirs(os.path.join(root, kind), exist_ok=True)
    for i in range(per_class):
      Image.fromarray(pattern(kind, size, rng)).save(
          os.path.join(root, kind, f"{i:03d}.{fmt}"))
  return str(root)
