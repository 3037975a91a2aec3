"""Data promises of issue 11: the folder scan agrees with the decoder the streams use,
and each folder or dataset mistake is one clear error, early."""

import logging
import struct
import time

import numpy as np
import pytest

from bit_train import config as bit_config
from bit_train import specs
from bit_train.data import preprocess
from bit_train.data import sources
from bit_train.errors import UserError
from data_images import encode, folder_config, random_image, write_folder


def png_with_bad_crc():
  """A PNG whose IDAT chunk has a wrong CRC: Pillow decodes it, libpng refuses it."""
  data = bytearray(encode(random_image(np.random.default_rng(5))))
  start = data.find(b"IDAT")
  length = struct.unpack(">I", data[start - 4:start])[0]
  data[start + 4 + length] ^= 0xFF  # first byte of the chunk's CRC
  return bytes(data)


def test_a_file_the_streams_cannot_decode_is_skipped_by_the_scan(tmp_path, caplog):
  write_folder(tmp_path, {"a": 3, "b": 3}, fmt="PNG", ext="png")
  (tmp_path / "a" / "bad_crc.png").write_bytes(png_with_bad_crc())
  with caplog.at_level(logging.WARNING):
    source = sources.for_training(specs.data_spec(folder_config(tmp_path, holdout_fraction=0.3)))
  warning, = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
  assert "bad_crc.png" in warning and "Invalid PNG data" in warning
  # Every image the scan kept goes through the streams' decoder.
  for examples in (source.train_examples().read(), source.eval_examples().read()):
    for encoded, _ in examples.as_numpy_iterator():
      preprocess.decode(encoded)
  assert source.facts.num_examples + len(list(source.eval_examples().read())) == 6
  # bit-eval reads folders through the same scan (holdout_fraction=0: every image).
  evaluated = sources.open_source(specs.data_spec(folder_config(tmp_path, holdout_fraction=0.0)))
  assert len(list(evaluated.eval_examples().read())) == 6


def test_one_class_is_an_error(tmp_path):
  write_folder(tmp_path, {"only": 6})
  with pytest.raises(UserError, match="'only'.*at least two classes"):
    sources.for_training(specs.data_spec(folder_config(tmp_path)))


def test_images_without_class_folders_suggest_the_parent(tmp_path):
  write_folder(tmp_path, {"cats": 4})
  with pytest.raises(UserError, match=(
      f"holds 4 images but no class folders.*give its parent: {tmp_path}")):
    sources.for_training(specs.data_spec(folder_config(tmp_path / "cats")))
  with pytest.raises(UserError, match="no class folders"):
    sources.open_source(specs.data_spec(folder_config(tmp_path / "cats", holdout_fraction=0.0)))


def test_few_shot_larger_than_a_class_names_it_and_the_largest_k(tmp_path):
  write_folder(tmp_path, {"apple": 9, "pear": 4, "plum": 11})
  # The holdout keeps 3 pears for training.
  with pytest.raises(UserError, match=r"pear \(3\); the largest examples_per_class "
                                      r"every class allows is 3\."):
    sources.for_training(specs.data_spec(folder_config(tmp_path, examples_per_class=5)))


@pytest.mark.parametrize("entry", ["{tmp}/missing_folder", "cifar11"])
def test_extra_eval_neither_folder_nor_tfds_name_is_one_error(tmp_path, entry):
  config = bit_config.base_config()
  config.extra_evals = entry.format(tmp=tmp_path)
  with pytest.raises(UserError, match="neither an existing folder nor a TFDS name"):
    specs.eval_specs(config, specs.data_spec(config))


def test_unprepared_tfds_dataset_fails_fast_when_downloads_cannot_start(
    tmp_path, monkeypatch):
  # A proxy nobody listens on: no download can start, and nothing leaves the machine.
  for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"):
    monkeypatch.setenv(name, "http://127.0.0.1:9")
  for name in ("NO_PROXY", "no_proxy"):
    monkeypatch.delenv(name, raising=False)
  config = bit_config.base_config()
  config.dataset, config.data_dir = "mnist", str(tmp_path)
  start = time.monotonic()
  with pytest.raises(UserError, match=r"cannot be downloaded.*tfds build mnist"):
    sources.for_training(specs.data_spec(config))
  assert time.monotonic() - start < 30  # not minutes of retries
