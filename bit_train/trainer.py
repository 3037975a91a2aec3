"""The training loop: one custom loop (tf.function, strategy.run, GradientTape) for all
strategies, with batch split, MixUp, the plan's schedule, checkpoint/resume, logs,
evaluation and export.
"""

import time

from absl import logging
import numpy as np
import tensorflow as tf

from bit_train import checkpoints
from bit_train import distribute
from bit_train import evaluation
from bit_train import evaluators
from bit_train import export
from bit_train import files
from bit_train import models
from bit_train import workdir as wd
from bit_train.data import mixup
from bit_train.data import pipeline
from bit_train.errors import Interrupted, UserError
from bit_train.optimizer import GradientAccumulator, LossScale, Momentum


class TrainingDiverged(UserError):
  """A non-finite loss or gradient: the run stops, checkpoints stay as they were."""


class Trainer:
  """Holds the model, optimizer state and compiled steps for one run."""

  def __init__(self, config, plan, source, strategy):
    self.config, self.plan, self.source, self.strategy = config, plan, source, strategy
    replicas = strategy.num_replicas_in_sync
    if plan.micro_batch_size % replicas:
      raise UserError(
          f"batch_size={plan.batch_size} / batch_split={plan.batch_split} = "
          f"{plan.micro_batch_size} images per micro-batch cannot be shared by "
          f"{replicas} replicas: make batch_size / batch_split a multiple of {replicas}.")
    self.num_classes = source.facts.num_classes
    with strategy.scope():
      self.model = models.create_model(config, self.num_classes)
      self.variables = list(self.model.trainable_variables)
      self.optimizer = Momentum(self.variables)
      self.accumulator = GradientAccumulator(self.variables)
      self.loss_scale = LossScale(config.precision == "mixed_float16")
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.train_iter = None  # made by start_data(), once the resumed step is known
    self.train_step = self._make_train_step()
    # The run's own eval split first, then config.evals and extra_evals; each keeps
    # its eval stream, so the in-memory cache serves every periodic evaluation.
    self.evaluators = evaluators.build(config, source)
    self.eval_context = evaluators.Context(
        strategy, plan.crop, evaluation.eval_batch_size(config, strategy))

  def checkpoint(self):
    return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                               step=self.step, loss_scale=self.loss_scale)

  @tf.function
  def _state_is_finite(self):
    return tf.reduce_all([tf.reduce_all(tf.math.is_finite(v))
                          for v in list(self.model.variables) + self.optimizer.slots])

  def non_finite_state(self):
    """Why the weights or optimizer state cannot be saved or resumed, or None.

    The loop never applies an update computed from a non-finite loss or gradient,
    but a finite update can still overflow (lr x momentum), so this is checked
    before every save and after every restore.
    """
    if bool(self._state_is_finite()):
      return None
    return "it holds non-finite weights or optimizer state"

  def start_data(self):
    """The train stream, positioned after the examples of the steps already done.

    The stream is a pure function of the seed, so skipping what earlier steps
    consumed resumes the exact data order (distributed iterators cannot be
    checkpointed). Each input pipeline delivers batch_size / pipelines per step.
    """
    done = int(self.step.numpy())

    def dataset_fn(ctx):
      skip = done * self.plan.batch_size // ctx.num_input_pipelines
      return pipeline.train_dataset(self.source.train_examples(), self.plan, ctx,
                                    seed=self.config.seed, skip=skip)
    self.train_iter = iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  def _make_train_step(self):
    plan, strategy, config = self.plan, self.strategy, self.config
    model, variables, num_classes = self.model, self.variables, self.num_classes

    def accumulate(batch, lam):
      images, labels = batch
      onehot = tf.one_hot(labels, num_classes)
      if plan.mixup_alpha > 0:
        images, onehot = mixup.mix(images, onehot, lam)
      with tf.GradientTape() as tape:
        logits = tf.cast(model(images, training=True), tf.float32)
        per_example = tf.nn.softmax_cross_entropy_with_logits(onehot, logits)
        # Sum over the global batch (all replicas, all micro-batches), then divide
        # once: the update equals the full batch's mean gradient.
        loss = tf.reduce_sum(per_example) / plan.batch_size
        scaled = loss * self.loss_scale.scale if self.loss_scale.enabled else loss
      grads = tape.gradient(scaled, variables)
      self.accumulator.add(grads, loss)

    if config.jit_compile:
      accumulate = tf.function(accumulate, jit_compile=True)

    def apply(lr):
      ctx = tf.distribute.get_replica_context()
      grads, loss = self.accumulator.take()
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
      loss = ctx.all_reduce(tf.distribute.ReduceOp.SUM, loss)
      if self.loss_scale.enabled:
        grads = [g / self.loss_scale.scale for g in grads]
      grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
      if config.clip_grad_norm:
        grads, _ = tf.clip_by_global_norm(grads, config.clip_grad_norm)
      ok = tf.logical_and(grads_finite, tf.math.is_finite(loss))
      self.optimizer.apply(grads, lr, ok)
      self.loss_scale.update(grads_finite)
      return loss, tf.cast(grads_finite, tf.float32)

    @tf.function
    def train_step(iterator, lr, lam):
      for _ in tf.range(plan.batch_split):
        strategy.run(accumulate, args=(next(iterator), lam))
      loss, grads_finite = strategy.run(apply, args=(lr,))
      self.step.assign_add(1)
      # Both are already all-reduced, so equal on every replica.
      mean = lambda x: strategy.reduce(tf.distribute.ReduceOp.MEAN, x, axis=None)
      return mean(loss), mean(grads_finite)

    return train_step

  def evaluate(self):
    """[evaluators.Result]: the run's eval split's first (its `metrics`), then the rest."""
    return [e.run(self.model, self.eval_context) for e in self.evaluators]


