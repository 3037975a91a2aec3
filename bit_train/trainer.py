"""The training loop: one custom loop (tf.function, strategy.run, GradientTape) for all
strategies, with batch split, MixUp, the plan's schedule, checkpoint/resume, logs,
evaluation and export.

`train` tells a run in order: `_resume` (the newest good checkpoint), `_fit` (steps,
divergence checks, checkpoints, periodic evaluations), the final evaluation and
`_finish` (metrics, curves, export); runlog.RunLog is everything it reports. `Trainer` holds
the model, the optimizer state and the compiled step; `Trainer.fit_step` is one step.
"""

import math
import signal
import threading

from absl import logging
import numpy as np
import tensorflow as tf

from bit_train import checkpoints
from bit_train import distribute
from bit_train import evaluators
from bit_train import export
from bit_train import files
from bit_train import mixup
from bit_train.models import factory
from bit_train import provenance
from bit_train import report
from bit_train import runlog
from bit_train import trained_on
from bit_train import workdir as wd
from bit_train.data import pipeline
from bit_train.errors import Interrupted, UserError
from bit_train.optimizer import GradientAccumulator, LossScale, Momentum


class TrainingDiverged(UserError):
  """A non-finite loss or gradient: the run stops, checkpoints stay as they were."""


class Trainer:
  """Holds the model, optimizer state and compiled steps for one run."""

  def __init__(self, specs, plan, source, strategy):
    """specs: the run's specs.Specs; plan: its hyperrule.Plan; source: the open
    DataSource of specs.data; strategy: the tf.distribute strategy."""
    self.specs, self.plan, self.source, self.strategy = specs, plan, source, strategy
    self.run_spec = specs.run
    distribute.check_shared(
        plan.micro_batch_size, strategy,
        f"batch_size={plan.batch_size} / batch_split={plan.batch_split} = "
        f"{plan.micro_batch_size} images per micro-batch", "make batch_size / batch_split")
    self.num_classes = source.facts.num_classes
    with strategy.scope():
      self.model = factory.create_model(specs.model, self.num_classes)
      self.variables = list(self.model.trainable_variables)
      self.optimizer = Momentum(self.variables)
      # Sums over the micro-batches of a batch split; one micro-batch needs none.
      self.accumulator = (GradientAccumulator(self.variables)
                          if plan.batch_split > 1 else None)
      self.loss_scale = LossScale(specs.run.precision == "mixed_float16")
      self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    self.train_iter = None  # made by start_data(), once the resumed step is known
    self.train_step = self._make_train_step()
    # The run's own eval split first, then its EvalSpecs; each keeps its eval
    # stream, so the in-memory cache serves every periodic evaluation.
    self.evaluators = evaluators.build(specs.data, specs.evals, source)
    self.eval_context = evaluators.Context(strategy, plan.crop, evaluators.eval_batch_size(
        specs.run.eval_batch_size, plan.micro_batch_size, strategy))

  def checkpoint(self):
    return tf.train.Checkpoint(model=self.model, optimizer=self.optimizer,
                               step=self.step, loss_scale=self.loss_scale)

  @tf.function(autograph=False)
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
    done = self.done_steps()

    def dataset_fn(ctx):
      skip = done * self.plan.batch_size // ctx.num_input_pipelines
      return pipeline.train_dataset(self.source.train_examples(), self.plan, ctx,
                                    seed=self.run_spec.seed, skip=skip)
    self.train_iter = iter(self.strategy.distribute_datasets_from_function(dataset_fn))

  def done_steps(self):
    return int(self.step.numpy())

  def fit_step(self, step):
    """Step `step` (0-based) of the plan on the train stream -> (loss, whether the
    gradients were finite), as Python values; the update is skipped when not."""
    # One MixUp lambda per global step, shared by every replica and micro-batch;
    # a pure function of (seed, step), so a resumed run draws the same ones.
    lam = mixup.sample_lambda(self.plan.mixup_alpha, self.run_spec.seed, step)
    loss, finite = self.train_step(self.train_iter,
                                   tf.constant(self.plan.lr(step), tf.float32), lam)
    return float(loss), float(finite) == 1.0

  def _make_train_step(self):
    plan, strategy, run = self.plan, self.strategy, self.run_spec
    model, variables, num_classes = self.model, self.variables, self.num_classes

    def gradients(batch, lam):
      """This replica's gradient and loss sums for one micro-batch."""
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
      return tape.gradient(scaled, variables,
                           unconnected_gradients=tf.UnconnectedGradients.ZERO), loss

    if run.jit_compile:
      gradients = tf.function(gradients, jit_compile=True, autograph=False)

    def apply(grads, loss, lr):
      ctx = tf.distribute.get_replica_context()
      grads = ctx.all_reduce(tf.distribute.ReduceOp.SUM, grads)
      loss = ctx.all_reduce(tf.distribute.ReduceOp.SUM, loss)
      if self.loss_scale.enabled:
        grads = [g / self.loss_scale.scale for g in grads]
      grads_finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
      if run.clip_grad_norm:
        grads, _ = tf.clip_by_global_norm(grads, run.clip_grad_norm)
      ok = tf.logical_and(grads_finite, tf.math.is_finite(loss))
      self.optimizer.apply(grads, lr, ok)
      self.loss_scale.update(grads_finite)
      return loss, tf.cast(grads_finite, tf.float32)

    def mean(x):  # of values already all-reduced, so equal on every replica
      return strategy.reduce(tf.distribute.ReduceOp.MEAN, x, axis=None)

    # No AutoGraph: the step has no control flow on tensors (tf.cond is explicit), and
    # converting the model's code would lengthen the first trace.
    @tf.function(autograph=False)
    def whole_batch(iterator, lr, lam):
      """One update of a batch that is one micro-batch: no accumulators to fill."""
      loss, grads_finite = strategy.run(lambda batch: apply(*gradients(batch, lam), lr),
                                        args=(next(iterator),))
      self.step.assign_add(1)
      return mean(loss), mean(grads_finite)

    if plan.batch_split == 1:
      return whole_batch

    @tf.function(autograph=False)
    def accumulate(iterator, lam):
      strategy.run(lambda batch: self.accumulator.add(*gradients(batch, lam)),
                   args=(next(iterator),))

    @tf.function(autograph=False)
    def apply_accumulated(lr):
      loss, grads_finite = strategy.run(lambda: apply(*self.accumulator.take(), lr))
      self.step.assign_add(1)
      return mean(loss), mean(grads_finite)

    def train_step(iterator, lr, lam):
      """One update of the global batch -> (loss, 1.0 if the gradients were finite)."""
      # The micro-batches are separate calls, not a tf.while_loop in one graph: the
      # loop ran slower per image than the whole-batch step.
      for _ in range(plan.batch_split):
        accumulate(iterator, lam)
      return apply_accumulated(lr)

    return train_step

  def evaluate(self):
    """[evaluators.Result]: the run's eval split's first (its `metrics`), then the rest."""
    return [e.run(self.model, self.eval_context) for e in self.evaluators]


