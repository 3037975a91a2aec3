"""The one reading layer: every file bit-train reads goes through here.

A file is treated as hostile: missing, unreadable, truncated, not UTF-8, not JSON,
JSON of the wrong types or shape, a byte order mark, a corrupt member inside an
.npz, a damaged SavedModel: each becomes one UserError line naming the file and what
is wrong with it.
What the caller gets back has the types it asked for, so no reader downstream meets
a surprise. TensorFlow is imported only for paths with a scheme (gs://...) and for
SavedModels, so the experiments runner and collect stay light.
"""

import codecs
import contextlib
import csv
import io
import json
import os
import pickle
import tokenize
import zipfile
import zlib

import numpy as np

from bit_train.errors import UserError, quote

_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
         (codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
# What numpy and zipfile raise on a damaged .npz or .npy.
# RuntimeError: zipfile's answer to a member whose flags say it is encrypted.
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
               pickle.UnpicklingError, KeyError, NotImplementedError, OverflowError,
               MemoryError, TypeError, SyntaxError, RuntimeError)


class Damaged(ValueError):
  """What is wrong with a file's content, raised inside this module's readers."""


def _fail(path, what, reason, fix):
  return UserError(f"cannot read the {what} {path}: {reason}: {fix}.")


def exists(path):
  if "://" in str(path):
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    return tf.io.gfile.exists(path)
  return os.path.exists(path)


@contextlib.contextmanager
def opened(path, what="file", fix="check the path"):
  """The file open for reading bytes; a missing or unreadable file, or a failed
  read inside, is one UserError line."""
  path = os.fspath(path)
  if "://" in path:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
      with tf.io.gfile.GFile(path, "rb") as f:
        yield f
    except tf.errors.OpError as e:
      raise _fail(path, what, quote(e), fix) from None
    return
  if os.path.isdir(path):
    raise _fail(path, what, "it is a directory, not a file", fix)
  try:
    f = open(path, "rb")
  except OSError as e:
    raise _fail(path, what, e.strerror or quote(e), fix) from None
  with f:
    try:
      yield f
    except OSError as e:
      raise _fail(path, what, e.strerror or quote(e), fix) from None


def read_bytes(path, what="file", fix="check the path"):
  """The file's bytes; a missing or unreadable file is one UserError line."""
  with opened(path, what, fix) as f:
    return f.read()


def decode(data, path, what="file", fix="save it as UTF-8 text"):
  """Text of `data`: UTF-8, or UTF-8/16/32 with a byte order mark (the mark dropped)."""
  encoding = next((name for bom, name in _BOMS if data.startswith(bom)), "utf-8")
  try:
    text = data.decode(encoding)
  except UnicodeDecodeError as e:
    raise _fail(path, what, f"it is not {encoding.upper().replace('-SIG', '')} text "
                f"(byte {e.object[e.start:e.start + 1]!r} at offset {e.start})",
                fix) from None
  if "\x00" in text:
    raise _fail(path, what, "it holds NUL characters, so it is not a text file", fix)
  return text


def read_text(path, what="file", fix="save it as UTF-8 text"):
  return decode(read_bytes(path, what), path, what, fix)


def read_source(path, what="config file", fix="save it as UTF-8 Python"):
  """The text of a Python source file, decoded as Python decodes it (UTF-8, a BOM,
  or the encoding a `# coding:` line declares): checked before Python runs it, so a
  missing, unreadable or undecodable file is one line instead of an import error."""
  data = read_bytes(path, what)
  try:
    encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
  except SyntaxError as e:
    if "missing encoding declaration" not in str(e):  # an unknown or contradicted one
      raise _fail(path, what, f"its encoding cannot be used ({quote(e)})", fix) from None
    encoding = "utf-8"  # no declaration, and the first lines are not UTF-8
  try:
    text = data.decode(encoding)
  except UnicodeDecodeError as e:
    raise _fail(path, what, f"it is not {e.encoding.upper().replace('-SIG', '')} text (byte "
                f"{e.object[e.start:e.start + 1]!r} at offset {e.start})", fix) from None
  if "\x00" in text:
    raise _fail(path, what, "it holds NUL characters, so it is not Python source", fix)
  return text


def read_lines(path, what="file", fix="save it as UTF-8 text, one entry per line",
               distinct=False):
  """The file's lines, stripped, trailing blank lines dropped; `distinct`: no line
  may repeat another (a file whose lines name things one each)."""
  lines = [line.strip() for line in read_text(path, what, fix).splitlines()]
  while lines and not lines[-1]:
    lines.pop()
  if distinct:
    try:
      _check_distinct(lines, "it", "the line")
    except Damaged as e:
      raise _fail(path, what, str(e), fix) from None
  return lines


