"""A model family added beside ResNet-v2 without touching BiT code: docs/extending.md's
"Add a model family" path, exercised with a toy family.

The toy family is what a new family's module would hold: the network, its weight
file reader, and its registration. It trains through `bit-train`'s own entry point
(flags, config file, data, plan, loop, evaluation, export), in this process so that
the registration made here is seen.
"""

import json
import os

from absl import flags
import numpy as np
import pytest
import tensorflow as tf

from bit_train import cli
from bit_train import config as bit_config
from bit_train import specs
from bit_train import train
from bit_train.data.patterns import write_pattern_folder
from bit_train.errors import UserError
from bit_train.models.factory import create_model
from bit_train.models.factory import model_name
from bit_train.models import weights
from bit_train.models import registry

CONV, HEAD_KERNEL, HEAD_BIAS = "toy/conv", "toy/head/kernel", "toy/head/bias"


class ToyNet(tf.Module):
  """One 3x3 conv of `channels`, ReLU, global average pool (pre-logits), dense head."""

  def __init__(self, channels, num_classes, *, initial_values=None, seed=0,
               compute_dtype=tf.float32):
    super().__init__(name="toy")
    del compute_dtype  # float32 only
    values = initial_values or {}
    self.channels, self.num_classes = int(channels), int(num_classes)
    self.conv = tf.Variable(values.get(CONV, 0.3 * tf.random.stateless_normal(
        [3, 3, 3, self.channels], seed=[seed, 0])), name="conv")
    self.head_kernel = tf.Variable(values.get(
        HEAD_KERNEL, tf.zeros([self.channels, self.num_classes])), name="head_kernel")
    self.head_bias = tf.Variable(values.get(HEAD_BIAS, tf.zeros([self.num_classes])),
                                 name="head_bias")

  @property
  def arch(self):
    return (self.channels,)

  @property
  def head_variables(self):
    return self.head_kernel, self.head_bias

  def pre_logits(self, images):
    x = tf.nn.conv2d(tf.cast(images, tf.float32) * 2. - 1., self.conv, 1, "SAME")
    return tf.reduce_mean(tf.nn.relu(x), axis=[1, 2])

  def __call__(self, images, training=False):
    del training
    return tf.matmul(self.pre_logits(images), self.head_kernel) + self.head_bias


def load_toy(location, num_classes, head="new", arch=None, *, seed=0,
             compute_dtype=tf.float32):
  """A ToyNet from an .npz of its variables (keys CONV, HEAD_KERNEL, HEAD_BIAS)."""
  with np.load(weights.fetch(location)) as data:  # the framework's download and cache
    arrays = dict(data)
  if arch is not None and arrays[CONV].shape[-1] != arch[0]:
    raise UserError(f"{location} holds a toy of {arrays[CONV].shape[-1]} channels")
  if head == "keep":
    num_classes = arrays[HEAD_KERNEL].shape[-1]
  else:
    arrays = {CONV: arrays[CONV]}
  return ToyNet(arrays[CONV].shape[-1], num_classes, initial_values=arrays, seed=seed,
                compute_dtype=compute_dtype)


def toy_file_arch(path):
  with np.load(path) as data:
    return (data[CONV].shape[-1],)


def toy_check_file(path):
  if not os.path.isfile(path):
    raise UserError(f"no toy weights at {path}")


TOY = registry.Family(
    name="Toy", names="Toy-C{channels}",
    build=lambda arch, num_classes, **kw: ToyNet(arch[0], num_classes, **kw),
    load=load_toy,
    # The toy has no architecture fields in the config: the name says it.
    arch_fields=(), arch=lambda overrides, named, name: named and named.arch,
    file_arch=toy_file_arch, check_file=toy_check_file, describe=lambda arch: f"C{arch[0]}",
    location=lambda named, source, head, num_classes=None: None)


@pytest.fixture
def toy_registered(monkeypatch):
  """Registers the family and one model, as a family's module does on import; the
  registry is restored after the test."""
  monkeypatch.setattr(registry, "FAMILIES", dict(registry.FAMILIES))
  monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))
  registry.register_family(TOY)
  return registry.register(registry.NamedModel(
      name="Toy-C8", family="Toy", arch=(8,), upstream_classes=3))


def run_bit_train(*args):
  """bit-train's parsing and main, in this process (where the toy is registered)."""
  try:
    flags.FLAGS(cli.resolve_configs(["bit-train", *map(str, args)]))
    train.main(["bit-train"])
  finally:
    flags.FLAGS.unparse_flags()


def test_a_registered_family_trains_evaluates_and_exports_through_bit_train(
    toy_registered, tmp_path):
  folder = write_pattern_folder(tmp_path / "patterns", per_class=12)
  workdir = tmp_path / "w"
  run_bit_train(
      "--config", f"transfer:dataset=image_folder,data_dir={folder},"
      "model=Toy-C8,model_source=native,precrop=36,crop=32,batch_size=8,"
      "supports=2/4/6,log_every=1,lr_scaling=none,base_lr=0.1", "--workdir", workdir)
  metrics = json.loads((workdir / "metrics.json").read_text())
  plan = json.loads((workdir / "plan.json").read_text())["plan"]
  assert metrics["model"] == "Toy-C8" and metrics["step"] == 6
  assert metrics["count"] == 36 - plan["num_examples"] > 0  # the held-out share, whole
  # The loop trained the toy's zero-initialised head.
  reader = tf.train.load_checkpoint(str(workdir / "checkpoints"))
  head = [reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if "head_kernel" in n and "OPTIMIZER" not in n]
  assert len(head) == 1 and head[0].shape == (8, 3) and np.abs(head[0]).max() > 0
  # The export is the toy: 8 pre-logits, 3 classes.
  module = tf.saved_model.load(str(workdir / "export" / "hub_module"))
  images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[0, 1])
  assert module.pre_logits(images).shape == (2, 8) and module(images).shape == (2, 3)
  assert json.loads((workdir / "export" / "export.json").read_text())["model"] == "Toy-C8"


def test_a_registered_family_reads_its_weight_files_and_names_them(toy_registered,
                                                                    tmp_path):
  saved = ToyNet(8, 3, seed=1)
  saved.head_kernel.assign(tf.random.stateless_normal([8, 3], seed=[2, 0]))
  path = str(tmp_path / "toy.npz")
  np.savez(path, **{CONV: saved.conv.numpy(), HEAD_KERNEL: saved.head_kernel.numpy(),
                    HEAD_BIAS: saved.head_bias.numpy()})
  config = bit_config.base_config()
  config.update(model="toy-c8", model_source="npz", model_path=path, head="keep")
  model = create_model(specs.model_spec(config), None)
  images = tf.random.stateless_uniform([2, 16, 16, 3], seed=[3, 1])
  np.testing.assert_allclose(model(images), saved(images), rtol=1e-5, atol=1e-6)
  assert model_name(specs.model_spec(config), model) == "Toy-C8"
  assert model_name(specs.model_spec(config), ToyNet(4, 3)) == "Toy C4"  # the family's words
  np.savez(path, **{CONV: np.zeros([3, 3, 3, 4], np.float32)})
  with pytest.raises(UserError, match="holds a toy of 4 channels"):
    create_model(specs.model_spec(config), None)
