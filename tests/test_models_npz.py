"""Official .npz weights: round trip, suffixed keys, heads, downloads, bad files."""

import os

import numpy as np
import pytest

from bit_train import specs
from bit_train.errors import UserError
from bit_train.models.factory import create_model
from bit_train.models.bit import npz
from bit_train.models import weights

from helpers import images, tiny_config, write_tiny_npz


def npz_config(path, **fields):
  return tiny_config(model_source="npz", model_path=str(path), **fields)


@pytest.mark.parametrize("suffix_convs", [False, True])
def test_npz_round_trip_gives_identical_logits(tmp_path, suffix_convs):
  original = write_tiny_npz(tmp_path / "w.npz", num_classes=5, seed=1,
                            suffix_convs=suffix_convs)
  if suffix_convs:
    assert any("standardized_conv2d_3" in k for k in np.load(tmp_path / "w.npz").files)
  model = create_model(specs.model_spec(npz_config(tmp_path / "w.npz", head="keep")), None)
  x = images(2, 48, 48)
  assert model.num_classes == 5
  np.testing.assert_array_equal(model(x), original(x))


def test_head_new_keeps_the_backbone_and_zeroes_a_head_of_k_classes(tmp_path):
  original = write_tiny_npz(tmp_path / "w.npz", num_classes=5)
  model = create_model(specs.model_spec(npz_config(tmp_path / "w.npz")), num_classes=3)
  x = images(2)
  np.testing.assert_array_equal(model.pre_logits(x), original.pre_logits(x))
  assert model(x).shape == (2, 3) and not np.any(model(x))


def test_a_url_is_downloaded_once_into_the_cache(tmp_path, monkeypatch):
  original = write_tiny_npz(tmp_path / "BiT-T.npz", num_classes=4)
  monkeypatch.setenv("BIT_CACHE_DIR", str(tmp_path / "cache"))
  url = (tmp_path / "BiT-T.npz").as_uri()
  model = create_model(specs.model_spec(npz_config(url, head="keep")), 4)
  assert os.path.exists(tmp_path / "cache" / "BiT-T.npz")
  os.remove(tmp_path / "BiT-T.npz")  # the second load needs only the cache
  again = create_model(specs.model_spec(npz_config(url, head="keep")), 4)
  np.testing.assert_array_equal(again(images(1)), original(images(1)))
  np.testing.assert_array_equal(model(images(1)), original(images(1)))


def test_a_download_with_the_wrong_checksum_is_refused(tmp_path, monkeypatch):
  write_tiny_npz(tmp_path / "BiT-T.npz")
  monkeypatch.setitem(npz.CHECKSUMS, "BiT-T.npz", "0" * 64)
  with pytest.raises(UserError, match="corrupt"):
    weights.fetch((tmp_path / "BiT-T.npz").as_uri(), npz.CHECKSUMS,
                  str(tmp_path / "cache"))
  assert not os.listdir(tmp_path / "cache")
  monkeypatch.setitem(npz.CHECKSUMS, "BiT-T.npz", weights.sha256(tmp_path / "BiT-T.npz"))
  assert os.path.exists(weights.fetch((tmp_path / "BiT-T.npz").as_uri(), npz.CHECKSUMS,
                                      str(tmp_path / "cache")))


def test_an_unreachable_url_is_one_user_error(tmp_path):
  with pytest.raises(UserError, match="cannot download .*model_path"):
    weights.fetch((tmp_path / "nothing.npz").as_uri(), None, str(tmp_path / "cache"))


def rewrite(path, change):
  arrays = dict(np.load(path))
  change(arrays)
  np.savez(path, **arrays)


@pytest.mark.parametrize("make_bad,fields,message", [
    (lambda p: None, {}, "does not exist"),
    (lambda p: p.write_text("not weights"), {}, "is not a valid .npz file"),
    (lambda p: np.save(open(p, "wb"), np.zeros(3)), {}, "an .npy file holding a single array"),
    (lambda p: rewrite(p, lambda a: a.pop("resnet/block2/unit01/b/group_norm/beta")), {},
     "has no key resnet/block2/unit01/b/group_norm/beta"),
    (lambda p: rewrite(p, lambda a: a.update(
        {"resnet/block3/unit01/c/standardized_conv2d/kernel": np.zeros((1, 1, 64, 7))})),
     {}, r"key resnet/block3/unit01/c/standardized_conv2d/kernel has shape \(1, 1, 64, 7\)"),
    (lambda p: None and 0, {"num_units": (3, 4, 6, 3), "width": 1.0},
     r"holds R14x0.25 \(units 1/1/1/1, width 0.25\), not the R50x1"),
    (lambda p: None and 0, {"head": "keep"}, "head of 10 classes but the dataset has 3"),
    (lambda p: rewrite(p, lambda a: a.pop("resnet/head/conv2d/kernel")), {"head": "keep"},
     "has no head"),
])
def test_bad_weight_files_are_one_line_user_errors(tmp_path, make_bad, fields, message):
  path = tmp_path / "w.npz"
  if message != "does not exist":
    write_tiny_npz(path, num_classes=10)
  make_bad(path)
  with pytest.raises(UserError, match=message) as error:
    create_model(specs.model_spec(npz_config(path, **fields)), 3)
  assert str(path) in str(error.value) and "\n" not in str(error.value)


def test_named_model_mismatch_names_both_architectures(tmp_path):
  write_tiny_npz(tmp_path / "w.npz")
  config = npz_config(tmp_path / "w.npz", model="BiT-S-R101x1")
  config.num_units, config.width = None, None
  with pytest.raises(UserError, match="not the R101x1 .* set model"):
    create_model(specs.model_spec(config), 3)