# JSON shapes: a type (dict, list, str, int, float, bool), a tuple of them, `ListOf`,
# `Record` (a dict with typed fields), or None for anything.


class ListOf:
  """A JSON list whose every item has the shape `item`; `distinct`: no item equals
  another (a list naming things one each, such as an export's class names)."""

  def __init__(self, item, distinct=False):
    self.item, self.distinct = item, distinct

  def name(self):
    return f"a list of {_name(self.item)}"


class MapOf:
  """A JSON object whose every value has the shape `value`."""

  def __init__(self, value):
    self.value = value

  def name(self):
    return f"an object whose values are each {_name(self.value)}"


class Record:
  """A JSON object whose `required` and `optional` fields have the given shapes
  (an optional field may be missing; null only where its shape says NULL); other
  fields are kept unchecked."""

  def __init__(self, required=None, optional=None):
    self.required, self.optional = required or {}, optional or {}

  def name(self):
    return "an object"


NULL = type(None)
_TYPE_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer",
               float: "a number", bool: "true or false", NULL: "null"}


def _name(shape):
  if isinstance(shape, tuple):
    return " or ".join(_name(s) for s in shape)
  if isinstance(shape, (ListOf, MapOf, Record)):
    return shape.name()
  return _TYPE_NAMES.get(shape, getattr(shape, "__name__", str(shape)))


def _is(value, shape):
  if shape is None:
    return True
  if isinstance(shape, tuple):
    return any(_is(value, s) for s in shape)
  if isinstance(shape, ListOf):
    return isinstance(value, list) and all(_is(v, shape.item) for v in value)
  if isinstance(shape, MapOf):
    return isinstance(value, dict) and all(_is(v, shape.value) for v in value.values())
  if isinstance(shape, Record):
    return isinstance(value, dict)
  if shape in (int, float) and isinstance(value, bool):
    return False
  if shape is float:
    return isinstance(value, (int, float))
  return isinstance(value, shape)


def check_shape(value, shape, where="it"):
  """Raises Damaged naming the first part of `value` that does not have `shape`."""
  if not _is(value, shape):
    raise Damaged(f"{where} is {_describe(value)}, not {_name(shape)}")
  if isinstance(shape, tuple):  # the alternative it is, checked as deep as the others
    shape = next(s for s in shape if _is(value, s))
  if isinstance(shape, ListOf):
    for i, item in enumerate(value):
      check_shape(item, shape.item, f"{where}[{i}]")
    if shape.distinct:
      _check_distinct(value, where)
  if isinstance(shape, MapOf):
    for key, item in value.items():
      check_shape(item, shape.value, _field(where, key))
  if isinstance(shape, Record):
    for key, field_shape in shape.required.items():
      if key not in value:
        raise Damaged(f"{where} lacks the field {key!r}")
      check_shape(value[key], field_shape, f"{_field(where, key)}")
    for key, field_shape in shape.optional.items():
      if key in value:
        check_shape(value[key], field_shape, f"{_field(where, key)}")


def _check_distinct(values, where, what=None):
  """Raises Damaged naming the first value of `values` that repeats an earlier one."""
  seen = set()
  for value in values:
    key = json.dumps(value, sort_keys=True)
    if key in seen:
      shown = f"{what} {json.dumps(value)[:40]}" if what else _describe(value)
      raise Damaged(f"{where} holds {shown} twice")
    seen.add(key)


def _field(where, key):
  return f"its field {key!r}" if where == "it" else f"{where}[{key!r}]"


def _describe(value):
  if isinstance(value, dict):
    return "an object"
  if isinstance(value, list):
    return "a list"
  text = json.dumps(value)[:40]
  if isinstance(value, str):
    return f"the string {text}"
  if value is None or isinstance(value, bool):
    return text
  return f"the number {text}"


def parse_json(text, path, what="file", shape=None, fix="write it again or delete it"):
  try:
    value = json.loads(text)
  except ValueError as e:  # json.JSONDecodeError; RecursionError below
    raise _fail(path, what, f"it is not JSON ({quote(e)})", fix) from None
  except RecursionError:
    raise _fail(path, what, "it is not JSON (nested too deeply)", fix) from None
  try:
    check_shape(value, shape)
  except Damaged as e:
    raise _fail(path, what, str(e), fix) from None
  return value


def read_json(path, what="file", shape=None, fix="write it again or delete it"):
  """The JSON value in `path`, checked against `shape` (see Record, ListOf)."""
  return parse_json(read_text(path, what, fix), path, what, shape, fix)


