"""SGD with momentum 0.9, gradient accumulation (batch_split) and fp16 loss scaling.

Written against tf.distribute directly (no Keras optimizer) so the same code runs
under every strategy: gradients are summed per replica into on-read accumulators
over the micro-batches of a batch split, all-reduced once, and applied to every
copy of the variables through `strategy.extended.update`.

Momentum is the "accumulation" form used by the original BiT code (TF1
MomentumOptimizer, optax.sgd, PyTorch): a = 0.9 * a + g; w -= lr * a.
"""

import tensorflow as tf


class GradientAccumulator(tf.Module):
  """Per-replica sums of gradients and loss over the micro-batches of one update."""

  def __init__(self, variables):
    super().__init__(name="gradient_accumulator")
    on_read = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_READ,
                   aggregation=tf.VariableAggregation.SUM)
    self._grads = [tf.Variable(tf.zeros_like(v), name=f"acc_{i}", **on_read)
                   for i, v in enumerate(variables)]
    self._loss = tf.Variable(0.0, name="acc_loss", **on_read)

  def add(self, grads, loss):
    """In replica context: adds one micro-batch (None gradients count as zero)."""
    for acc, g in zip(self._grads, grads):
      if g is not None:
        acc.assign_add(tf.convert_to_tensor(g))
    self._loss.assign_add(loss)

  def take(self):
    """In replica context: this replica's sums, and zeroes for the next update."""
    grads = [tf.identity(acc.read_value()) for acc in self._grads]
    loss = tf.identity(self._loss.read_value())
    with tf.control_dependencies(grads + [loss]):
      for acc in self._grads:
        acc.assign(tf.zeros_like(acc))
      self._loss.assign(0.0)
    return grads, loss


class Momentum(tf.Module):
  """SGD with momentum; no weight decay. Its slots are saved in checkpoints."""

  def __init__(self, variables, momentum=0.9):
    super().__init__(name="momentum")
    self._vars = list(variables)
    self.momentum = momentum
    self.slots = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"momentum_{i}")
                  for i, v in enumerate(self._vars)]

  def apply(self, grads, lr, ok):
    """In replica context, with all-reduced grads: one update, skipped if not `ok`."""
    return tf.distribute.get_replica_context().merge_call(
        self._apply_cross_replica, args=(grads, lr, ok))

  def _apply_cross_replica(self, strategy, grads, lr, ok):
    momentum = self.momentum

    def update_slot(slot, g, ok):
      return slot.assign(tf.where(ok, momentum * slot + tf.cast(g, slot.dtype), slot))

    def update_var(var, slot, lr, ok):
      return var.assign_sub(tf.where(ok, tf.cast(lr, var.dtype) * slot,
                                     tf.zeros_like(var)))

    updates = []
    for var, slot, g in zip(self._vars, self.slots, grads):
      new_slot = strategy.extended.update(slot, update_slot, args=(g, ok), group=False)
      with tf.control_dependencies(tf.nest.flatten(new_slot)):
        updates.append(strategy.extended.update(var, update_var,
                                                args=(slot, lr, ok), group=False))
    return tf.group(tf.nest.flatten(updates))


class LossScale(tf.Module):
  """Dynamic loss scaling for float16: halve on overflow, double after 2000 good steps."""

  def __init__(self, enabled, initial=2.0 ** 15, growth_interval=2000):
    super().__init__(name="loss_scale")
    self.enabled = enabled
    self.growth_interval = growth_interval
    agg = dict(trainable=False, synchronization=tf.VariableSynchronization.ON_WRITE,
               aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
    self.scale = tf.Variable(initial if enabled else 1.0, name="scale", **agg)
    self.good_steps = tf.Variable(0, dtype=tf.int64, name="good_steps", **agg)

  def update(self, finite):
    """In replica context, after each update: adjusts the scale (fp16 only)."""
    if not self.enabled:
      return
    grow = tf.logical_and(finite, self.good_steps + 1 >= self.growth_interval)
    self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2, self.scale),
                               tf.maximum(self.scale / 2, 1.0)))
    self.good_steps.assign(tf.where(finite & ~grow, self.good_steps + 1,
                                    tf.zeros_like(self.good_steps)))
