"""Momentum SGD, gradient accumulation, loss scaling and clipping, in-process."""

import numpy as np
import pytest
import tensorflow as tf

from bit_train import config as bit_config
from bit_train import mixup
from bit_train import specs
from bit_train.data import sources
from bit_train.data.patterns import write_pattern_folder
from bit_train.optimizer import GradientAccumulator, LossScale, Momentum
from bit_train.trainer import Trainer


def test_momentum_is_the_accumulation_form_and_skips_when_not_ok():
  w = tf.Variable([1.0, -2.0])
  opt = Momentum([w], momentum=0.9)
  g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
  opt.apply([tf.constant(g1, tf.float32)], 0.1, tf.constant(True))
  opt.apply([tf.constant(g2, tf.float32)], 0.01, tf.constant(True))
  a1 = g1
  a2 = 0.9 * a1 + g2
  np.testing.assert_allclose(w.numpy(), np.array([1.0, -2.0]) - 0.1 * a1 - 0.01 * a2,
                             rtol=1e-6)
  before = w.numpy().copy()
  opt.apply([tf.constant([np.inf, 1.0])], 0.1, tf.constant(False))
  np.testing.assert_array_equal(w.numpy(), before)
  np.testing.assert_allclose(opt.slots[0].numpy(), a2, rtol=1e-6)


def test_accumulator_sums_micro_batches_and_resets():
  w = tf.Variable(tf.zeros([3]))
  acc = GradientAccumulator([w])
  strategy = tf.distribute.get_strategy()

  def add(g, loss):
    acc.add([g], loss)
  for g, loss in ((tf.ones([3]), 1.0), (2 * tf.ones([3]), 0.5)):
    strategy.run(add, args=(g, loss))
  grads, loss = strategy.run(acc.take)
  np.testing.assert_allclose(grads[0].numpy(), [3, 3, 3])
  assert float(loss) == pytest.approx(1.5)
  grads, loss = strategy.run(acc.take)
  np.testing.assert_allclose(grads[0].numpy(), [0, 0, 0])


def test_loss_scale_halves_on_overflow_and_grows_after_good_steps():
  scale = LossScale(True, initial=8.0, growth_interval=2)
  strategy = tf.distribute.get_strategy()
  strategy.run(scale.update, args=(tf.constant(False),))
  assert float(scale.scale) == 4.0
  for _ in range(2):
    strategy.run(scale.update, args=(tf.constant(True),))
  assert float(scale.scale) == 8.0
  off = LossScale(False)
  off.update(tf.constant(False))
  assert float(off.scale) == 1.0


def first_update_size(folder, clip):
  """Global norm of the weight change made by one step at lr 0.5."""
  config = bit_config.apply_arg(bit_config.base_config(), (
      f"dataset=image_folder,data_dir={folder},model_source=native,num_units=1/1/1/1,"
      "width=0.5,precrop=36,crop=32,batch_size=4,supports=1/2/3,mixup_alpha=0.0,"
      "strategy=cpu,lr_scaling=none,holdout_fraction=0.25"))
  config.clip_grad_norm = clip
  source = sources.for_training(specs.data_spec(config))
  plan = specs.recipe(config).plan(source.facts.num_examples, source.facts.image_size)
  trainer = Trainer(specs.from_config(config, evals=True), plan, source, tf.distribute.OneDeviceStrategy("/cpu:0"))
  trainer.start_data()
  before = [v.numpy().copy() for v in trainer.variables]
  trainer.train_step(trainer.train_iter, tf.constant(0.5), mixup.sample_lambda(0, 0, 0))
  return np.sqrt(sum(np.sum((v.numpy() - b) ** 2)
                     for v, b in zip(trainer.variables, before)))


def test_clip_grad_norm_bounds_the_first_update(tmp_path):
  folder = write_pattern_folder(tmp_path / "data", per_class=4)
  # First step: the momentum slot is the gradient, so |dw| = lr * |g|.
  assert first_update_size(folder, None) > 0.5 * 0.01
  assert 0 < first_update_size(folder, 0.001) <= 0.5 * 0.001 * (1 + 1e-4)
