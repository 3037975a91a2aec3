"""bit-eval and bit-predict agree on what a trainer export is (its model's name, its
classes, its resolution: W/export/export.json), every run names the architecture it
built, and the tools' mistakes are one line that is true for the tool.

One tiny native run (one unit per block, width 0.5, 32 px crops) is shared by the
module; it was trained at 32 px while the HyperRule for its 32x32 images says 128.
bit-predict runs through its own `run()` in this process (helpers.run_here);
bit-train and bit-eval run as real processes.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from bit_train import export
from bit_train.models import factory
from bit_train import predict as bit_predict
from bit_train.data.patterns import CLASSES
from bit_train.errors import UserError
from bit_train.models.bit import network
from bit_train import specs

from helpers import error_lines
from helpers import finished_folder_run
from helpers import run_here
from helpers import run_module
from helpers import tiny_config
from helpers import write_tiny_npz

TINY = ("model_source=native,num_units=1/1/1/1,width=0.5,precrop=36,crop=32,"
        "batch_size=8,supports=1/2,log_every=1,checkpoint_every=100,lr_scaling=none")
BUILT = "ResNet-v2 R14x0.5 (units 1/1/1/1, width 0.5)"  # what TINY builds
CROP = 32


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """(image folder, workdir, bit-train's log) of one finished tiny run."""
  return finished_folder_run(tmp_path_factory, TINY)


@pytest.fixture
def predict(capsys):
  """predict(*args): bit-predict in this process."""
  return lambda *args: run_here(bit_predict.run, *args, capsys=capsys)


def read_json(*parts):
  with open(os.path.join(*parts)) as f:
    return json.load(f)


def test_a_run_names_the_architecture_it_built(run):
  _, workdir, log = run
  assert f"Model {BUILT} from native: random init" in log
  assert read_json(workdir, "metrics.json")["model"] == BUILT
  facts = read_json(workdir, "export", "export.json")
  assert (facts["model"], facts["crop"], facts["class_names"]) == (
      BUILT, CROP, list(CLASSES))


def test_model_name_follows_overrides_and_npz_files(tmp_path):
  native = dict(model_source="native")
  assert factory.model_name(specs.model_spec(tiny_config(**native, num_units=None, width=None))) == (
      "BiT-M-R50x1")
  # Overrides that spell the named architecture keep its name.
  assert factory.model_name(specs.model_spec(tiny_config(**native, num_units=(3, 4, 6, 3), width=1.0))) == (
      "BiT-M-R50x1")
  assert factory.model_name(specs.model_spec(tiny_config(model_source="native", width=0.5))) == BUILT
  # With an .npz at model_path and no name the registry knows, the file decides.
  write_tiny_npz(str(tmp_path / "mine.npz"), num_classes=3)
  config = tiny_config(model="mine", model_source="npz", num_units=None, width=None,
                       model_path=str(tmp_path / "mine.npz"))
  assert factory.model_name(specs.model_spec(config)) == "ResNet-v2 R14x0.25 (units 1/1/1/1, width 0.25)"
  built = network.ResNetV2((1, 1, 2, 1), 0.25, 3)
  assert factory.model_name(specs.model_spec(config), built) == (
      "ResNet-v2 R17x0.25 (units 1/1/2/1, width 0.25)")


def test_every_path_of_an_export_reads_the_same_facts(run):
  _, workdir, _ = run
  root = os.path.join(workdir, "export")
  for path in (root, os.path.join(root, "serving"), os.path.join(root, "hub_module"),
               root + "/"):
    facts = export.find(path)
    assert (facts.model, facts.crop, facts.class_names) == (BUILT, CROP, list(CLASSES))
    assert facts.hub_module == os.path.join(root, "hub_module")
  with pytest.raises(UserError, match=f"is a training workdir, not a model: use {root}"):
    export.find(workdir)


def test_an_export_without_its_export_json_names_its_model_folders(run, predict,
                                                                   tmp_path):
  """A copy of W/export without export.json (the trainer writes it last): bit-predict
  and bit-eval said the folder held no saved_model.pb, not where the models are."""
  folder, workdir, _ = run
  copy = tmp_path / "export"
  shutil.copytree(os.path.join(workdir, "export"), copy,
                  ignore=shutil.ignore_patterns("export.json"))
  result = predict("--model", copy, folder)
  assert result.returncode == 2
  assert error_lines(result.stderr) == [
      f"error: {copy} holds a trainer export's model folders but not its export.json, "
      "which the trainer writes last (the run's model, classes and crop): give "
      f"{copy}/hub_module or {copy}/serving, or run the run's bit-train command again "
      "to finish its export."]


@pytest.mark.parametrize("name", ["serving", "hub_module"])
def test_a_model_folder_copied_on_its_own_is_read_as_what_it_is(run, predict, tmp_path,
                                                                name):
  """The hub module copied on its own was taken for a serving model (its assets hold
  the class names too): bit-predict ended in a KeyError traceback, and bit-eval asked
  for the hub_module folder it had been given."""
  folder, workdir, _ = run
  copy = str(tmp_path / "model")
  shutil.copytree(os.path.join(workdir, "export", name), copy)
  facts = export.find(copy)
  assert (facts.serving, facts.hub_module) == (
      (copy, None) if name == "serving" else (None, copy))
  assert facts.class_names == list(CLASSES)
  result = predict("--model", copy, "--json", os.path.join(folder, CLASSES[0], "000.png"))
  assert result.returncode == 0, result.stderr[-3000:]
  (image,) = json.loads(result.stdout)["predictions"]
  assert {p["class"] for p in image["predictions"]} == set(CLASSES)


def test_an_export_on_another_file_system_is_found(run):
  """gs:// workdirs (TPU runs): here TensorFlow's in-memory file system."""
  _, workdir, _ = run
  root = "ram://tools_reliability/w/export"
  tf.io.gfile.makedirs(f"{root}/hub_module")
  tf.io.gfile.copy(os.path.join(workdir, "export", "export.json"), f"{root}/export.json")
  facts = export.find(f"{root}/hub_module/")
  assert (facts.model, facts.crop, facts.hub_module) == (BUILT, CROP, f"{root}/hub_module")
  with pytest.raises(UserError, match="training workdir"):
    export.find(os.path.dirname(root))


def eval_export(folder, model_path, workdir):
  return run_module("bit_train.eval", "--config", "imagenet_eval:"
                    f"dataset=image_folder,data_dir={folder},model_path={model_path},"
                    "eval_batch_size=4,strategy=cpu", "--workdir", workdir)


def test_bit_eval_takes_the_export_dir_and_its_name_classes_and_crop(run, tmp_path):
  """model_path=W/export (as bit-predict takes it), no crop, no model: the record
  says what the run built and evaluates at the run's 32 px, not the HyperRule's 128."""
  folder, workdir, _ = run
  result = eval_export(folder, os.path.join(workdir, "export"), str(tmp_path))
  assert result.returncode == 0, result.stderr[-3000:]
  record = read_json(tmp_path, "eval", "metrics.json")
  assert (record["model"], record["crop"]) == (BUILT, CROP)
  assert record["model_path"] == os.path.join(workdir, "export", "hub_module")
  assert record["class_names_from"] == os.path.join(workdir, "export", "export.json")
  (metrics,), = [record["results"].values()]
  # Only the images the run held out: the export lists the ones it trained on.
  trained = read_json(workdir, "metrics.json")
  assert metrics["count"] == trained["count"] < 3 * 8 and not metrics["reordered_classes"]
  assert metrics["top1"] == trained["top1"]


def test_bit_predict_says_the_same_of_the_export(run, predict):
  folder, workdir, _ = run
  image = os.path.join(folder, CLASSES[0], "000.png")
  result = predict("--model", os.path.join(workdir, "export", "serving"), "--json",
                   image)
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout)
  assert out["model"] == {"name": BUILT, "crop": CROP, "num_classes": 3,
                          "class_names_from": os.path.join(workdir, "export",
                                                           "export.json")}
  assert {p["class"] for p in out["predictions"][0]["predictions"]} == set(CLASSES)


