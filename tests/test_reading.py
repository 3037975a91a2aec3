"""bit_train/reading.py, the one reading layer, and the readers that go through it:
every damaged file is one UserError line naming it, or the right result; never
another exception. The fuzz tests (Hypothesis) mutate each kind of file the project
reads (truncation, byte flips, inserted bytes, deleted zip members, JSON values of
the wrong type) and call the readers in this process."""

import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import types
import zipfile

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest
import tensorflow as tf

from bit_train import export
from bit_train import labels
from bit_train import reading
from bit_train import report
from bit_train import trained_on
from bit_train import workdir as wd
from bit_train.errors import UserError
from bit_train.models.bit import npz
from experiments import runs as runs_lib
from helpers import changed_bytes

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


def one_line_naming(error, path):
  message = str(error.value)
  assert "\n" not in message and str(path) in message, message
  return message


def read_or_one_line(read, path):
  """(what read() returns, None), or (None, its UserError's message) when that is
  one line naming `path`: what every fuzzed reader must do."""
  try:
    return read(), None
  except UserError as error:
    message = str(error)
    assert "\n" not in message and str(path) in message, message
    return None, message


# --- the cases a user meets, one by one --------------------------------------------


@pytest.mark.parametrize("data,says", [
    (None, "No such file or directory"),
    (b"", "it is not JSON"),
    (b'{"a": 1', "it is not JSON"),
    (b"\xff\xfe{\x00", "it is not JSON"),  # UTF-16 with a BOM, cut inside a character
    (b'{"a": "\xe9t\xe9"}', "it is not UTF-8 text (byte b'\\xe9' at offset 7)"),
    (b'{"a": 1}\x00', "it holds NUL characters"),
    (b"[" * 100000, "it is not JSON"),
])
def test_a_damaged_json_file_is_one_line_naming_it_and_what_is_wrong(tmp_path, data,
                                                                     says):
  path = tmp_path / "f.json"
  if data is not None:
    path.write_bytes(data)
  with pytest.raises(UserError) as error:
    reading.read_json(path, "record", dict)
  assert says in one_line_naming(error, path)


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32"])
def test_json_and_csv_with_a_byte_order_mark_read_the_same(tmp_path, encoding):
  path = tmp_path / "f"
  path.write_bytes('{"crop": 32, "model": "Été"}'.encode(encoding))
  assert reading.read_json(path, shape=export.FACTS_SHAPE) == {"crop": 32, "model": "Été"}
  path.write_bytes('path,label\r\n"a, b.jpg",chat\r\nc.jpg,"Été ""x"""\n'.encode(encoding))
  assert reading.read_csv(path) == [["path", "label"], ["a, b.jpg", "chat"],
                                    ["c.jpg", 'Été "x"']]


def test_a_csv_in_another_encoding_or_with_nul_bytes_is_one_line(tmp_path):
  path = tmp_path / "train.csv"
  path.write_bytes("Été.jpg,chat\n".encode("latin-1"))
  with pytest.raises(UserError) as error:
    reading.read_csv(path, "train split's CSV file", "save it as UTF-8")
  assert one_line_naming(error, path) == (
      f"cannot read the train split's CSV file {path}: it is not UTF-8 text (byte "
      "b'\\xc9' at offset 0): save it as UTF-8.")
  path.write_bytes(b"a.jpg,cat\x00\n")
  with pytest.raises(UserError, match="NUL"):
    reading.read_csv(path)


def test_a_label_file_in_utf16_with_a_bom_is_read_and_latin1_is_one_line(tmp_path):
  path = tmp_path / "class_names.txt"
  path.write_bytes("chat\nÉté\n\n".encode("utf-16"))
  assert labels.read_names(str(path)) == ["chat", "Été"]
  path.write_bytes("chat\nÉté\n".encode("latin-1"))
  with pytest.raises(UserError) as error:
    labels.read_names(str(path))
  assert one_line_naming(error, path).startswith(f"cannot read the label file {path}")