def train(specs, plan, source, workdir, strategy, force=False):
  """Fine-tunes to the end of the plan, resuming from W's newest good checkpoint.

  specs: the run's specs.Specs; plan: its hyperrule.Plan; source: the open DataSource
  of specs.data. The workdir must be held (workdir.claim). Nothing in it is written
  before the checkpoint to resume from has restored into this run's model.

  Ctrl-C stops at once (exit 130); SIGTERM stops at the next step boundary after
  saving a checkpoint there (exit 143). Both print one line saying how to resume.
  """
  chief = distribute.is_chief(strategy)
  if chief:
    wd.check_same_run(workdir, specs.identity(plan, source), force)
  tf.random.set_seed(specs.run.seed)
  trainer = Trainer(specs, plan, source, strategy)
  saver = _resume(trainer, workdir, chief, force)
  log = runlog.RunLog(workdir, plan, specs.run.log_every, trainer.done_steps(), chief)
  try:
    with _TermSignal() as term:
      _fit(trainer, saver, log, term)
    # The steps are saved: SIGTERM now stops the evaluation and export as Ctrl-C does.
    with _TermSignal(at_once=True):
      results = log.evaluation(trainer.done_steps(), trainer.evaluate())
      record = _finish(trainer, results, log, workdir, chief)
  except KeyboardInterrupt:
    log.end_live_line()
    raise Interrupted(_stopped(trainer, saver), 130) from None
  except _Terminated:
    log.end_live_line()
    raise Interrupted(_stopped(trainer, saver), 143) from None
  finally:
    log.close()
  if chief:
    warning = chance_warning(plan, results[0].metrics, trainer.num_classes)
    if warning:
      logging.warning("%s", warning)
  return record


class _Terminated(BaseException):
  """SIGTERM after the last step (BaseException: what is half-written is removed,
  as after Ctrl-C)."""


class _TermSignal:
  """Inside: SIGTERM sets `requested` instead of ending the process, so the loop
  can save a checkpoint at the next step boundary. With `at_once` (the evaluation
  and export after the last step), SIGTERM raises _Terminated and Ctrl-C
  KeyboardInterrupt, and a signal whose exception was swallowed (it can land in a
  TensorFlow finalizer, where Python only prints it) is raised again on the way
  out. (Only the main thread can take signals; elsewhere they keep their own
  handling.)"""

  def __init__(self, at_once=False):
    self.requested, self.at_once = False, at_once
    self._previous = {}
    self._stop = None  # the exception of the signal that arrived (at_once)

  def _handle(self, signum, frame):
    del frame
    self.requested = True
    if self.at_once:
      self._stop = _Terminated if signum == signal.SIGTERM else KeyboardInterrupt
      raise self._stop()

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for signum in (signal.SIGTERM, signal.SIGINT) if self.at_once else (signal.SIGTERM,):
        self._previous[signum] = signal.signal(signum, self._handle)
    return self

  def __exit__(self, exc_type, *exc):
    for signum, previous in self._previous.items():
      signal.signal(signum, previous)
    if exc_type is None and self._stop is not None:
      raise self._stop()


