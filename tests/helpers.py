"""The tests' shared helpers: run an entry point as a user does, tiny models, small
images and folders, a tiny TFDS dataset, fake ILSVRC-2012 archives, bit-train's TINY
run, and a recorder of what the model sees in the trainer's own step.

Test files import what they need from here (and the fixtures from conftest.py); no
test file imports another.
"""

import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import types

from absl import flags
from etils import epath
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds
# pylint: disable-next=g-direct-tensorflow-import
from tensorflow.python.ops import control_flow_util

from bit_train import checkpoints
from bit_train import config as bit_config
from bit_train import configs
from bit_train.data.patterns import write_pattern_folder
from bit_train.models import factory
from bit_train.models.bit import network
from bit_train.models.bit import npz
from bit_train.models import hub

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- entry points, as a user runs them -----------------------------------------------

def run_module(module, *args, env=None, timeout=600):
  """Runs `python -m module args...` from the repo root; returns the result."""
  full_env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT,
                        capture_output=True, text=True, env=full_env,
                        timeout=timeout)


def run_here(entry_point, *args, capsys):
  """An entry point's `run()` (e.g. bit_train.train.run) in this process, as
  `python -m` would run it (absl's app.run, flag parsing, one-line errors), without
  a TensorFlow start-up: its returncode, stdout and stderr, as run_module gives them.
  For tests whose point is what a run decides or prints; a real process is for exit
  codes, signals and tracebacks. (Not bit_train.eval: its flags clash with
  bit_train.train's in one process.)"""
  argv, defined = sys.argv, set(flags.FLAGS)
  sys.argv = [entry_point.__module__, *map(str, args)]
  flags.FLAGS.unparse_flags()
  try:
    entry_point()
    code = 0
  except SystemExit as e:
    code = 0 if e.code is None else e.code
  finally:
    sys.argv = argv
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - defined:  # --config.<field>: defined per parse
      delattr(flags.FLAGS, name)
  out, err = capsys.readouterr()
  return types.SimpleNamespace(returncode=code, stdout=out, stderr=err)


def error_lines(stderr):
  """Our `error:` lines, without TensorFlow's start-up chatter."""
  return [line for line in stderr.splitlines() if line.startswith("error:")]


# --- tiny BiT models: native, as official-layout .npz files, as TF Hub modules -------
#
#   model = export_tiny_hub_module(path, kind="feature_vector")  # or "classification"
#   config = tiny_config(model_source="hub", model_path=str(path))
#
# The returned native model gives the outputs the exported file must reproduce.

TINY_UNITS = (1, 1, 1, 1)
TINY_WIDTH = 0.25  # 16 root channels, 512 pre-logits


def tiny_resnet(num_classes=10, seed=0, num_units=TINY_UNITS, width=TINY_WIDTH):
  """A tiny native model whose GN parameters and head are random (not the
  initial identity / zeros), so every parameter shows in its outputs."""
  model = network.ResNetV2(num_units, width, num_classes, seed=seed)
  rng = np.random.default_rng(seed)
  for key, var in model.params.items():
    if key.endswith("/gamma"):
      var.assign(1. + 0.2 * rng.standard_normal(var.shape))
    elif key.endswith(("/beta", "/bias")) or key == npz.HEAD_KERNEL:
      var.assign(0.2 * rng.standard_normal(var.shape))
  return model


def export_tiny_hub_module(path, kind="feature_vector", num_classes=10, seed=0):
  """Writes a tiny hub-style SavedModel to `path`; returns the model it holds.

  kind="feature_vector": `__call__` gives pre-logits (like google/bit/m-r50x1/1);
  kind="classification": logits of `num_classes` (like .../ilsvrc2012_classification/1).
  """
  model = tiny_resnet(num_classes, seed)
  hub.export_module(model, str(path), kind)
  return model


def write_tiny_npz(path, num_classes=10, seed=0, suffix_convs=False, **arch):
  """Writes a tiny model's variables as an official-layout .npz; returns the model.

  suffix_convs=True names convs `standardized_conv2d_N` as some official files do.
  """
  model = tiny_resnet(num_classes, seed, **arch)
  arrays = {}
  for n, (key, var) in enumerate(model.params.items()):
    if suffix_convs:
      key = key.replace("standardized_conv2d/", f"standardized_conv2d_{n}/")
    arrays[key] = var.numpy()
  np.savez(path, **arrays)
  return model


def tiny_config(**fields):
  """The base config with the tiny native architecture and `fields` set."""
  config = bit_config.base_config()
  config.num_units = TINY_UNITS
  config.width = TINY_WIDTH
  config.update(fields)
  return config


def images(batch=2, height=32, width=32, seed=0):
  return tf.random.stateless_uniform([batch, height, width, 3], seed=[seed, 1])


# --- small generated images and folders ----------------------------------------------

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


# --- a tiny TFDS dataset -------------------------------------------------------------

TINY_SHAPES_CLASSES = ["circle", "square", "star"]
TRAIN_LABELS = np.arange(60) % 3
TEST_LABELS = np.arange(15) % 3


