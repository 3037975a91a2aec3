"""Image folders: layout, class order, holdout, few-shot, formats, bad files, dry run."""

import json
import logging
import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from bit_train import specs
from bit_train import train as bit_train
from bit_train.data.sources import folder as folders
from bit_train.data import preprocess
from bit_train.data import sources
from bit_train.errors import UserError

from helpers import encode, folder_config, random_image, write_folder
from helpers import error_lines, run_here


COUNTS = {"zebra": 12, "ant": 7, "Moth": 5}


def labels_of(dataset):
  return [int(label) for _, label in dataset.as_numpy_iterator()]


def test_classes_are_sorted_and_counts_match(tmp_path):
  write_folder(tmp_path, COUNTS)
  source = sources.for_training(specs.data_spec(folder_config(tmp_path, holdout_fraction=0.2)))
  names = sorted(COUNTS)
  assert source.class_names == tuple(names)
  train = labels_of(source.train_examples().read())
  held = labels_of(source.eval_examples().read())
  for label, name in enumerate(names):
    count = COUNTS[name]
    assert held.count(label) == max(1, round(0.2 * count))  # stratified
    assert train.count(label) + held.count(label) == count
  assert source.facts.num_examples == len(train)
  assert source.facts.num_classes == len(COUNTS)
  assert source.facts.image_size == (40, 48)
  assert "measuring" in source.facts.sources["image_size"]


def test_holdout_is_the_same_every_time_and_disjoint(tmp_path):
  write_folder(tmp_path, COUNTS)
  config = folder_config(tmp_path)
  first = sources.for_training(specs.data_spec(config))
  second = sources.for_training(specs.data_spec(config))
  encoded = lambda ex: sorted(e for e, _ in ex.read().as_numpy_iterator())  # noqa: E731
  assert encoded(first.eval_examples()) == encoded(second.eval_examples())
  assert not set(encoded(first.eval_examples())) & set(encoded(first.train_examples()))


def test_split_folders_are_used_and_eval_classes_must_exist_in_train(tmp_path):
  write_folder(tmp_path / "train", {"a": 4, "b": 3}, seed=1)
  write_folder(tmp_path / "test", {"b": 2}, seed=2)
  source = sources.for_training(specs.data_spec(folder_config(tmp_path)))
  assert (source.facts.train_split, source.facts.eval_split) == ("train", "test")
  assert sorted(labels_of(source.train_examples().read())) == [0] * 4 + [1] * 3
  assert labels_of(source.eval_examples().read()) == [1, 1]
  write_folder(tmp_path / "test", {"c": 1}, seed=3)
  with pytest.raises(UserError, match="no counterpart in the train split"):
    sources.for_training(specs.data_spec(folder_config(tmp_path)))
  with pytest.raises(UserError, match="no folder 'nope'"):
    sources.for_training(specs.data_spec(folder_config(tmp_path, eval_split="nope")))


def test_few_shot_gives_exactly_k_per_class_the_same_for_the_same_seed(tmp_path):
  write_folder(tmp_path, {"a": 9, "b": 8, "c": 11})
  def few_shot(k, seed):
    source = sources.for_training(specs.data_spec(folder_config(tmp_path, examples_per_class=k,
                                               few_shot_seed=seed)))
    examples = list(source.train_examples().read().as_numpy_iterator())
    assert source.facts.num_examples == len(examples) == 3 * k
    assert np.bincount([label for _, label in examples]).tolist() == [k] * 3
    return {encoded for encoded, _ in examples}
  assert few_shot(3, seed=0) == few_shot(3, seed=0)
  assert few_shot(3, seed=0) != few_shot(3, seed=1)
  assert few_shot(2, seed=0) < few_shot(3, seed=0)
  with pytest.raises(UserError, match="examples_per_class=8"):
    few_shot(8, seed=0)  # the holdout leaves 7 of class b


def test_few_shot_indices_exact_and_deterministic():
  labels = np.random.default_rng(0).integers(0, 5, 300)
  chosen = sources.few_shot_indices(labels, 4, seed=3, class_names=tuple("abcde"))
  assert np.bincount(labels[chosen]).tolist() == [4] * 5
  assert chosen == sources.few_shot_indices(labels, 4, seed=3, class_names=tuple("abcde"))