def read_json_if_exists(path, what="file", shape=None, fix="write it again or delete it"):
  """read_json, or None when there is no such file."""
  if not exists(path):
    return None
  return read_json(path, what, shape, fix)


def read_csv(path, what="CSV file", fix="save it as UTF-8 CSV"):
  """The non-empty rows of a CSV file (quoted fields, a BOM, UTF-16 with a BOM)."""
  text = read_text(path, what, fix)
  try:
    rows = [row for row in csv.reader(io.StringIO(text, newline=""))
            if any(cell.strip() for cell in row)]
  except csv.Error as e:
    raise _fail(path, what, f"it is not CSV ({quote(e)})", fix) from None
  return [[cell.strip() for cell in row] for row in rows]


def read_npz(path, what="weight file", select=None, fix="download it again"):
  """{key: array} of an .npz file (keys without `.npy`); `select(key)` False skips a
  member's data. Every member read is checked against its CRC, so a corrupt member
  is an error, never a silently wrong array."""
  with opened(path, what) as f:
    if f.read(6) == b"\x93NUMPY":
      raise _fail(path, what, "it is an .npy file holding a single array, not an .npz",
                  fix)
    f.seek(0)
    return _read_npz(f, path, what, select, fix)


def _read_npz(f, path, what, select, fix):
  try:
    with zipfile.ZipFile(f) as archive:
      arrays = {}
      names = archive.namelist()
      if len(set(names)) != len(names):
        raise Damaged("it names a member twice")
      for name in names:
        key = name[:-4] if name.endswith(".npy") else name
        if select is not None and not select(key):
          arrays[key] = None
          continue
        with archive.open(name) as member:
          try:
            array = np.lib.format.read_array(member, allow_pickle=False)
          except ValueError as e:
            raise Damaged(f"its member {name} is not an array ({quote(e)})") from None
          if member.read(1):  # reading to the end checks the member's CRC
            raise Damaged(f"its member {name} has bytes after its array")
        arrays[key] = array
  except Damaged as e:
    raise _fail(path, what, str(e), fix) from None
  except _NPZ_ERRORS as e:
    raise _fail(path, what, f"it is not a valid .npz file ({type(e).__name__}: "
                f"{quote(e)})", fix) from None
  return arrays


# --- SavedModels -------------------------------------------------------------------

SAVED_MODEL_FIX = "export the model again, or copy the folder again from where it came"


def _fingerprinting():
  """TensorFlow's private fingerprint maker (what tf.saved_model.save writes into
  fingerprint.pb), or None when this TensorFlow has no such function: then the
  SavedModel's files are not compared with their fingerprint."""
  try:
    from tensorflow.python.saved_model.pywrap_saved_model import fingerprinting  # pylint: disable=g-direct-tensorflow-import,g-import-not-at-top
    return fingerprinting.CreateFingerprintDef
  except (ImportError, AttributeError):
    return None


def check_saved_model(folder, what="SavedModel", fix=SAVED_MODEL_FIX):
  """Checks the files of the SavedModel `folder` before TensorFlow loads it:
  saved_model.pb is there, readable and a SavedModel; when fingerprint.pb is there,
  the graph and the variables' index still have the checksums written beside them.
  A damaged file is one UserError line naming it."""
  from bit_train.lazy import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import fingerprint_pb2  # pylint: disable=g-import-not-at-top
  folder = os.fspath(folder)
  graph = os.path.join(folder, "saved_model.pb")
  parsed = _saved_model_graph(folder, what, fix)
  if parsed is None:
    return  # a text SavedModel: TensorFlow's own parse names what is wrong
  fingerprint = os.path.join(folder, "fingerprint.pb")
  create = _fingerprinting()
  if create is None or not exists(fingerprint) or not _fingerprintable(parsed):
    return
  try:
    saved = tf.saved_model.experimental.read_fingerprint(folder)
  except Exception as e:  # pylint: disable=broad-except
    # FingerprintException and what a damaged proto raises: the file cannot be used.
    raise _fail(fingerprint, what, f"it cannot be read ({quote(e)})", "delete it to "
                "load the model without checking its files, or " + fix) from None
  try:  # on a graph that parsed and holds a MetaGraph: the function needs both
    now = fingerprint_pb2.FingerprintDef.FromString(create(folder))
  except Exception:  # pylint: disable=broad-except
    return  # the private function failed on its own: no check, TensorFlow's load decides
  index = os.path.join(folder, "variables", "variables.index")
  for name, field in ((graph, "saved_model_checksum"), (index, "checkpoint_hash")):
    if not exists(name):
      raise _fail(name, what, "it is missing", fix)
    if getattr(saved, field) != getattr(now, field):
      raise _fail(name, what, f"its bytes do not match the {field} in {fingerprint}: "
                  "one of the two files is damaged", fix)


