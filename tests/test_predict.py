"""bit-predict on image files with a trainer export, a hub module and an .npz file.

bit-predict runs through its own `run()` in this process (helpers.run_here: the
same flag parsing, printing and one-line errors, without a TensorFlow start-up per
case); a file that is no image at all runs it as a real process, for exit code 2.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bit_train import export
from bit_train import hyperrule
from bit_train import predict as bit_predict
from bit_train.data import preprocess

from helpers import error_lines
from helpers import run_here
from helpers import run_module
from helpers import tiny_resnet
from helpers import write_folder
from helpers import write_tiny_npz

CLASSES = ["circle", "square", "star"]
CROP = 32


@pytest.fixture
def predict(capsys):
  """predict(*args): bit-predict in this process."""
  return lambda *args: run_here(bit_predict.run, *args, capsys=capsys)


def probabilities(model, path, crop=CROP):
  with open(path, "rb") as f:
    image = preprocess.eval_image(tf.constant(f.read()), crop)[None]
  return tf.nn.softmax(model(image)).numpy()[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(workdir with W/export, the model it holds) as the trainer writes them."""
  workdir = str(tmp_path_factory.mktemp("w"))
  model = tiny_resnet(len(CLASSES), seed=1)
  plan = hyperrule.plan(100, (32, 32), precrop=CROP, crop=CROP)
  export.export_all(model, plan, CLASSES, workdir)
  return workdir, model


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
  """a.jpg, a folder of two images plus a corrupt .jpg and a non-image file."""
  root = tmp_path_factory.mktemp("photos")
  single = write_folder(str(root / "single"), {"x": 1}, size=(40, 30), seed=2)
  os.rename(os.path.join(single, "x", "0.jpg"), str(root / "a.jpg"))
  album = write_folder(str(root / "album"), {"sub": 2}, size=(50, 60), seed=3)
  with open(os.path.join(album, "sub", "broken.jpg"), "wb") as f:
    f.write(b"\xff\xd8 not really a jpeg")
  with open(os.path.join(album, "notes.txt"), "w") as f:
    f.write("not an image")
  good = [str(root / "a.jpg")] + [os.path.join(album, "sub", f"{i}.jpg")
                                   for i in range(2)]
  return str(root / "a.jpg"), album, good, os.path.join(album, "sub", "broken.jpg")


def test_export_dir_prints_top_classes_and_skips_the_unreadable(predict, exported,
                                                                 photos):
  workdir, model = exported
  single, album, good, broken = photos
  result = predict("--model", os.path.join(workdir, "export"), "--images", single,
                   album, "--top", "2", "--json")
  assert result.returncode == 0, result.stderr[-2000:]
  out = json.loads(result.stdout)
  assert [r["image"] for r in out["predictions"]] == sorted(good, key=good.index)
  for record in out["predictions"]:
    expected = probabilities(model, record["image"])
    best = np.argsort(-expected)[:2]
    assert [p["class"] for p in record["predictions"]] == [CLASSES[i] for i in best]
    assert [p["probability"] for p in record["predictions"]] == pytest.approx(
        expected[best], abs=1e-5)
  assert out["skipped"] == [{"image": broken, "error": "not a readable image "
                             "(JPEG, PNG, GIF, BMP or WebP)"}]
  assert f"skipped {broken}: not a readable image" in result.stderr


def test_hub_module_of_an_export_finds_its_class_names(predict, exported, photos):
  workdir, model = exported
  single = photos[0]
  result = predict("--model", os.path.join(workdir, "export", "hub_module"), "--crop",
                   CROP, "--top", "3", single)
  assert result.returncode == 0, result.stderr[-2000:]
  expected = probabilities(model, single)
  lines = result.stdout.strip().splitlines()
  assert lines[0] == single
  order = np.argsort(-expected)
  assert lines[1:] == [f"  {expected[i]:.4f}  {CLASSES[i]}" for i in order]


def test_npz_classifier_with_a_user_label_file(predict, tmp_path, photos):
  model = write_tiny_npz(str(tmp_path / "tiny.npz"), num_classes=4, seed=5)
  lemmas = ["tench, Tinca tinca", "goldfish, Carassius auratus", "great white shark",
            "tiger shark"]
  (tmp_path / "lemmas.txt").write_text("\n".join(lemmas) + "\n")
  result = predict("--model", str(tmp_path / "tiny.npz"), "--labels",
                   str(tmp_path / "lemmas.txt"), "--crop", CROP, "--top", "1", "--json",
                   photos[0])
  assert result.returncode == 0, result.stderr[-2000:]
  best = int(np.argmax(probabilities(model, photos[0])))
  assert json.loads(result.stdout)["predictions"][0]["predictions"][0]["class"] == (
      lemmas[best])


def test_a_label_file_of_the_wrong_length_is_one_line(predict, exported, photos,
                                                      tmp_path):
  (tmp_path / "two.txt").write_text("a\nb\n")
  result = predict("--model", os.path.join(exported[0], "export"), "--labels",
                   str(tmp_path / "two.txt"), photos[0])
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      f"error: the label file {tmp_path / 'two.txt'} lists 2 classes but the model "
      "outputs 3: give this model's label file."]