def tiny_shapes_sizes(count, seed):
  """Varied (height, width) so the typical size has to be measured."""
  rng = np.random.default_rng(seed)
  return list(zip(rng.integers(30, 60, count), rng.integers(40, 70, count)))


class TinyShapes(tfds.core.GeneratorBasedBuilder):
  """A tiny TFDS dataset (`tiny_shapes`) with images of varied size, prepared on disk
  by a test: TinyShapes(data_dir=...).download_and_prepare()."""
  VERSION = tfds.core.Version("1.0.0")
  pkg_dir_path = epath.Path(__file__).parent  # TFDS looks for metadata files here

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "label": tfds.features.ClassLabel(names=TINY_SHAPES_CLASSES)}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(TRAIN_LABELS, 0),
            "test": self._generate_examples(TEST_LABELS, 1)}

  def _generate_examples(self, labels, seed):
    rng = np.random.default_rng(seed)
    sizes = tiny_shapes_sizes(len(labels), seed)
    for i, (label, (h, w)) in enumerate(zip(labels, sizes)):
      yield i, {"image": np.asarray(random_image(rng, h, w)), "label": int(label)}


def tfds_config(**fields):
  config = bit_config.base_config()
  config.update(fields)
  return config


# --- tiny fake ILSVRC-2012 archives in the real layout, for the real TFDS builders ---
#
#   manual_dir/ILSVRC2012_img_train.tar   one {wnid}.tar per class, holding {wnid}_{i}.JPEG
#   manual_dir/ILSVRC2012_img_val.tar     ILSVRC2012_val_%08d.JPEG
#   manual_dir/real.json                  hand-made ReaL labels (imagenet2012_real)
#
# TFDS labels the validation images by zipping the *sorted* names in the val tar
# with its bundled validation_labels.txt (one WordNet id per line, in image order),
# so images 1..N take the first N lines: the labels of the real first N images.

IMAGENET_LABELS = "datasets/imagenet2012/labels.txt"
IMAGENET_VALIDATION_LABELS = "datasets/imagenet2012/validation_labels.txt"


def wnids():
  """The 1000 WordNet ids in label order (sorted), as TFDS numbers them."""
  return tfds.core.tfds_path(IMAGENET_LABELS).read_text().split()


def validation_labels(count):
  """Label indices of the first `count` validation images."""
  index = {wnid: i for i, wnid in enumerate(wnids())}
  lines = tfds.core.tfds_path(IMAGENET_VALIDATION_LABELS).read_text().split()
  return [index[wnid] for wnid in lines[:count]]


def imagenet_jpeg(rng, size=32):
  buffer = io.BytesIO()
  Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
      buffer, "JPEG", quality=95)
  return buffer.getvalue()


def _add_to_tar(tar, name, data):
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
        _add_to_tar(class_tar, f"{wnid}_1.JPEG", imagenet_jpeg(rng))
      _add_to_tar(train, f"{wnid}.tar", inner.getvalue())
  val_images = [imagenet_jpeg(rng) for _ in range(num_val)]
  with tarfile.open(os.path.join(root, "ILSVRC2012_img_val.tar"), "w") as val:
    for i, data in enumerate(val_images):
      _add_to_tar(val, val_name(i), data)
  return val_images


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


# --- bit-train's TINY run ------------------------------------------------------------

# A tiny native BiT (one unit per block, half width) on 32 px images, 6 steps.
TINY = ("model_source=native,num_units=1/1/1/1,width=0.5,precrop=36,crop=32,"
        "batch_size=8,supports=2/4/6,log_every=1,checkpoint_every=2,lr_scaling=none,"
        "base_lr=0.01")


def tiny_run_config(folder, arg=""):
  """bit-train's --config for the TINY run on an image folder, with `arg` appended."""
  config = f"{configs.path('transfer')}:dataset=image_folder,data_dir={folder},{TINY}"
  return config + ("," + arg if arg else "")


def train_here(workdir, folder, arg="", *extra_flags):
  """The TINY run through bit-train's main in this process (no TensorFlow start-up):
  None when it succeeds, else its error line."""
  from bit_train import train as bit_train  # pylint: disable=import-outside-toplevel
  from bit_train.errors import UserError  # pylint: disable=import-outside-toplevel
  argv = ["bit-train", "--config", tiny_run_config(folder, arg), "--workdir",
          str(workdir), *extra_flags]
  flags.FLAGS.unparse_flags()
  flags.FLAGS(argv)
  try:
    bit_train.main(argv[:1])
  except UserError as e:
    return " ".join(str(e).split())
  finally:
    flags.FLAGS.unparse_flags()
  return None


def train(workdir, folder, arg="", *extra_flags, env=None):
  """The TINY run as a real process (bit-train via python -m)."""
  return run_module("bit_train.train", "--config", tiny_run_config(folder, arg),
                    "--workdir", workdir, *extra_flags, env=env)


