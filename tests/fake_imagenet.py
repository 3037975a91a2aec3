"""Tiny fake ILSVRC-2012 archives in the real layout, for the real TFDS builders.

  manual_dir/ILSVRC2012_img_train.tar   one {wnid}.tar per class, holding {wnid}_{i}.JPEG
  manual_dir/ILSVRC2012_img_val.tar     ILSVRC2012_val_%08d.JPEG
  manual_dir/real.json                  hand-made ReaL labels (imagenet2012_real)

TFDS labels the validation images by zipping the *sorted* names in the val tar
with its bundled validation_labels.txt (one WordNet id per line, in image order),
so images 1..N take the first N lines: the labels of the real first N images.
"""

import io
import json
import os
import tarfile

import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

LABELS = "datasets/imagenet2012/labels.txt"
VALIDATION_LABELS = "datasets/imagenet2012/validation_labels.txt"


def wnids():
  """The 1000 WordNet ids in label order (sorted), as TFDS numbers them."""
  return tfds.core.tfds_path(LABELS).read_text().split()


def validation_labels(count):
  """Label indices of the first `count` validation images."""
  index = {wnid: i for i, wnid in enumerate(wnids())}
  lines = tfds.core.tfds_path(VALIDATION_LABELS).read_text().split()
  return [index[wnid] for wnid in lines[:count]]


def jpeg(rng, size=32):
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
      buffer, "JPEG", quality=95)
  return buffer.getvalue()


def _add(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def val_name(i):
  """File name of validation image i (0-based)."""
  return f"ILSVRC2012_val_{i + 1:08d}.JPEG"


def write_manual_dir(root, num_val, train_classes=2, seed=0):
  """Writes the two archives; returns the val images' JPEG bytes in order."""
  rng = np.random.default_rng(seed)
  os.makedirs(root, exist_ok=True)
  with tarfile.open(os.path.join(root, "ILSVRC2012_img_train.tar"), "w") as train:
    for wnid in wnids()[:train_classes]:
      inner = io.BytesIO()
      with tarfile.open(fileobj=inner, mode="w") as class_tar:
        _add(class_tar, f"{wnid}_1.JPEG", jpeg(rng))
      _add(train, f"{wnid}.tar", inner.getvalue())
  images = [jpeg(rng) for _ in range(num_val)]
  with tarfile.open(os.path.join(root, "ILSVRC2012_img_val.tar"), "w") as val:
    for i, data in enumerate(images):
      _add(val, val_name(i), data)
  return images


def write_real_json(root, real_labels):
  """real.json: for validation image i, the list of its ReaL label indices."""
  with open(os.path.join(root, "real.json"), "w") as f:
    json.dump(real_labels, f)


def prepare_real(data_dir, manual_dir, monkeypatch):
  """Prepares the real imagenet2012_real builder offline from manual_dir.

  TFDS takes real.json from manual_dir (the file name it registers for the ReaL
  URL) and checks it against the real file's checksum; that check is skipped for
  the hand-made file.
  """
  from tensorflow_datasets.core.download import download_manager
  manager = download_manager.DownloadManager
  validate = manager._register_or_validate_checksums  # pylint: disable=protected-access

  def skip_real_json(self, url, url_info, path):
    if not url.endswith("/real.json"):
      validate(self, url=url, url_info=url_info, path=path)
  monkeypatch.setattr(manager, "_register_or_validate_checksums", skip_real_json)
  builder = tfds.builder("imagenet2012_real", data_dir=data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
  return builder
