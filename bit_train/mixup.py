"""MixUp as the BiT-HyperRule uses it: one lambda per step, the batch mixed with itself
reversed.

The trainer calls `sample_lambda(alpha, seed, step)` once per global step and passes
the result into the step. Since lambda is a pure function of (seed, step), every
replica and every micro-batch of a batch split gets the same value, and a resumed
run draws the same lambdas as an uninterrupted one.
"""

import tensorflow as tf


def sample_lambda(alpha, seed, step):
  """lambda ~ Beta(alpha, alpha) for this step; exactly 1.0 (no mixing) when alpha = 0.

  Args:
    alpha: the plan's mixup_alpha (a Python float).
    seed: integer seed of the run.
    step: the global step (int or int tensor).
  Returns:
    float32 scalar tensor in [0, 1].
  """
  if alpha <= 0:
    return tf.constant(1.0, tf.float32)
  step_seed = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
  # Beta(a, a) = X / (X + Y) with X, Y ~ Gamma(a) independent.
  x, y = tf.unstack(tf.random.stateless_gamma([2], step_seed, alpha=alpha))
  total = x + y
  # Both gammas can underflow to 0 for tiny alpha; either end of [0, 1] is then right.
  return tf.where(total > 0, x / tf.maximum(total, 1e-30), 1.0)


def mix(images, onehot_labels, lam):
  """Mixes every example with the batch reversed: lam * x + (1 - lam) * x[::-1].

  Args:
    images: float [batch, ...].
    onehot_labels: float [batch, num_classes].
    lam: scalar from sample_lambda.
  Returns:
    (mixed images, mixed labels), same shapes and dtypes as the inputs.
  """
  lam_images = tf.cast(lam, images.dtype)
  lam_labels = tf.cast(lam, onehot_labels.dtype)
  return (lam_images * images + (1 - lam_images) * tf.reverse(images, [0]),
          lam_labels * onehot_labels + (1 - lam_labels) * tf.reverse(onehot_labels, [0]))
