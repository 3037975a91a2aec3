"""The train and eval streams a Plan asks for, built from a Source.

The trainer wraps them with `strategy.distribute_datasets_from_function`:

  strategy.distribute_datasets_from_function(
      lambda ctx: pipeline.train_dataset(source, plan, ctx, seed=config.seed))

MixUp is not applied here: the trainer mixes each micro-batch in the step, with the
step's lambda (see mixup.py), so this stream only decodes, augments and batches.
"""

import os

import tensorflow as tf

from bit_train.data import preprocess

SHUFFLE_BUFFER = 10_000  # examples, when the encoded train set is not cached
CACHE_SHARE = 0.25  # of physical memory that encoded images may take when cached
CACHE_UNKNOWN_SIZE = 50_000  # examples cached when their size in bytes is unknown


def _memory_bytes():
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
  except (ValueError, OSError, AttributeError):
    return 8 << 30


def fits_in_memory(num_bytes, num_examples, cache_bytes=None):
  """Whether encoded images of this size are cached in memory."""
  if num_bytes is None:
    return num_examples is not None and num_examples <= CACHE_UNKNOWN_SIZE
  limit = CACHE_SHARE * _memory_bytes() if cache_bytes is None else cache_bytes
  return num_bytes <= limit


def _shard(ds, input_context):
  if input_context and input_context.num_input_pipelines > 1:
    return ds.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  return ds


def _batch_size(global_batch, input_context):
  if input_context is None:
    return global_batch
  return input_context.get_per_replica_batch_size(global_batch)


def train_dataset(source, plan, input_context=None, seed=0, cache_bytes=None):
  """Infinite stream of (images float32 [B, crop, crop, 3] in [0, 1], labels int32 [B]).

  B is the per-replica micro-batch: `plan.micro_batch_size` divided over the
  replicas by `input_context` when given. Shuffling and augmentation are seeded:
  the same seed gives the same stream. Encoded images are cached in memory when
  they fit (`cache_bytes`, default a quarter of physical memory), and then the
  shuffle covers the whole train set every epoch.

  Args:
    source: a sources.Source.
    plan: the hyperrule.Plan (precrop, crop, micro_batch_size).
    input_context: tf.distribute.InputContext, or None for one replica.
    seed: seed of shuffling and augmentation.
    cache_bytes: memory allowed for cached encoded images, None for the default.
  """
  batch_size = _batch_size(plan.micro_batch_size, input_context)
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  num_examples = plan.num_examples
  ds = _shard(source.train_examples(), input_context)
  if fits_in_memory(source.train_bytes, num_examples, cache_bytes):
    ds = ds.cache()
    buffer = num_examples  # cached tensors are shared, so the buffer costs little
  else:
    buffer = min(num_examples, SHUFFLE_BUFFER)
  ds = ds.shuffle(max(buffer, 1), seed=seed + pipeline_id, reshuffle_each_iteration=True)
  ds = ds.repeat().enumerate()  # the index seeds each example's crop and flip

  def augment(index, example):
    encoded, label = example
    image_seed = tf.stack([tf.cast(seed + 7919 * pipeline_id, tf.int64), index])
    return preprocess.train_image(encoded, image_seed, plan.precrop, plan.crop), label
  ds = ds.map(augment, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(source, plan, batch_size, input_context=None, cache_bytes=None):
  """Every eval example once, as (images, labels, mask) batches of fixed size.

  The last batch is padded with zero images; `mask` is 1.0 for real examples and
  0.0 for padding, so a metric weighted by the mask counts every example exactly
  once under any strategy.

  Args:
    source: a sources.Source.
    plan: the hyperrule.Plan (crop).
    batch_size: global eval batch; divided over replicas by `input_context`.
    input_context: tf.distribute.InputContext, or None.
    cache_bytes: memory allowed for cached encoded images, None for the default.
  """
  batch_size = _batch_size(batch_size, input_context)
  ds = _shard(source.eval_examples(), input_context)
  if fits_in_memory(source.eval_bytes, None, cache_bytes):
    ds = ds.cache()  # evaluation runs more than once; decode from memory next time
  ds = ds.map(lambda encoded, label: (preprocess.eval_image(encoded, plan.crop), label),
              num_parallel_calls=tf.data.AUTOTUNE)

  def pad(images, labels):
    real = tf.shape(labels)[0]
    missing = batch_size - real
    images = tf.pad(images, [[0, missing], [0, 0], [0, 0], [0, 0]])
    labels = tf.pad(labels, [[0, missing]])
    mask = tf.concat([tf.ones([real]), tf.zeros([missing])], 0)
    return (tf.ensure_shape(images, [batch_size, plan.crop, plan.crop, 3]),
            tf.ensure_shape(labels, [batch_size]), tf.ensure_shape(mask, [batch_size]))
  return ds.batch(batch_size).map(pad).prefetch(tf.data.AUTOTUNE)