def _eta(seconds):
  minutes, seconds = divmod(int(seconds), 60)
  hours, minutes = divmod(minutes, 60)
  return f"{hours}:{minutes:02d}:{seconds:02d}"


def _diverged(what, step, latest):
  """The advice after a divergence: what the checkpoints hold, and what to do."""
  if latest is None:
    saved = "no checkpoint was written: lower base_lr or check the data."
  else:
    saved = (f"the newest checkpoint, {latest} (step {checkpoints.step_of(latest)}), "
             "is finite but may already hold diverging weights: lower base_lr and use a "
             "new --workdir (--force resumes from that checkpoint).")
  return TrainingDiverged(f"non-finite {what} at step {step}: the run stopped without "
                          f"saving it; {saved}")


def train(config, plan, source, workdir, strategy, force=False):
  """Fine-tunes to the end of the plan, resuming from W's newest good checkpoint.

  The workdir must be held (workdir.claim). Nothing in it is written before the
  checkpoint to resume from has restored into this config's model.
  """
  chief = distribute.is_chief(strategy)
  if chief and not force:
    wd.check_same_run(workdir, config, plan)
  tf.random.set_seed(config.seed)
  trainer = Trainer(config, plan, source, strategy)
  checkpoint = trainer.checkpoint()
  resumed = checkpoints.restore_newest(checkpoint, wd.path(workdir, "checkpoints"),
                                       trainer.non_finite_state)
  if resumed:
    logging.info("Resumed from %s at step %d.", resumed, int(trainer.step.numpy()))
  if chief:
    wd.save_run(workdir, config, plan)
  saver = checkpoints.Saver(tf.train.CheckpointManager(
      checkpoint, wd.path(wd.own_dir(workdir, strategy), "checkpoints"),
      max_to_keep=config.keep_checkpoints), resumed)
  try:
    return _run(trainer, saver, workdir, chief)
  except KeyboardInterrupt:
    latest = saver.latest
    raise Interrupted(
        f"interrupted at step {int(trainer.step.numpy())} (last checkpoint: "
        f"{f'step {checkpoints.step_of(latest)}' if latest else 'none'}): run the same "
        "command to resume.") from None


def _run(trainer, saver, workdir, chief):
  """The loop from the restored step to the end, the final evaluation and the export."""
  config, plan, source, strategy = (trainer.config, trainer.plan, trainer.source,
                                    trainer.strategy)
  start = int(trainer.step.numpy())
  trainer.start_data()
  history = wd.History(workdir, start, enabled=chief)
  writers = {name: tf.summary.create_file_writer(wd.path(workdir, "tensorboard", name))
             for name in ("train", "eval")} if chief else {}

  def summary(kind, step, **scalars):
    history.add(step=step, **scalars)
    if chief:
      with writers[kind].as_default(step=step):
        for name, value in scalars.items():
          tf.summary.scalar(name, value)

  def run_eval(step):
    main, *others = trainer.evaluate()
    metrics = main.metrics
    logging.info("Eval at step %d/%d: top-1 %.4f, top-5 %.4f, loss %.4f (%d examples)",
                 step, plan.total_steps, metrics.top1, metrics.top5, metrics.loss,
                 metrics.count)
    for result in others:
      logging.info("Eval at step %d/%d: %s", step, plan.total_steps, result.line)
    summary("eval", step, **main.scalars,
            **{k: v for result in others for k, v in result.scalars.items()})
    return metrics, others

  tick, tick_step = time.time(), start
  for step in range(start, plan.total_steps):
    lr = plan.lr(step)
    # One MixUp lambda per global step, shared by every replica and micro-batch;
    # a pure function of (seed, step), so a resumed run draws the same ones.
    lam = mixup.sample_lambda(plan.mixup_alpha, config.seed, step)
    loss, finite = trainer.train_step(trainer.train_iter, tf.constant(lr, tf.float32), lam)
    done = step + 1
    loss = float(loss)
    if not np.isfinite(loss) or (float(finite) < 1 and config.precision != "mixed_float16"):
      raise _diverged("loss" if not np.isfinite(loss) else "gradient", done,
                      saver.latest)
    if done % config.log_every == 0 or done == plan.total_steps:
      elapsed = time.time() - tick
      rate = (done - tick_step) * plan.batch_size / max(elapsed, 1e-9)
      eta = (plan.total_steps - done) * plan.batch_size / max(rate, 1e-9)
      logging.info("step %d/%d  loss %.4f  lr %.6g  %.1f img/s  ETA %s", done,
                   plan.total_steps, loss, lr, rate, _eta(eta))
      summary("train", done, loss=loss, lr=lr, images_per_second=rate)
      tick, tick_step = time.time(), done
    if done % config.checkpoint_every == 0 or done == plan.total_steps:
      if trainer.non_finite_state():
        raise _diverged("weights", done, saver.latest)
      saver.save(done)
    if config.eval_every and done % config.eval_every == 0 and done < plan.total_steps:
      run_eval(done)

  final_step = int(trainer.step.numpy())
  metrics, others = run_eval(final_step)
  record = dict(metrics.to_dict(), step=final_step, eval_split=source.facts.eval_split,
                dataset=source.facts.name, model=models.model_name(config, trainer.model))
  if others:
    record["evals"] = {result.name: result.record for result in others}
  if chief:
    files.write_json_atomic(wd.path(workdir, "metrics.json"), record)
    wd.plot_curves(history, wd.path(workdir, "curves.png"))
  export.export_all(trainer.model, plan, source.class_names, workdir, strategy, chief,
                    about=record)
  return record