@pytest.mark.parametrize("where", ["export.json", "serving asset"])
def test_an_export_naming_a_class_twice_is_one_line_naming_the_file(tmp_path, where):
  """bit-predict printed two outputs under one name, and bit-eval called export.json
  a label file lacking a class: the trainer names each class once, so a name twice
  is a damaged file. A user's label file may name two classes alike (the ILSVRC-2012
  lemmas have two cranes): it stays readable."""
  names = ["checker", "vertical", "checker"]
  if where == "export.json":
    path = tmp_path / "export.json"
    path.write_text(json.dumps({"model": "m", "crop": 32, "class_names": names}))
    says = "its field 'class_names' holds the string \"checker\" twice"
  else:
    path = tmp_path / "assets" / "class_names.txt"
    path.parent.mkdir()
    path.write_text("\n".join(names) + "\n")
    says = "it holds the line \"checker\" twice"
  with pytest.raises(UserError) as error:
    export.find(str(tmp_path))
  assert says in one_line_naming(error, path)
  if where == "serving asset":  # the same lines as a user's label file (--labels)
    assert labels.read_names(str(path)) == names


def test_a_list_of_training_files_in_latin1_is_one_line_naming_it(tmp_path):
  """W/export/trained_files.txt, hand-edited: bit-eval's check of what the model
  trained on (it was read without the reading layer: a UnicodeDecodeError)."""
  (tmp_path / trained_on.FILES).write_bytes("caf\xe9.png\t12\n".encode("latin-1"))
  examples = types.SimpleNamespace(files=([str(tmp_path / "a.png")],), name="test")
  with pytest.raises(UserError) as error:
    trained_on.unseen(examples, str(tmp_path), str(tmp_path))
  assert one_line_naming(error, tmp_path / trained_on.FILES).startswith(
      f"cannot read the list of training files {tmp_path / trained_on.FILES}: it is not "
      "UTF-8 text")


@pytest.mark.parametrize("listed", ["", "garbage\n", "a.png\t12\n"])
def test_a_list_of_training_files_export_json_does_not_record_is_one_line(tmp_path,
                                                                          listed):
  """An emptied or edited trained_files.txt made bit-eval score the model on images
  it trained on, without a word: export.json records the list's count and
  fingerprint."""
  lines = ["a.png\t12", "b.png\t34"]
  (tmp_path / "a.png").write_bytes(b"x" * 12)
  (tmp_path / "b.png").write_bytes(b"x" * 34)
  (tmp_path / "c.png").write_bytes(b"x" * 56)
  record, written = trained_on.describe(types.SimpleNamespace(
      facts=types.SimpleNamespace(name="image_folder", train_split="all",
                                  eval_split="holdout"),
      spec=types.SimpleNamespace(data_dir=str(tmp_path)),
      train_examples=lambda: types.SimpleNamespace(
          files=([str(tmp_path / "a.png"), str(tmp_path / "b.png")],))))
  assert written == lines
  (tmp_path / "export.json").write_text(json.dumps({"run": {"trained_on": record}}))
  examples = types.SimpleNamespace(files=([str(tmp_path / "a.png"),
                                           str(tmp_path / "c.png")],), name="test",
                                   subset=lambda kept: kept)
  (tmp_path / trained_on.FILES).write_text("".join(line + "\n" for line in lines))
  assert trained_on.unseen(examples, str(tmp_path), str(tmp_path)) == [1]
  (tmp_path / trained_on.FILES).write_text(listed)
  with pytest.raises(UserError) as error:
    trained_on.unseen(examples, str(tmp_path), str(tmp_path))
  assert one_line_naming(error, tmp_path / trained_on.FILES) == (
      f"cannot read the list of training files {tmp_path / trained_on.FILES}: it is not "
      f"the list of the 2 files {tmp_path / 'export.json'} records (another "
      "fingerprint): export the run again, or delete it to evaluate every image.")


def _npz(path, compressed=False, **arrays):
  arrays = arrays or {"resnet/root_block/standardized_conv2d/kernel":
                      np.arange(7 * 7 * 3 * 4, dtype=np.float32).reshape(7, 7, 3, 4),
                      "resnet/head/conv2d/bias": np.linspace(0, 1, 10).astype(np.float32)}
  (np.savez_compressed if compressed else np.savez)(path, **arrays)
  return arrays


@pytest.mark.parametrize("compressed", [False, True])
def test_a_corrupt_member_inside_an_npz_is_one_line_naming_the_file(tmp_path, compressed):
  """A flipped byte inside a member's data: the member's CRC says so (np.load would
  hand back a wrong array, or a zlib traceback)."""
  path = tmp_path / "w.npz"
  _npz(path, compressed)
  data = bytearray(path.read_bytes())
  with zipfile.ZipFile(path) as archive:
    info = archive.infolist()[0]
  data[info.header_offset + 30 + len(info.filename) + info.compress_size // 2] ^= 0x10
  path.write_bytes(bytes(data))
  with pytest.raises(UserError) as error:
    npz.read(str(path))
  message = one_line_naming(error, path)
  assert message.startswith(f"cannot read the model file {path}: ")


# --- fuzz: each kind of file, mutated ----------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                max_size=3),
    max_leaves=6)


