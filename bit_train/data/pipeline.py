"""The train and eval streams a Plan asks for, built from a split's Examples.

The trainer wraps them with `strategy.distribute_datasets_from_function`:

  strategy.distribute_datasets_from_function(lambda ctx: pipeline.train_dataset(
      source.train_examples(), plan, ctx, seed=run.seed))

MixUp is not applied here: the trainer mixes each micro-batch in the step, with the
step's lambda (see bit_train/mixup.py), so this stream only decodes, augments and
batches.
"""

import os

import numpy as np
import tensorflow as tf

from bit_train.data import preprocess
from bit_train.errors import UserError

SHUFFLE_BLOCK = 10_000  # examples shuffled together, for sources read in order
# Our dataset functions have no control flow on tensors (preprocessing is plain graph
# code), so tf.data need not run AutoGraph over them: converting the train and eval
# maps and what they call would delay the first step.
NOT_CONVERTED = tf.autograph.experimental.do_not_convert
CACHE_SHARE = 0.25  # of physical memory that encoded images may take when cached
CACHE_UNKNOWN_SIZE = 50_000  # examples cached when their size in bytes is unknown
NO_EXAMPLES = ("an input pipeline got no training examples: the dataset has fewer "
               "examples than there are workers.")


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


def _in_memory(examples):
  """(encoded, labels) tensors holding every example of a finite dataset."""
  encoded, labels = [], []
  for batch_encoded, batch_labels in examples.batch(4096).as_numpy_iterator():
    encoded.append(batch_encoded)
    labels.append(batch_labels)
  if not encoded:
    raise UserError(NO_EXAMPLES)
  return (tf.constant(np.concatenate(encoded)),
          tf.constant(np.concatenate(labels), tf.int32))


def _random_access(train, input_context, cache_bytes):
  """(keys, labels, read) for this pipeline's share of the train set, or None.

  keys are encoded images held in memory when they fit, else file paths; None when
  the source can only be read in order (a large TFDS dataset).
  """
  if fits_in_memory(train.num_bytes, train.num_examples, cache_bytes):
    encoded, labels = _in_memory(_shard(train.read(), input_context))
    return encoded, labels, tf.identity
  if train.files is None:
    return None
  paths, labels = train.files
  if input_context:
    step, first = input_context.num_input_pipelines, input_context.input_pipeline_id
    paths, labels = paths[first::step], labels[first::step]
  return tf.constant(paths, tf.string), tf.constant(labels, tf.int32), tf.io.read_file


def _block_shuffle(examples, block, seed, whole):
  """`examples` shuffled within blocks of `block` consecutive examples.

  Each block is permuted by a stateless draw from `seed` (a [2] int64 tensor).
  Unless the examples fit in one block (`whole`), the block boundaries start at an
  offset drawn from the same seed, so examples near a boundary meet different
  neighbours in different epochs. No global seed is
  consulted: tf.data's `shuffle` calls `random_seed.get_seed`, which with the
  global seed 0 (tf.random.set_seed(0), what the trainer sets for seed=0) compares
  a seed tensor as a Python bool and fails. At most two blocks of encoded images are
  held at once (the one being read and the one being given out).
  """
  offset = tf.random.stateless_uniform([], seed, 0, 1 if whole else block,
                                       dtype=tf.int64)

  def permuted(index, images_and_labels):
    block_seed = tf.stack([seed[0], seed[1] * 7919 + index])
    order = tf.argsort(tf.random.stateless_uniform(
        tf.shape(images_and_labels[1])[:1], block_seed))
    return tf.nest.map_structure(lambda t: tf.gather(t, order), images_and_labels)
  blocks = examples.take(offset).batch(block).concatenate(
      examples.skip(offset).batch(block))
  return blocks.enumerate().map(permuted).unbatch()


def _streamed_examples(train, input_context, seed, skip):
  """(positions, fetch) for a source that can only be read in order.

  Each epoch is read afresh and shuffled within blocks of SHUFFLE_BLOCK examples
  (see _block_shuffle) with a seed of its own, drawn from (seed, epoch, pipeline).
  An epoch is then a pure function of its number, so a resumed run starts at the
  epoch of `skip` and reads at most one epoch to reach its position, not every
  example before it.
  """
  pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  # _shard takes every pipelines-th example, starting at pipeline_id.
  per_epoch = len(range(pipeline_id, train.num_examples, pipelines))
  if not per_epoch:
    raise UserError(NO_EXAMPLES)
  first_epoch, offset = divmod(skip, per_epoch)
  block = min(per_epoch, SHUFFLE_BLOCK)

  def epoch(number):
    epoch_seed = tf.stack([tf.cast(seed, tf.int64), number * pipelines + pipeline_id])
    return _block_shuffle(_shard(train.read(), input_context), block,
                          epoch_seed, whole=block == per_epoch)
  ds = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch).skip(offset)
  return ds.enumerate(start=skip), lambda position, example: (position, *example)


