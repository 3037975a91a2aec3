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
    # One fused kernel per variable (ResourceApplyMomentum: a = m * a + g; w -= lr * a,
    # one pass over w, a and g) and one branch for the whole update, rather than
    # separate ops with a tf.where per tensor to skip it, which were several times
    # slower on R50x1.
    momentum = tf.constant(self.momentum, tf.float32)  # one constant for every variable

    def update(var, slot, g, lr):
      return tf.raw_ops.ResourceApplyMomentum(
          var=var.handle, accum=slot.handle, lr=tf.cast(lr, var.dtype),
          grad=tf.cast(g, var.dtype), momentum=tf.cast(momentum, var.dtype))

    def apply_all():
      updates = [strategy.extended.update(var, update, args=(slot, g, lr), group=False)
                 for var, slot, g in zip(self._vars, self.slots, grads)]
      with tf.control_dependencies(tf.nest.flatten(updates)):
        return tf.constant(True)
    # ok comes from all-reduced values: the same on every replica.
    ok = strategy.experimental_local_results(ok)[0]
    return tf.cond(ok, apply_all, lambda: tf.constant(False))


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