def byte_mutations(original):
  """Strategies of bytes made from `original`: cut, a byte flipped, bytes inserted."""
  n = len(original)
  cut = st.integers(0, n - 1).map(lambda i: original[:i])
  flip = st.tuples(st.integers(0, n - 1), st.integers(1, 255)).map(
      lambda f: original[:f[0]] + bytes([original[f[0]] ^ f[1]]) + original[f[0] + 1:])
  insert = st.tuples(st.integers(0, n), st.binary(min_size=1, max_size=4)).map(
      lambda f: original[:f[0]] + f[1] + original[f[0]:])
  return st.one_of(cut, flip, insert)


def json_mutations(record):
  """Bytes of `record` with one field given a value of any JSON type, or the whole
  file replaced by one, or the bytes mutated."""
  keys = sorted(record)
  replaced = st.tuples(st.sampled_from(keys), JSON_VALUES).map(
      lambda f: json.dumps(dict(record, **{f[0]: f[1]})).encode())
  whole = JSON_VALUES.map(lambda v: json.dumps(v).encode())
  return st.one_of(replaced, whole, byte_mutations(json.dumps(record).encode()))


def parsed(data):
  """What the bytes hold as JSON by json's own reading (UTF-8/16/32), else None."""
  try:
    return json.loads(data)
  except (ValueError, RecursionError):
    return None


EXPORT_FACTS = {"model": "ResNet-v2 R14x0.5", "crop": 32, "class_names": ["a", "b"]}


@FUZZ
@given(data=json_mutations(EXPORT_FACTS))
def test_fuzzed_export_json_is_one_line_or_the_facts_it_holds(tmp_path, data):
  folder = tmp_path / "export"
  folder.mkdir(exist_ok=True)
  (folder / "export.json").write_bytes(data)
  facts, error = read_or_one_line(lambda: export.find(str(folder)),
                                  folder / "export.json")
  if error:
    return
  held = parsed(data)
  assert isinstance(held, dict), data
  assert (facts.crop, facts.class_names) == (held.get("crop"), held.get("class_names"))
  assert facts.crop is None or (isinstance(facts.crop, int) and facts.crop >= 1)
  assert facts.class_names is None or all(isinstance(n, str) for n in facts.class_names)
  assert facts.class_names is None or len(set(facts.class_names)) == len(facts.class_names)


PLAN = {"config": {"seed": 0, "dataset": "folder"}, "plan": {"batch_size": 512,
                                                            "base_lr": 0.003}}


@FUZZ
@given(data=json_mutations(PLAN))
def test_fuzzed_plan_json_is_one_line_or_the_run_it_records(tmp_path, data):
  (tmp_path / wd.PLAN).write_bytes(data)
  saved, error = read_or_one_line(
      lambda: wd._saved_run(str(tmp_path)),  # pylint: disable=protected-access
      tmp_path / wd.PLAN)
  if error:
    assert "--force" in error
    return
  assert saved == parsed(data)
  assert isinstance(saved["config"], dict) and isinstance(saved["plan"], dict)


METRICS = {"top1": 0.81, "top5": 0.97, "evals": {"real@test": {"top1": 0.8}},
           "provenance": {"packages": {"tensorflow": "2.21"}}}
FAILED = {"returncode": 2, "why": "error: out of memory", "log": "R/logs/x.log"}
RUN = runs_lib.Run(suite="s", dataset="d", model="m", shots="5", seed=0, config="c")


@FUZZ
@given(kind=st.sampled_from(["metrics", "failure"]), data=st.data())
def test_fuzzed_metrics_and_failure_records_are_one_line_or_their_values(tmp_path, kind,
                                                                          data):
  record, path, read = {
      "metrics": (METRICS, wd.path(RUN.workdir(str(tmp_path)), wd.METRICS),
                  runs_lib.metrics),
      "failure": (FAILED, runs_lib.log_path(str(tmp_path), RUN, ".failed.json"),
                  runs_lib.failure)}[kind]
  content = data.draw(json_mutations(record))
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(content)
  value, error = read_or_one_line(lambda: read(str(tmp_path), RUN), path)
  if error:
    return
  assert value == parsed(content)
  if kind == "metrics":
    assert isinstance(value["top1"], (int, float)) and not isinstance(value["top1"], bool)
    assert all(isinstance(e["top1"], (int, float)) for e in value.get("evals", {}).values())
  else:
    assert isinstance(value["why"], str)