def finished_folder_run(tmp_path_factory, config_arg):
  """(image folder, workdir, bit-train's stderr) of a finished bit-train run (a real
  process) of `folder:data_dir=<8 pattern images per class>,<config_arg>`."""
  folder = write_pattern_folder(tmp_path_factory.mktemp("patterns"), per_class=8)
  workdir = str(tmp_path_factory.mktemp("w"))
  result = run_module("bit_train.train", "--config",
                      f"folder:data_dir={folder},{config_arg}", "--workdir", workdir)
  assert result.returncode == 0, result.stderr[-3000:]
  return folder, workdir, result.stderr


def final_weights(checkpoint_dir):
  """Model variables of the latest checkpoint of a finished run, by name."""
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(checkpoint_dir)))
  return {name: reader.get_tensor(name)
          for name in reader.get_variable_to_shape_map()
          if name.startswith("model/") and "OPTIMIZER" not in name}


def assert_same_weights(a, b, rtol=1e-5, atol=1e-6):
  assert a.keys() == b.keys() and a
  for name in a:
    np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol, err_msg=name)


def history(workdir):
  with open(os.path.join(workdir, "history.jsonl")) as f:
    return [json.loads(line) for line in f]


def step_losses(workdir):
  return {r["step"]: r["loss"] for r in history(workdir) if "top1" not in r}


def all_finite(checkpoint_prefix):
  """Whether every float value of the checkpoint is finite (reads every value)."""
  reader = tf.train.load_checkpoint(str(checkpoint_prefix))
  return all(np.isfinite(reader.get_tensor(name)).all()
             for name, dtype in reader.get_variable_to_dtype_map().items()
             if dtype.is_floating)


def newest_whole_step(checkpoint_dir):
  """The step of the newest checkpoint whose files read in full: what a resume takes,
  or 0. A kill between a save's files and its `checkpoint` state file leaves this one
  save newer than tf.train.latest_checkpoint."""
  for prefix in checkpoints.candidates(str(checkpoint_dir)):
    try:
      all_finite(prefix)
    except Exception:  # pylint: disable=broad-except
      continue
    return checkpoints.step_of(prefix)
  return 0


def kill_at_first_checkpoint(workdir, folder, arg):
  """Starts the TINY run with `arg`, kill -9s it once it has a checkpoint; returns the
  step a resume starts from (newest_whole_step)."""
  proc = subprocess.Popen([sys.executable, "-m", "bit_train.train", "--config",
                           tiny_run_config(folder, arg), "--workdir", str(workdir)],
                          cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  checkpoint_dir = os.path.join(workdir, "checkpoints")
  deadline = time.time() + 300
  while tf.train.latest_checkpoint(checkpoint_dir) is None:
    assert proc.poll() is None and time.time() < deadline, "no checkpoint before exit"
    time.sleep(0.05)
  os.kill(proc.pid, signal.SIGKILL)
  proc.wait()
  return newest_whole_step(checkpoint_dir)


def free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


# --- what the trainer's own step computes --------------------------------------------

class TrainingCalls:
  """What the model saw in the trainer's training step (record_training_calls)."""

  def __init__(self):
    self.batches = []  # the images of every call, in order, as the step ran them
    self.conv_dtypes = set()  # the dtypes of the convolutions' outputs the calls traced
    self.in_xla = set()  # whether each trace was inside an XLA-compiled function


def record_training_calls(monkeypatch):
  """From now on, models the run builds record their training-mode calls: returns
  the TrainingCalls they fill. Inference calls (evaluation, export) are untouched,
  and so is everything else of the model (its class is a subclass of the real one).
  Images are recorded only outside XLA (a py_function does not compile)."""
  calls, create = TrainingCalls(), factory.create_model

  def create_recorded(*args, **kwargs):
    model = create(*args, **kwargs)
    real = type(model)

    def call(self, images, training=False):
      out = real.__call__(self, images, training=training)
      if not training or tf.executing_eagerly():
        return out
      graph = tf.compat.v1.get_default_graph()
      calls.conv_dtypes.update(op.outputs[0].dtype for op in graph.get_operations()
                               if op.type == "Conv2D")
      in_xla = control_flow_util.GraphOrParentsInXlaContext(graph)
      calls.in_xla.add(in_xla)
      if in_xla:
        return out

      def keep(x):
        calls.batches.append(x.numpy())
        return np.int32(0)
      recorded = tf.py_function(keep, [images], tf.int32)
      with tf.control_dependencies([recorded]):
        return tf.identity(out)

    model.__class__ = type(real.__name__, (real,), {"__call__": call})
    return model

  monkeypatch.setattr(factory, "create_model", create_recorded)
  return calls



# --- damaged bytes, for the fuzz tests ---------------------------------------------

def changed_bytes(data, where, how, value):
  """`data` cut at the fraction `where` (how 0), with the byte there XORed with
  `value` (how 1), or with the byte `value` inserted there (how 2)."""
  i = min(int(where * len(data)), len(data) - 1)
  if how == 0:
    return data[:i]
  if how == 1:
    return data[:i] + bytes([data[i] ^ value]) + data[i + 1:]
  return data[:i] + bytes([value]) + data[i:]
