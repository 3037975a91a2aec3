"""Config files and the `file.py:key=val,flag` argument, in-process."""

import importlib.util

import pytest

from bit_train import config as bit_config
from bit_train import configs
from bit_train import hyperrule
from bit_train.errors import UserError

def load_config_file(name, arg=None):
  spec = importlib.util.spec_from_file_location(name, configs.path(name[:-3]))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def test_argument_string_sets_typed_fields():
  config = load_config_file(
      "transfer.py", "dataset=cifar100,batch_size=64,image_size=300x400,"
      "supports=10/20/30,mixup_alpha=0.2,jit_compile")
  assert config.dataset == "cifar100" and config.batch_size == 64
  assert config.image_size == (300, 400) and config.supports == (10, 20, 30)
  assert config.mixup_alpha == 0.2 and config.jit_compile is True


def test_unset_recipe_fields_are_left_to_the_hyperrule():
  config = load_config_file("transfer.py")
  assert [config[k] for k in ("precrop", "crop", "mixup_alpha", "supports")] == [None] * 4


@pytest.mark.parametrize("arg, field", [
    ("batchsize=3", "batchsize"), ("batch_size=3.5", "batch_size"),
    ("jit_compile=maybe", "jit_compile"), ("image_size=a/b", "image_size")])
def test_bad_argument_names_the_field(arg, field):
  with pytest.raises(UserError, match=field):
    load_config_file("transfer.py", arg)


@pytest.mark.parametrize("arg, field", [
    ("precision=fp8", "precision"), ("model_source=torch", "model_source"),
    ("eval_every=-1", "eval_every"), ("image_size=3/4/5", "image_size"),
    ("batch_split=0", "batch_split"), ("examples_per_class=0", "examples_per_class")])
def test_validate_names_the_field(arg, field):
  config = load_config_file("transfer.py", arg)
  with pytest.raises(UserError, match=field):
    bit_config.validate(config)


def test_quickstart_config_validates_and_its_overrides_are_marked_in_the_plan():
  config = bit_config.validate(load_config_file("quickstart.py"))
  assert config.dataset == "image_folder" and config.model == "BiT-MNIST-R14x0.25"
  plan = hyperrule.plan_from_config(config, 1618, (8, 8), dataset="digits")
  assert set(plan.overridden) == {"precrop", "crop", "batch_size", "supports",
                                  "base_lr", "flip"}
  # resolution (precrop and crop), flip, supports, batch and base_lr lines
  assert plan.describe().count("(set by you; the HyperRule:") == 5


def test_every_field_declares_its_kind():
  """A resumed run is compared field by field by kind: a field added without one
  would be compared by no rule."""
  config = bit_config.base_config()
  kinds = {key: bit_config.kind(key) for key in config}
  assert not [key for key, kind in kinds.items() if kind is None]
  assert set(kinds.values()) == {bit_config.IDENTITY, bit_config.RUN_ONLY}
  # What is computed stays; where inputs are and how the run reports may change.
  assert {kinds[k] for k in ("dataset", "model", "batch_size", "seed", "precision",
                             "supports")} == {bit_config.IDENTITY}
  assert {kinds[k] for k in ("data_dir", "model_path", "log_every", "eval_every",
                             "checkpoint_every", "keep_checkpoints", "strategy",
                             "eval_batch_size")} == {bit_config.RUN_ONLY}