def _positioned_examples(train, input_context, seed, cache_bytes, skip):
  """(positions, fetch): positions from `skip` on, and `fetch` mapping one element
  of them to (position, encoded, label); shuffled anew every epoch with `seed`.

  With random access the positions are plain counters and `fetch` looks up the
  example of a permutation computed from (seed, epoch, position), so the iterator's
  checkpoint is a counter (symbolic checkpointing), not a buffer of images, and
  skipping is free. Otherwise see _streamed_examples.
  """
  table = _random_access(train, input_context, cache_bytes)
  if table is None:
    return _streamed_examples(train, input_context, seed, skip)
  keys, labels, read = table
  size = tf.cast(tf.size(labels), tf.int64)

  def fetch(position):
    epoch, index = position // size, position % size
    index = tf.random.experimental.index_shuffle(
        index, tf.stack([tf.cast(seed, tf.int64), epoch]), size - 1)
    return position, read(tf.gather(keys, index)), tf.gather(labels, index)
  options = tf.data.Options()
  options.experimental_symbolic_checkpoint = True
  return tf.data.Dataset.range(skip, 2**62).with_options(options), fetch


def train_dataset(train, plan, input_context=None, seed=0, cache_bytes=None, skip=0):
  """Infinite stream of (images float32 [B, crop, crop, 3] in [0, 1], labels int32 [B]).

  B is the per-replica micro-batch: `plan.micro_batch_size` divided over the
  replicas by `input_context` when given; with several input pipelines (workers)
  each reads its own share of the examples. Every epoch is a fresh permutation and
  every crop and flip is drawn from (seed, position): the same seed gives the same
  stream, and a resumed run continues it exactly: from a checkpointed iterator, or
  by starting the stream at `skip`. Encoded images are held in memory when they fit
  (`cache_bytes`, default a quarter of physical memory).

  Args:
    train: the training split's sources.Examples (source.train_examples()).
    plan: the hyperrule.Plan (precrop, crop, micro_batch_size).
    input_context: tf.distribute.InputContext, or None for one replica.
    seed: seed of shuffling and augmentation.
    cache_bytes: memory allowed for cached encoded images, None for the default.
    skip: examples this input pipeline delivered before (a resumed run), e.g.
      steps done * plan.batch_size / input pipelines.
  """
  batch_size = _batch_size(plan.micro_batch_size, input_context)
  pipelines = input_context.num_input_pipelines if input_context else 1
  pipeline_id = input_context.input_pipeline_id if input_context else 0
  ds, fetch = _positioned_examples(train, input_context, seed, cache_bytes, skip)

  @NOT_CONVERTED
  def example(*element):
    # Lookup and augmentation in one parallel map: on small images every
    # per-example stage costs speed (benchmarks/bench_data.py).
    position, encoded, label = fetch(*element)
    # A distinct seed for every example of every pipeline.
    image_seed = tf.stack([tf.cast(seed, tf.int64), position * pipelines + pipeline_id])
    return preprocess.train_image(encoded, image_seed, plan.precrop, plan.crop,
                                  plan.flip), label
  ds = ds.map(example, num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def _count(examples):
  """Number of examples in a finite dataset: its cardinality, else by counting."""
  known = int(examples.cardinality())
  if known >= 0:
    return known
  return int(examples.reduce(tf.constant(0, tf.int64), lambda count, *_: count + 1))


def eval_dataset(examples, crop, batch_size, input_context=None, cache_bytes=None):
  """Every eval example once, as (images, labels, mask) batches of fixed size.

  The stream is padded with zero images (`mask` 0.0; real examples have 1.0) so
  that every replica of every input pipeline gets the same number of full batches:
  a distributed iterator stops when any replica runs dry, and multi-worker steps
  must match, so without padding a final partial step would be silently dropped.
  Metrics weighted by the mask count every example exactly once.

  Args:
    examples: the split's sources.Examples.
    crop: eval images are resized to crop x crop.
    batch_size: global eval batch; divided over replicas by `input_context`.
    input_context: tf.distribute.InputContext, or None.
    cache_bytes: memory allowed for cached encoded images, None for the default.
  """
  per_replica = _batch_size(batch_size, input_context)
  pipelines = input_context.num_input_pipelines if input_context else 1
  replicas_here = (input_context.num_replicas_in_sync // pipelines
                   if input_context else 1)
  cache = fits_in_memory(examples.num_bytes, None, cache_bytes)
  examples = examples.read()
  # Sharding gives each pipeline at most ceil(total / pipelines) examples.
  most = -(-_count(examples) // pipelines)
  step_size = per_replica * replicas_here
  padded = max(1, -(-most // step_size)) * step_size
  ds = _shard(examples, input_context)
  if cache:
    ds = ds.cache()  # evaluation runs more than once; decode from memory next time
  ds = ds.map(NOT_CONVERTED(lambda encoded, label: (
      preprocess.eval_image(encoded, crop), tf.cast(label, tf.int32), tf.constant(1.0))),
              num_parallel_calls=tf.data.AUTOTUNE)
  # Labels are class indices, or fixed-size rows (multi-hot ReaL labels).
  label_shape = examples.element_spec[1].shape
  padding = tf.data.Dataset.from_tensors(
      (tf.zeros([crop, crop, 3]), tf.zeros(label_shape, tf.int32),
       tf.constant(0.0))).repeat()
  ds = ds.concatenate(padding).take(padded)
  # Not autotuned: deleting an iterator waits for tf.data's autotuning thread to wake,
  # at intervals that double, so an evaluation could sit idle at its end for seconds
  # (benchmarks/bench_loop.py, eval row). Every evaluation makes a new iterator; the
  # map runs on every core anyway.
  options = tf.data.Options()
  options.autotune.enabled = False
  return ds.batch(per_replica, drop_remainder=True).prefetch(2).with_options(options)
