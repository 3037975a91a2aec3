"""What a run reports as it goes (runlog.RunLog): running-mean loss, img/s and ETA
from steady steps only, one line per evaluation, the time estimate of a long plan."""

import logging
import types

import pytest

from bit_train import hyperrule
from bit_train import runlog


class Clock:
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


def metrics_result(top1):
  metrics = types.SimpleNamespace(top1=top1, top5=1.0, loss=0.5, count=6)
  return types.SimpleNamespace(metrics=metrics, scalars={"top1": top1, "loss": 0.5})


@pytest.fixture
def clock(monkeypatch):
  clock = Clock()
  monkeypatch.setattr(runlog.time, "perf_counter", clock)
  return clock


def lines(caplog):
  return [r.getMessage() for r in caplog.records]


def test_steady_steps_only_running_mean_and_the_estimate_of_a_long_plan(
    tmp_path, clock, caplog):
  # 54 examples: the HyperRule's 500 steps of batch 512, ~4700 epochs.
  plan = hyperrule.plan(54, (32, 32))
  assert plan.epochs >= hyperrule.MANY_EPOCHS and plan.batch_size == 512
  log = runlog.RunLog(str(tmp_path), plan, log_every=5, start=0, chief=True, live=False)
  caplog.set_level(logging.INFO)
  for step in range(1, 11):
    clock.now += 100.0 if step == 1 else 2.0  # the first step traces and compiles
    if step == 6:
      log.evaluation(5, [metrics_result(0.5)])
      clock.now += 2.0  # step 6 itself
    log.progress(step, float(step), plan.lr(step - 1))
    if step == 5:
      clock.now += 300.0  # an evaluation's time, before log.evaluation is called
  got = lines(caplog)
  steps = [line for line in got if line.startswith("step ")]
  # Loss: the mean of the last 5 steps; img/s: 512 per 2 s, the first step left out.
  assert steps[0].startswith("step 5/500  loss 3.0000") and " 256.0 img/s" in steps[0]
  assert "ETA 0:16:30" in steps[0]  # 495 steps x 2 s
  assert steps[1].startswith("step 10/500  loss 8.0000") and " 256.0 img/s" in steps[1]
  assert "ETA 0:16:20" in steps[1]
  evals = [line for line in got if line.startswith("Eval at step")]
  assert evals == ["Eval at step 5/500: top-1 0.5000  top-5 1.0000  loss 0.5000  (6 images)"]
  estimates = [line for line in got if line.startswith("the plan's 500 steps take")]
  assert len(estimates) == 1 and "~0:16:40 at 256.0 img/s" in estimates[0]
  records = [r for r in runlog.History(str(tmp_path), 10).read() if "top1" not in r]
  assert [r["loss"] for r in records] == [3.0, 8.0]


def test_a_short_plan_gets_no_estimate(tmp_path, clock, caplog):
  plan = hyperrule.plan(50_000, (32, 32), supports=(2, 4, 6), batch_size=8)
  log = runlog.RunLog(str(tmp_path), plan, log_every=1, start=0, chief=True, live=False)
  caplog.set_level(logging.INFO)
  for step in range(1, 7):
    clock.now += 1.0
    log.progress(step, 1.0, 0.1)
  assert not [line for line in lines(caplog) if "take ~" in line]
  assert lines(caplog)[0] == "step 1/6  loss 1.0000  lr 0.1  - img/s  ETA -"