@pytest.mark.parametrize("crop", ["-5", "0"])
def test_a_crop_below_one_is_one_line(run, predict, crop):
  folder, workdir, _ = run
  result = predict("--model", os.path.join(workdir, "export", "hub_module"), "--crop",
                   crop, folder)
  assert result.returncode == 2, result.stderr[-3000:]
  assert error_lines(result.stderr) == [f"error: --crop={crop} must be at least 1."]


def test_a_model_that_is_not_there_is_one_line_naming_the_flag(run, predict):
  """Not bit-train's `model_path`: bit-predict's --model."""
  result = predict("--model", "BiT-S-R50x", run[0])
  assert result.returncode == 2, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      "error: --model 'BiT-S-R50x' is no file or folder, TF Hub handle or BiT name: "
      "give an export dir, TF Hub module, .npz file or BiT name (such as BiT-M-R50x1)."
      " Did you mean BiT-S-R50x3, BiT-S-R50x1, BiT-M-R50x3?"]


def test_a_folder_without_images_is_one_line_naming_it(run, predict, tmp_path):
  _, workdir, _ = run
  (tmp_path / "empty" / "sub").mkdir(parents=True)
  (tmp_path / "empty" / "notes.txt").write_text("not an image")
  result = predict("--model", os.path.join(workdir, "export"), str(tmp_path / "empty"))
  assert result.returncode == 2
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "no images given" not in lines[0]
  assert lines[0].startswith(f"error: no image files in {tmp_path / 'empty'}")