def _saved_model_graph(folder, what, fix):
  """The parsed saved_model.pb of `folder` (None for a text SavedModel, whose
  saved_model.pbtxt TensorFlow's own parse checks); a missing, damaged or empty one
  is one UserError line."""
  from google.protobuf import message  # pylint: disable=g-import-not-at-top
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  graph = os.path.join(folder, "saved_model.pb")
  if not exists(graph):
    if exists(os.path.join(folder, "saved_model.pbtxt")):
      return None
    raise UserError(f"{folder} is not a {what}: it has no saved_model.pb: give the "
                    "folder that holds saved_model.pb and variables/.")
  data = read_bytes(graph, what, fix)
  try:
    parsed = saved_model_pb2.SavedModel.FromString(data)
  except (message.DecodeError, RuntimeWarning, ValueError) as e:
    raise _fail(graph, what, f"it is not a SavedModel graph ({quote(e)})", fix) from None
  if not parsed.meta_graphs:  # e.g. an empty file, which parses as an empty proto
    raise _fail(graph, what, "it holds no MetaGraph, so it is not a SavedModel graph",
                fix)
  return parsed


def signature_outputs(folder, signature="serving_default", what="SavedModel",
                      fix=SAVED_MODEL_FIX):
  """The output names of the SavedModel's `signature` (none when it has no such
  signature), read from saved_model.pb without loading the model; a missing or
  damaged file is one UserError line."""
  parsed = _saved_model_graph(os.fspath(folder), what, fix)
  return {name for meta in (parsed.meta_graphs if parsed else ())
          if signature in meta.signature_def
          for name in meta.signature_def[signature].outputs}


def _fingerprintable(saved_model):
  """Whether TensorFlow's fingerprinting can read this graph without aborting the
  process: it looks up, without checking, the `f` and `config_proto` of every
  function-call node and the `dtype` and `value` of every constant
  (tensorflow/cc/saved_model/fingerprinting.cc). A graph lacking one is left to
  TensorFlow's loader, as one without fingerprint.pb is."""
  needs = {"PartitionedCall": ("f", "config_proto"),
           "StatefulPartitionedCall": ("f", "config_proto"),
           "Const": ("dtype", "value"), "HostConst": ("dtype", "value")}
  return all(all(attr in node.attr for attr in needs.get(node.op, ()))
             for meta in saved_model.meta_graphs for node in meta.graph_def.node)


def damaged_checkpoint(prefix):
  """(the file, why) when the TensorFlow checkpoint `prefix` (a run's checkpoint, a
  SavedModel's variables) cannot be read in full, else None. Every value is read,
  so every stored checksum is checked."""
  from bit_train.lazy import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not exists(prefix + ".index"):
    return prefix + ".index", "its .index file is missing"
  try:
    reader = tf.train.load_checkpoint(prefix)
  except Exception as e:  # pylint: disable=broad-except
    # The reader reports damage as OpErrors, IndexError and more.
    return prefix + ".index", f"it cannot be read ({quote(e)})"
  try:
    for name in reader.get_variable_to_shape_map():
      reader.get_tensor(name)
  except Exception as e:  # pylint: disable=broad-except
    shards = sorted(tf.io.gfile.glob(prefix + ".data-*")) or [prefix + ".data-*"]
    return ", ".join(shards), f"it cannot be read ({quote(e)})"
  return None


def read_saved_model(folder, load, what="SavedModel", fix=SAVED_MODEL_FIX):
  """`load(folder)` (tf.saved_model.load, hub.load) once check_saved_model passed; a
  failure inside is one UserError line naming the variables file when it is
  damaged, else the folder."""
  folder = os.fspath(folder)
  check_saved_model(folder, what, fix)
  try:
    return load(folder)
  except Exception as e:  # pylint: disable=broad-except
    # What TensorFlow raises on damaged files varies (OpErrors, IndexError,
    # ValueError, KeyError, DecodeError...): all of them mean the folder cannot load.
    damaged = damaged_checkpoint(os.path.join(folder, "variables", "variables"))
    if damaged:
      raise _fail(damaged[0], what, damaged[1], fix) from None
    raise _fail(folder, what, f"it cannot be loaded ({type(e).__name__}: {quote(e)})",
                fix) from None