PLANNED = {"suites": {"s": {"about": "a suite", "table": "variants"}},
           "runs": [RUN.settings() | {"flags": []}]}


@pytest.mark.parametrize("where", ["field", "suite"])
def test_a_runs_json_naming_a_line_break_is_one_line(tmp_path, where):
  """A field or suite name holding a line break (what the fuzz test below met) was
  printed as it is, so the error took two lines."""
  run = PLANNED["runs"][0]
  record = (dict(PLANNED, runs=[dict(run, **{"varia\nt": "x"})]) if where == "field"
            else dict(PLANNED, runs=[dict(run, suite="s\nt")]))
  (tmp_path / runs_lib.PLANNED).write_text(json.dumps(record))
  with pytest.raises(UserError) as error:
    runs_lib.load_planned(str(tmp_path))
  one_line_naming(error, tmp_path / runs_lib.PLANNED)


@FUZZ
@given(data=json_mutations(PLANNED))
def test_fuzzed_runs_json_is_one_line_or_the_runs_it_lists(tmp_path, data):
  (tmp_path / runs_lib.PLANNED).write_bytes(data)
  loaded, error = read_or_one_line(lambda: runs_lib.load_planned(str(tmp_path)),
                                   tmp_path / runs_lib.PLANNED)
  if error:
    return
  suites, planned = loaded
  assert suites == parsed(data)["suites"]
  for run in planned.values():
    assert all(isinstance(getattr(run, f), str) for f in ("suite", "dataset", "model",
                                                          "shots", "config", "variant"))
    assert isinstance(run.seed, int) and all(isinstance(f, str) for f in run.flags)
    assert run.suite in suites


@FUZZ
@given(data=byte_mutations("tench\ngoldfish\nÉté\n".encode()))
def test_fuzzed_label_file_is_one_line_or_its_lines(tmp_path, data):
  path = tmp_path / "class_names.txt"
  path.write_bytes(data)
  names, error = read_or_one_line(lambda: labels.read_names(str(path)), path)
  if error:
    return
  assert names and all(isinstance(n, str) and "\n" not in n for n in names)
  assert names == [line.strip() for line in data.decode("utf-8").splitlines()][
      :len(names)]


@FUZZ
@given(data=byte_mutations(b'{"step": 1, "loss": 2.5}\n{"step": 2, "top1": 0.5}\n'))
def test_fuzzed_history_is_one_line_or_its_records(tmp_path, data):
  path = tmp_path / wd.HISTORY
  path.write_bytes(data)
  records, error = read_or_one_line(lambda: report.read_history(str(path)), path)
  if error:
    return
  assert all(isinstance(r, dict) and isinstance(r["step"], int) for r in records)


@FUZZ
@given(data=byte_mutations('path,label\n"a, b.jpg",chat\nc.jpg,Été\n'.encode()))
def test_fuzzed_csv_is_one_line_or_rows_of_text(tmp_path, data):
  path = tmp_path / "train.csv"
  path.write_bytes(data)
  rows, error = read_or_one_line(lambda: reading.read_csv(str(path)), path)
  if error:
    return
  assert all(isinstance(cell, str) for row in rows for cell in row)


def npz_mutations():
  """(compressed, mutate) where mutate takes the file's bytes: byte changes, or a
  member deleted from the archive."""
  def delete_member(index):
    def mutate(data):
      out = io.BytesIO()
      with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for n, info in enumerate(src.infolist()):
          if n != index % len(src.infolist()):
            dst.writestr(info, src.read(info))
      return out.getvalue()
    return mutate
  bytes_changed = st.tuples(st.floats(0, 0.999), st.integers(0, 2), st.integers(1, 255)
                            ).map(lambda f: lambda data: changed_bytes(data, *f))
  return st.tuples(st.booleans(), st.one_of(bytes_changed,
                                            st.integers(0, 1).map(delete_member)))