@pytest.mark.parametrize("tool", ["bit-predict", "bit-eval"])
def test_an_npz_without_a_head_is_one_line_true_for_each_tool(run, predict, tmp_path,
                                                              tool):
  """bit-train's fix (head=new) is no fix for the tools that need a classifier."""
  folder = run[0]
  write_tiny_npz(str(tmp_path / "full.npz"), num_classes=3)
  features = str(tmp_path / "features.npz")
  with np.load(tmp_path / "full.npz") as data:
    np.savez(features,
             **{k: data[k] for k in data.files if not k.startswith("resnet/head/")})
  if tool == "bit-predict":
    result = predict("--model", features, "--crop", CROP, folder)
  else:
    result = run_module("bit_train.eval", "--config", "imagenet_eval:"
                        f"dataset=image_folder,data_dir={folder},model_source=npz,"
                        f"model=mine,model_path={features},crop={CROP},strategy=cpu",
                        "--workdir", str(tmp_path / "e"))
  assert result.returncode == 2, result.stderr[-3000:]
  lines = error_lines(result.stderr)
  assert len(lines) == 1 and "has no head" in lines[0], result.stderr[-3000:]
  assert "head=new" not in lines[0] and f"{tool} " in lines[0]


HAND_EDITED = {
    "not JSON": ('{"model": "x", "crop": 32', "it is not JSON"),
    "a list": ("[1, 2, 3]\n", "it is a list, not an object"),
    "a crop that is text": ('{"crop": "thirty-two"}', "its field 'crop' is the string"),
    "a crop of zero": ('{"crop": 0}', "its crop is 0"),
    "class names that are numbers": ('{"class_names": [1, 2, 3]}', "'class_names'"),
    "a class named twice": ('{"class_names": ["a", "b", "a"]}',
                            "its field 'class_names' holds the string \"a\" twice"),
}


def hand_edit(workdir, tmp_path, text):
  """A copy of the run's export whose export.json holds `text`."""
  copy = str(tmp_path / "export")
  tf.io.gfile.makedirs(copy)
  for name in tf.io.gfile.listdir(os.path.join(workdir, "export")):
    name = name.rstrip("/")
    if name == "serving":
      os.symlink(os.path.join(workdir, "export", name), os.path.join(copy, name))
  with open(os.path.join(copy, "export.json"), "w") as f:
    f.write(text)
  return copy


@pytest.mark.parametrize("case", HAND_EDITED)
def test_a_hand_edited_export_json_is_one_line_naming_it_in_bit_predict(run, predict,
                                                                        tmp_path, case):
  folder, workdir, _ = run
  text, says = HAND_EDITED[case]
  copy = hand_edit(workdir, tmp_path, text)
  result = predict("--model", copy, folder)
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = error_lines(result.stderr)
  assert line.startswith(f"error: cannot read the export facts {copy}/export.json: ")
  assert says in line


def test_a_hand_edited_export_json_is_one_line_naming_it_in_bit_eval(run, tmp_path):
  folder, workdir, _ = run
  copy = hand_edit(workdir, tmp_path, HAND_EDITED["a list"][0])
  result = eval_export(folder, copy, str(tmp_path / "eval"))
  assert result.returncode == 2, result.stderr[-3000:]
  assert error_lines(result.stderr) == [
      f"error: cannot read the export facts {copy}/export.json: it is a list, not an "
      "object: export the run again, or restore the file the trainer wrote."]


DAMAGED_FILES = {  # a file of the export, and how it is damaged
    "serving/saved_model.pb": lambda data: data[:len(data) // 2],
    "serving/variables/variables.index": lambda data: b"\0" * len(data),
    "serving/variables/variables.data-00000-of-00001": lambda data: data[:-100],
    "hub_module/variables/variables.data-00000-of-00001":
        lambda data: data[:100] + bytes([data[100] ^ 1]) + data[101:],
}


def damaged_copy(workdir, tmp_path, name):
  """A copy of the run's export with the file `name` damaged."""
  copy = tmp_path / "export"
  shutil.copytree(os.path.join(workdir, "export"), copy)
  path = copy / name
  path.write_bytes(DAMAGED_FILES[name](path.read_bytes()))
  return copy, path


@pytest.mark.parametrize("name", list(DAMAGED_FILES)[:3])
def test_a_damaged_export_is_one_line_naming_the_file_in_bit_predict(run, predict,
                                                                     tmp_path, name):
  folder, workdir, _ = run
  copy, path = damaged_copy(workdir, tmp_path, name)
  result = predict("--model", copy, folder)
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = error_lines(result.stderr)
  assert line.startswith(f"error: cannot read the model {path}: "), line
  assert "Traceback" not in result.stderr


def test_a_damaged_export_is_one_line_naming_the_file_in_bit_eval(run, tmp_path):
  folder, workdir, _ = run
  copy, path = damaged_copy(workdir, tmp_path, list(DAMAGED_FILES)[3])
  result = eval_export(folder, copy, str(tmp_path / "eval"))
  assert result.returncode == 2, result.stderr[-3000:]
  (line,) = error_lines(result.stderr)
  assert line.startswith(f"error: cannot read the TF Hub module {path}: it cannot be read "
                         "(TensorBundle"), line
  assert "Checksum does not match" in line