@pytest.mark.parametrize("mode,fmt,ext", [
    ("L", "JPEG", "jpg"), ("CMYK", "JPEG", "jpeg"), ("RGBA", "PNG", "png"),
    ("P", "GIF", "gif"), ("RGB", "BMP", "bmp"), ("RGBA", "WEBP", "webp")])
def test_every_image_kind_becomes_rgb(tmp_path, mode, fmt, ext):
  image = random_image(np.random.default_rng(0), 33, 45, mode)
  for name in ("one", "two"):  # a classifier needs two classes
    os.makedirs(tmp_path / name)
    image.save(tmp_path / name / f"x.{ext.upper()}", fmt)
  source = sources.for_training(specs.data_spec(folder_config(tmp_path, holdout_fraction=0.5)))
  examples = list(source.train_examples().read().as_numpy_iterator())
  assert [label for _, label in examples] == [0, 1]
  assert source.facts.image_size == (33, 45)
  decoded = preprocess.eval_image(examples[0][0], 32)
  assert decoded.shape == (32, 32, 3) and decoded.dtype == tf.float32


def test_unreadable_files_are_skipped_with_one_warning_naming_each(tmp_path, caplog):
  write_folder(tmp_path, {"a": 4, "b": 4})
  good = encode(random_image(np.random.default_rng(1)), "JPEG")
  bad = {"a/truncated.jpg": good[:len(good) // 2], "a/empty.png": b"",
         "b/notes.jpg": b"not an image at all", "b/half.png":
         encode(random_image(np.random.default_rng(2)))[:300]}
  for name, data in bad.items():
    (tmp_path / name).write_bytes(data)
  (tmp_path / "b" / "readme.txt").write_text("not an image extension: ignored")
  with caplog.at_level(logging.WARNING):
    source = sources.for_training(specs.data_spec(folder_config(tmp_path, holdout_fraction=0.25)))
  warnings = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
  assert len(warnings) == 1 and f"skipped {len(bad)} unreadable" in warnings[0]
  for name in bad:
    assert str(tmp_path / name) in warnings[0]
  assert "readme" not in warnings[0]
  assert len(labels_of(source.train_examples().read())) + len(
      labels_of(source.eval_examples().read())) == 8
  images, _ = next(iter(source.train_examples().read().map(
      lambda e, l: (preprocess.eval_image(e, 16), l)).batch(100)))
  assert images.shape[0] == source.facts.num_examples  # the rest all decode


def test_empty_folder_and_empty_class_are_one_clear_error(tmp_path):
  with pytest.raises(UserError, match="no images in"):
    sources.for_training(specs.data_spec(folder_config(tmp_path)))
  write_folder(tmp_path, {"a": 3})
  os.makedirs(tmp_path / "b")
  (tmp_path / "b" / "broken.jpg").write_bytes(b"")
  with pytest.raises(UserError, match=r"class folder .*b has no readable images"):
    sources.for_training(specs.data_spec(folder_config(tmp_path)))
  with pytest.raises(UserError, match="data_dir"):
    sources.for_training(specs.data_spec(folder_config(tmp_path / "missing")))
  with pytest.raises(UserError, match="needs data_dir"):
    sources.for_training(specs.data_spec(folder_config(tmp_path, data_dir=None)))


def test_holdout_keeps_one_for_training_and_fraction_must_be_in_range(tmp_path):
  labels = np.repeat([0, 1, 2], [1, 2, 20])
  n = len(labels)
  split = folders.Split(("x.jpg",) * n, tuple(labels), ((8, 8),) * n, (1,) * n)
  kept, held = folders.holdout(split, 0.5, 3)
  assert np.bincount(labels[held], minlength=3).tolist() == [0, 1, 10]
  assert sorted(kept + held) == list(range(len(labels)))
  write_folder(tmp_path, {"a": 3})
  with pytest.raises(UserError, match="holdout_fraction=1"):
    sources.for_training(specs.data_spec(folder_config(tmp_path, holdout_fraction=1.0)))


def test_describe_uses_the_folder_and_config_overrides(tmp_path):
  write_folder(tmp_path, {"a": 5, "b": 5}, size=(120, 100))
  facts = sources.describe(specs.data_spec(folder_config(tmp_path)))
  assert facts.image_size == (120, 100) and facts.class_names == ("a", "b")
  facts = sources.describe(specs.data_spec(folder_config(tmp_path, image_size=(20, 20))))
  assert facts.image_size == (20, 20) and facts.sources["image_size"].startswith("config")


def test_dry_run_on_a_folder_prints_the_measured_size_and_plan(tmp_path, capsys):
  # bit-train's run() in this process (helpers.run_here): no TensorFlow start-up.
  root = write_folder(tmp_path / "images", {"cat": 6, "dog": 6}, size=(50, 60))
  workdir = tmp_path / "work"
  result = run_here(bit_train.run, "--config",
                    f"folder:data_dir={root},batch_size=16",
                    "--workdir", workdir, "--dry_run", capsys=capsys)
  assert result.returncode == 0, result.stderr
  assert "median 50x60" in result.stdout
  assert "resize to 160, random crop 128" in result.stdout
  plan = json.loads((workdir / "plan.json").read_text())
  assert plan["plan"]["num_examples"] == 10  # one image of each class held out
  empty = tmp_path / "empty"
  os.makedirs(empty)
  result = run_here(bit_train.run, "--config", f"folder:data_dir={empty}",
                    "--workdir", workdir, "--dry_run", capsys=capsys)
  assert result.returncode == 2 and len(error_lines(result.stderr)) == 1


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


def test_a_dry_run_reads_only_headers_and_the_run_decodes_every_image(tmp_path):
  write_folder(tmp_path, {"a": 3, "b": 3}, size=(20, 30), fmt="PNG", ext="png")
  (tmp_path / "a" / "bad_crc.png").write_bytes(png_with_bad_crc())
  (tmp_path / "b" / "text.png").write_text("not an image")
  dry = folders.scan(str(tmp_path), holdout_fraction=0, decode=False)
  run = folders.scan(str(tmp_path), holdout_fraction=0)
  assert {os.path.basename(p): why for p, why in dry.skipped} == {
      "text.png": "not an image whose header Pillow reads"}
  # A header cannot show a damaged body: the dry run counts bad_crc.png, the run
  # decodes it and skips it by name.
  assert {os.path.basename(p) for p, _ in run.skipped} == {"text.png", "bad_crc.png"}
  dry_sizes = dict(zip(dry.train.paths, dry.train.sizes))
  run_sizes = dict(zip(run.train.paths, run.train.sizes))
  assert set(dry_sizes) - set(run_sizes) == {str(tmp_path / "a" / "bad_crc.png")}
  assert all(dry_sizes[p] == size for p, size in run_sizes.items())
  # So the dry run's count says what it counted (it said 'readable' images).
  spec = specs.data_spec(folder_config(tmp_path, holdout_fraction=0.3))
  assert sources.for_plan(spec).facts.sources["num_examples"] == (
      f"the 5 train images whose headers read (the run decodes each and skips, naming "
      f"it, one it cannot) in the class folders in {tmp_path}")
  assert sources.for_training(spec).facts.sources["num_examples"] == (
      f"the 4 readable train images in the class folders in {tmp_path}")


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


def test_the_walk_survives_links_fifos_devices_and_any_names(tmp_path, caplog):
  """Folder scans (folders._image_files) never hang, count a file once, and name
  what they leave out: a link loop, a link to a folder outside the root, a dangling
  link, a FIFO and a device named like images, two names of one file, a name that
  is not UTF-8."""
  root = tmp_path / "data"
  write_folder(root, {"a": 3, "b": 3})
  outside = write_folder(tmp_path / "outside", {"c": 2})
  os.symlink(root / "a", root / "a" / "loop")  # a/loop/loop/... forever if followed
  os.symlink(os.path.join(outside, "c"), root / "b" / "elsewhere")
  os.symlink(root / "a" / "gone.jpg", root / "a" / "dangling.jpg")
  os.mkfifo(root / "b" / "fifo.jpg")  # reading it would block for ever
  os.symlink("/dev/zero", root / "b" / "zero.jpg")  # reading it would never end
  first = sorted(os.listdir(root / "a"))[0]
  os.link(root / "a" / first, root / "a" / "hardlink.jpg")  # one file, two names
  latin1 = os.fsencode(root / "b") + b"/caf\xe9.jpg"  # not UTF-8
  with open(os.path.join(os.fsencode(root / "b"), sorted(os.listdir(root / "b"))[0].encode()),
            "rb") as f:
    image = f.read()
  with open(latin1, "wb") as f:
    f.write(image)
  with caplog.at_level(logging.WARNING):
    scanned = folders.scan(str(root), holdout_fraction=0)
  assert scanned.class_names == ("a", "b")
  counts = np.bincount(scanned.train.labels)
  assert list(counts) == [3, 4]  # a: 3 (the second name left out); b: 3 + café
  assert len(set(map(os.path.realpath, scanned.train.paths))) == 7
  said = "\n".join(r.getMessage() for r in caplog.records)
  for name, why in [("a/loop", "a link to a folder, not followed"),
                    ("b/elsewhere", "a link to a folder, not followed"),
                    ("a/dangling.jpg", "a dangling link"),
                    ("b/fifo.jpg", "not a regular file"),
                    ("b/zero.jpg", "not a regular file")]:
    assert f"{str(root / name)!r}: {why}" in said, said
  assert "another name of a file already counted" in said


def test_an_unreadable_folder_is_left_out_and_named(tmp_path, caplog, unreadable):
  """A folder the user cannot read, inside a class folder: the scan goes on without
  it and names it; an unreadable class folder is one line naming it."""
  root = tmp_path / "data"
  write_folder(root, {"a": 3, "b": 3})
  write_folder(root / "a", {"locked": 2})
  unreadable(root / "a" / "locked")
  with caplog.at_level(logging.WARNING):
    scanned = folders.scan(str(root), holdout_fraction=0)
  assert list(np.bincount(scanned.train.labels)) == [3, 3]
  said = "\n".join(r.getMessage() for r in caplog.records)
  assert f"{str(root / 'a' / 'locked')!r}: folder not readable (Permission denied)" in said
  unreadable(root / "b")
  with pytest.raises(UserError) as error:
    folders.scan(str(root), holdout_fraction=0)
  assert str(root / "b") in str(error.value) and "\n" not in str(error.value)


def test_scan_cache_decodes_only_new_or_changed_files(tmp_path, monkeypatch):
  from bit_train.data.sources import scan_cache  # pylint: disable=import-outside-toplevel
  root = write_folder(tmp_path / "photos", {"a": 3, "b": 3})
  decoded = []
  real = folders._decode_shapes  # pylint: disable=protected-access

  def recording(paths):
    decoded.append(sorted(os.path.relpath(p, root) for p in paths))
    return real(paths)
  monkeypatch.setattr(folders, "_decode_shapes", recording)

  def scan():
    with scan_cache.kept_in(str(tmp_path)):
      return folders.scan(root, holdout_fraction=0)

  first = scan()
  assert len(decoded[-1]) == 6 and os.path.exists(tmp_path / scan_cache.FILE)
  decoded.clear()
  assert scan() == first and decoded == []  # nothing decoded again
  # One file replaced by a larger image, one new file, one file broken.
  random_image(np.random.default_rng(5), 64, 80).save(os.path.join(root, "a", "0.jpg"))
  random_image(np.random.default_rng(6)).save(os.path.join(root, "b", "9.jpg"))
  with open(os.path.join(root, "b", "1.jpg"), "wb") as f:
    f.write(b"not an image at all")
  third = scan()
  assert decoded == [["a/0.jpg", "b/1.jpg", "b/9.jpg"]]
  assert third.train.sizes[third.train.paths.index(os.path.join(root, "a", "0.jpg"))] == (
      64, 80)
  assert [os.path.relpath(p, root) for p, _ in third.skipped] == ["b/1.jpg"]
  decoded.clear()
  fourth = scan()  # the broken file's verdict is kept too
  assert decoded == [] and fourth.skipped == third.skipped
  assert fourth.train == third.train