@FUZZ
@given(case=npz_mutations())
def test_fuzzed_npz_is_one_line_or_exactly_its_arrays(tmp_path, case):
  compressed, mutate = case
  path = tmp_path / "w.npz"
  arrays = _npz(path, compressed)
  path.write_bytes(mutate(path.read_bytes()))
  found, error = read_or_one_line(lambda: npz.read(str(path)), path)
  if error:
    return
  assert set(found) <= set(arrays)
  for key, array in found.items():
    np.testing.assert_array_equal(array, arrays[key])
    assert array.dtype == arrays[key].dtype


@FUZZ
@given(data=byte_mutations("# -*- coding: utf-8 -*-\nfrom bit_train import config\n\n\n"
                           "def get_config(arg=None):\n  return config.base_config()  # Été\n"
                           .encode()))
def test_fuzzed_config_file_is_one_line_or_the_text_python_imports(tmp_path, data):
  path = tmp_path / "my_config.py"
  path.write_bytes(data)
  text, error = read_or_one_line(lambda: reading.read_source(str(path)), path)
  if error:
    return
  lines = text.replace("\r\n", "\n").replace("\r", "\n")
  assert "\x00" not in text and lines == importlib.util.decode_source(data)


# --- SavedModels: a small one, each of its files damaged -----------------------------

SAVED_MODEL_FILES = ("saved_model.pb", "fingerprint.pb", "variables/variables.index",
                     "variables/variables.data-00000-of-00001")


class Affine(tf.Module):
  def __init__(self):
    super().__init__()
    self.w = tf.Variable(np.arange(12, dtype=np.float32).reshape(3, 4) / 7)
    self.b = tf.Variable(np.linspace(-1, 1, 4).astype(np.float32))

  @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
  def __call__(self, x):
    return tf.matmul(x, self.w) + self.b


INPUT = np.array([[1., 2., 3.], [-1., 0.5, 0.]], np.float32)


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
  """(the folder of a small SavedModel, {file: its bytes}, what it computes)."""
  folder = tmp_path_factory.mktemp("saved") / "model"
  module = Affine()
  tf.saved_model.save(module, str(folder))
  return folder, {name: (folder / name).read_bytes() for name in SAVED_MODEL_FILES}, \
      module(INPUT).numpy()


@FUZZ
@given(name=st.sampled_from(SAVED_MODEL_FILES), data=st.data())
def test_fuzzed_saved_model_is_one_line_or_loads_what_was_saved(tmp_path, saved_model,
                                                               name, data):
  original, files, expected = saved_model
  folder = tmp_path / "model"
  if folder.exists():
    shutil.rmtree(folder)
  shutil.copytree(original, folder)
  (folder / name).write_bytes(data.draw(byte_mutations(files[name])))
  loaded, error = read_or_one_line(
      lambda: reading.read_saved_model(str(folder), tf.saved_model.load), folder)
  if error:
    assert error.startswith(f"cannot read the SavedModel {folder}"), error
    return
  np.testing.assert_array_equal(loaded(INPUT).numpy(), expected)


@pytest.mark.parametrize("op, attr", [("StatefulPartitionedCall", "f"), ("Const", "dtype")])
def test_a_graph_node_missing_an_attribute_does_not_crash_the_check(tmp_path, saved_model,
                                                                    op, attr):
  """A damaged saved_model.pb that still parses, one node lacking an attribute:
  TensorFlow's fingerprinting looked the attribute up unchecked and the process
  died (a segfault or abort, found by the fuzz test above in one full run). The
  check runs in a child process, so a crash fails this test, not the suite."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  folder = tmp_path / "model"
  shutil.copytree(saved_model[0], folder)
  graph = saved_model_pb2.SavedModel.FromString((folder / "saved_model.pb").read_bytes())
  node = next(n for n in graph.meta_graphs[0].graph_def.node if n.op == op)
  del node.attr[attr]
  (folder / "saved_model.pb").write_bytes(graph.SerializeToString())
  code = ("from bit_train import errors, reading\n"
          "try:\n  reading.check_saved_model(%r)\nexcept errors.UserError:\n  pass\n"
          % str(folder))
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name", SAVED_MODEL_FILES[2:] + ("saved_model.pb",))
def test_a_missing_saved_model_file_is_one_line_naming_it(tmp_path, saved_model, name):
  folder = tmp_path / "model"
  shutil.copytree(saved_model[0], folder)
  (folder / name).unlink()
  with pytest.raises(UserError) as error:
    reading.read_saved_model(str(folder), tf.saved_model.load)
  named = folder if name == "saved_model.pb" else folder / name
  assert str(named) in one_line_naming(error, folder)