def _stopped(trainer, saver):
  """The one line of a run stopped by Ctrl-C or SIGTERM."""
  latest = saver.latest
  return (f"interrupted at step {trainer.done_steps()} (last checkpoint: "
          f"{f'step {checkpoints.step_of(latest)}' if latest else 'none'}): run the same "
          "command to resume.")


def chance_warning(plan, metrics, num_classes):
  """The warning for a final top-1 that is not clearly above chance, or None.

  Chance is 1/classes; clearly above it is at least two binomial standard
  deviations above it for the number of images evaluated.
  """
  chance = 1 / num_classes
  clearly = chance + 2 * math.sqrt(chance * (1 - chance) / max(metrics.count, 1))
  if metrics.top1 >= clearly:
    return None
  return (f"the final top-1 {metrics.top1:.4f} on {metrics.count} images is not clearly "
          f"above chance ({chance:.4f} for {num_classes} classes; clearly above is "
          f">= {clearly:.4f}): the model has barely learned. Likely causes: a learning "
          f"rate too small for the batch (this plan's lr is {plan.base_lr:.2g} at batch "
          f"{plan.batch_size}: see the warnings after the plan), too few steps "
          f"({plan.total_steps}), or labels that do not match the images.")


def _resume(trainer, workdir, chief, force=False):
  """Restores W's newest checkpoint that holds finite state (with `force`, damaged
  newer ones are moved to W/checkpoints/damaged/ by the chief), records this run in W
  (plan.json) and returns the Saver of the checkpoints to come."""
  checkpoint = trainer.checkpoint()
  resumed = checkpoints.restore_newest(checkpoint, wd.path(workdir, wd.CHECKPOINTS),
                                       trainer.non_finite_state, force, move=chief)
  if resumed:
    logging.info("Resumed from %s at step %d.", resumed, trainer.done_steps())
    if trainer.done_steps() > trainer.plan.total_steps:  # --force to a shorter schedule
      logging.warning(
          "the checkpoint's step %d is past this plan's %d steps: nothing is trained, "
          "and the evaluation, export and plan.json are of the %d-step model; for a "
          "%d-step run use a new --workdir.", trainer.done_steps(),
          trainer.plan.total_steps, trainer.done_steps(), trainer.plan.total_steps)
  if chief:
    wd.save_run(workdir, trainer.specs.identity(trainer.plan, trainer.source))
  return checkpoints.Saver(checkpoints.manager(
      checkpoint, wd.path(wd.own_dir(workdir, trainer.strategy), wd.CHECKPOINTS),
      trainer.run_spec.keep_checkpoints), resumed)


def _fit(trainer, saver, log, term):
  """The steps from the restored one to the end of the plan: each update, its
  divergence check, progress, the periodic checkpoints and evaluations, and a
  checkpoint and stop after the step during which SIGTERM came (`term`)."""
  run, plan = trainer.run_spec, trainer.plan
  trainer.start_data()
  for step in range(trainer.done_steps(), plan.total_steps):
    loss, finite = trainer.fit_step(step)
    done = step + 1
    if not np.isfinite(loss) or (not finite and run.precision != "mixed_float16"):
      raise _diverged("loss" if not np.isfinite(loss) else "gradient", done,
                      saver.latest)
    log.progress(done, loss, plan.lr(step))
    if done % run.checkpoint_every == 0 or done == plan.total_steps:
      if trainer.non_finite_state():
        raise _diverged("weights", done, saver.latest)
      saver.save(done)
    if term.requested:
      log.end_live_line()
      if saver.latest is None or checkpoints.step_of(saver.latest) != done:
        if trainer.non_finite_state():
          raise _diverged("weights", done, saver.latest)
        saver.save(done)
      raise Interrupted(_stopped(trainer, saver), 143)
    if run.eval_every and done % run.eval_every == 0 and done < plan.total_steps:
      log.evaluation(done, trainer.evaluate())


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


def _finish(trainer, results, log, workdir, chief):
  """The final record: W/metrics.json, the curves and the exports -> the record."""
  source = trainer.source
  main, *others = results
  record = dict(main.metrics.to_dict(), step=trainer.done_steps(),
                eval_split=source.facts.eval_split, dataset=source.facts.name,
                model=factory.model_name(trainer.specs.model, trainer.model),
                provenance=provenance.record(trainer.strategy, source))
  if others:
    record["evals"] = {result.name: result.record for result in others}
  seen, trained_files = trained_on.describe(source)
  export.export_all(trainer.model, trainer.plan, source.class_names, workdir, chief,
                    about=dict(record, trained_on=seen), trained_files=trained_files)
  # Written last: a workdir with metrics.json holds a finished run, exports included
  # (the experiments runner skips it); a run killed before resumes at its last step.
  if chief:
    runlog.plot_curves(log.history, wd.path(workdir, wd.CURVES), trainer.num_classes)
    files.write_json_atomic(wd.path(workdir, wd.METRICS), record)
  report.write_report(workdir, trainer.model, trainer.evaluators[0].examples,
                      trainer.plan.crop, enabled=chief)
  return record