def test_no_readable_image_at_all_is_exit_2(exported, photos, tmp_path):
  missing = str(tmp_path / "missing.jpg")
  result = run_module("bit_train.predict", "--model",
                      os.path.join(exported[0], "export"), photos[3], missing)
  assert result.returncode == 2
  assert f"skipped {missing}: no such file" in result.stderr
  assert error_lines(result.stderr) == [
      "error: none of the 2 files could be read as an image (each named above)."]


def test_a_folder_s_unusable_entries_are_skipped_and_named(predict, exported, photos,
                                                          tmp_path, unreadable):
  """An unreadable folder, a FIFO and a dangling link named like images, a FIFO named
  directly: never opened (no hang), each named; exit 0 when an image was classified,
  else one line and exit 2."""
  root = tmp_path / "photos"
  write_folder(str(root), {"ok": 1, "locked": 1}, size=(40, 30), seed=4)
  os.mkfifo(root / "ok" / "fifo.jpg")
  os.symlink(root / "gone.jpg", root / "ok" / "dangling.png")
  os.mkfifo(tmp_path / "named.jpg")
  unreadable(root / "locked")
  export_dir = os.path.join(exported[0], "export")
  result = predict("--model", export_dir, "--json", str(root), str(tmp_path / "named.jpg"))
  assert result.returncode == 0, result.stderr[-2000:]
  out = json.loads(result.stdout)
  assert [r["image"] for r in out["predictions"]] == [str(root / "ok" / "0.jpg")]
  assert out["skipped"] == [
      {"image": str(root / "locked"), "error": "folder not readable (Permission denied)"},
      {"image": str(root / "ok" / "dangling.png"), "error": "a dangling link"},
      {"image": str(root / "ok" / "fifo.jpg"),
       "error": "not a regular file (a FIFO, device or socket)"},
      {"image": str(tmp_path / "named.jpg"),
       "error": "not a regular file (a folder, FIFO, device or socket)"}]
  for record in out["skipped"]:
    assert f"skipped {record['image']}: {record['error']}" in result.stderr
  os.remove(root / "ok" / "0.jpg")
  result = predict("--model", export_dir, str(root), str(tmp_path / "named.jpg"))
  assert result.returncode == 2 and "Traceback" not in result.stderr
  assert error_lines(result.stderr) == [
      "error: none of the 1 files could be read as an image (each named above)."]


@pytest.mark.parametrize("kind", ["export", "npz"])
def test_batches_of_mixed_sizes_give_each_image_its_own_classes(predict, exported,
                                                                photos, tmp_path, kind):
  # Batches of 3 over four images: the first interleaves 60x50 and 40x30 images
  # (two calls of the serving export, rows put back in order), the last has one.
  if kind == "export":
    model, args = exported[1], ["--model", os.path.join(exported[0], "export")]
  else:
    model = write_tiny_npz(str(tmp_path / "tiny.npz"), num_classes=3, seed=6)
    args = ["--model", str(tmp_path / "tiny.npz"), "--crop", str(CROP)]
  single, _, (_, album0, album1), _ = photos
  good = [album0, single, album1, single]
  result = predict(*args, "--batch_size", "3", "--top", "3", "--json", *good)
  assert result.returncode == 0, result.stderr[-2000:]
  records = json.loads(result.stdout)["predictions"]
  assert [r["image"] for r in records] == good
  for record in records:
    expected = probabilities(model, record["image"])
    got = {p["index"]: p["probability"] for p in record["predictions"]}
    assert [got[i] for i in range(3)] == pytest.approx(expected, abs=1e-5)


def test_a_batch_size_below_one_is_one_line(predict, exported, photos):
  result = predict("--model", os.path.join(exported[0], "export"), "--batch_size", "0",
                   photos[0])
  assert result.returncode == 2
  assert error_lines(result.stderr) == ["error: --batch_size=0 must be at least 1."]


def test_a_crop_too_large_for_memory_is_one_line(exported, photos):
  """--crop 1000000 was TensorFlow's ResourceExhaustedError traceback (bit-train's
  crop=, and the guard every command shares, likewise). A real process: the
  allocator's warnings ("Current allocation summary follows.") stood above the line."""
  export_dir = os.path.join(exported[0], "export")
  result = run_module("bit_train.predict", "--model", export_dir, "--crop", "1000000",
                      photos[0])
  assert result.returncode == 2
  assert result.stderr.splitlines() == [
      f"the trainer export {export_dir}: 3 classes, images resized to 1000000 px",
      "error: out of memory: TensorFlow could not allocate a tensor of shape "
      "[1,1000000,1000000,3]: use a smaller crop or batch size (bit-train: "
      "batch_split=k keeps the batch in k smaller micro-batches)."]


def test_a_model_that_is_a_file_but_no_npz_is_one_line_saying_so(predict, photos):
  """An image (or any file not .npz) given as --model was called 'no file or folder'."""
  result = predict("--model", photos[0], photos[0])
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      f"error: --model {photos[0]!r} is a file but not an .npz of weights: give an "
      "export dir, TF Hub module folder, .npz file or BiT name (such as BiT-M-R50x1)."]
