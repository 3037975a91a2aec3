"""The HyperRule at every boundary, checked against the paper's table."""


import pytest

from bit_train import hyperrule
from bit_train.errors import UserError


@pytest.mark.parametrize("n, mixup, schedule", [
    (1, 0.0, [100, 200, 300, 400, 500]),
    (19_999, 0.0, [100, 200, 300, 400, 500]),
    (20_000, 0.1, [500, 3000, 6000, 9000, 10000]),
    (499_999, 0.1, [500, 3000, 6000, 9000, 10000]),
    (500_000, 0.1, [500, 6000, 12000, 18000, 20000]),
])
def test_mixup_and_schedule_change_exactly_at_20k_and_500k(n, mixup, schedule):
  assert hyperrule.get_mixup(n) == mixup
  assert hyperrule.get_schedule(n) == schedule


@pytest.mark.parametrize("size, rule, expected", [
    ((95, 96), "code", (160, 128)),  # area 9120 < 9216
    ((96, 96), "code", (512, 480)),  # area 9216: not small
    ((32, 32), "paper", (160, 128)),
    ((96, 96), "paper", (448, 384)),
    ((1, 9215), "code", (160, 128)),
    ((224, 224), "code", (512, 480)),
])
def test_resolution_switches_at_96_by_96(size, rule, expected):
  assert hyperrule.get_resolution(size, rule) == expected


def test_unknown_resolution_rule_is_a_user_error():
  with pytest.raises(UserError, match="resolution_rule"):
    hyperrule.get_resolution((32, 32), "papers")


@pytest.mark.parametrize("step, expected", [
    (0, 0.0),
    (50, 0.003 * 50 / 100),  # in warmup
    (99, 0.003 * 99 / 100),
    (100, 0.003),  # warmup done
    (200, 0.003),  # at a decay point: not yet decayed (s < step)
    (201, 0.0003),  # just after
    (300, 0.0003),
    (301, 0.00003),
    (401, 0.000003),
    (499, 0.000003),
    (500, None),  # stop step
    (501, None),
])
def test_lr_small_dataset(step, expected):
  lr = hyperrule.get_lr(step, 1000)
  if expected is None:
    assert lr is None
  else:
    assert lr == pytest.approx(expected, rel=1e-12, abs=0)


@pytest.mark.parametrize("step, expected", [
    (0, 0.0), (250, 0.0015), (500, 0.003), (6000, 0.003), (6001, 0.0003),
    (12001, 0.00003), (18000, 0.00003), (18001, 0.000003), (19999, 0.000003),
    (20000, None)])
def test_lr_large_dataset(step, expected):
  lr = hyperrule.get_lr(step, 1_281_167, base_lr=0.003)
  assert lr == (None if expected is None else pytest.approx(expected, rel=1e-12))


def test_plan_follows_the_rule_for_cifar10():
  plan = hyperrule.plan(49_000, (32, 32), dataset="cifar10")
  assert (plan.precrop, plan.crop, plan.mixup_alpha) == (160, 128, 0.1)
  assert plan.supports == (500, 3000, 6000, 9000, 10000)
  assert plan.total_steps == 10_000 and plan.warmup_steps == 500
  assert plan.decay_points == (3000, 6000, 9000)
  assert plan.base_lr == 0.003 and plan.overridden == ()
  assert plan.lr(10_000) is None and plan.lr(501) == 0.003


def test_plan_scales_lr_linearly_with_batch_unless_switched_off():
  assert hyperrule.plan(1000, (32, 32), batch_size=128).base_lr == pytest.approx(
      0.003 * 128 / 512)
  assert hyperrule.plan(1000, (32, 32), batch_size=128,
                        lr_scaling="none").base_lr == 0.003


def test_plan_records_overrides_and_uses_them():
  plan = hyperrule.plan(1000, (300, 300), precrop=256, crop=224, mixup_alpha=0.2,
                        supports=(10, 20, 30), resolution_rule="paper")
  assert (plan.precrop, plan.crop, plan.mixup_alpha) == (256, 224, 0.2)
  assert plan.supports == (10, 20, 30)
  assert set(plan.overridden) == {"precrop", "crop", "mixup_alpha", "supports"}
  assert plan.lr(21) == pytest.approx(0.0003)
  assert "(set by you" in plan.describe()


def test_flip_is_on_by_the_rule_and_off_only_when_asked():
  assert hyperrule.plan(1000, (32, 32)).flip is True
  plan = hyperrule.plan(1000, (32, 32), flip=False, batch_size=64)
  assert plan.flip is False and {"flip", "batch_size"} <= set(plan.overridden)
  assert "flip             none  (set by you; the HyperRule: random left-right flips)" in (
      plan.describe())


def test_plan_is_immutable():
  plan = hyperrule.plan(49_000, (32, 32), batch_size=64, batch_split=4)
  with pytest.raises(Exception):
    plan.crop = 1
  assert plan.micro_batch_size == 16


@pytest.mark.parametrize("kwargs, field", [
    (dict(batch_size=100, batch_split=3), "batch_split"),
    (dict(batch_size=0), "batch_size"),
    (dict(precrop=100, crop=128), "crop"),
    (dict(supports=(10, 5)), "supports"),
    (dict(mixup_alpha=-1.0), "mixup_alpha"),
    (dict(lr_scaling="sqrt"), "lr_scaling"),
])
def test_plan_rejects_impossible_values(kwargs, field):
  with pytest.raises(UserError, match=field):
    hyperrule.plan(1000, (32, 32), **kwargs)


def test_plan_says_the_lr_it_uses_and_warns_when_a_small_batch_shrinks_it():
  small = hyperrule.plan(54, (300, 400), batch_size=16)
  assert "lr used          9.38e-05 after warmup = base_lr 0.003 x batch 16/512" in (
      small.describe())
  shrunk = [w for w in small.warnings() if "scales the learning rate down" in w]
  assert len(shrunk) == 1 and "batch_size=512,batch_split=32" in shrunk[0]
  # The recipe's own batch, or a batch kept by batch_split: no such warning.
  for kept in (hyperrule.plan(54, (300, 400)),
               hyperrule.plan(54, (300, 400), batch_size=512, batch_split=32)):
    assert not [w for w in kept.warnings() if "scales the learning rate" in w]
  unscaled = hyperrule.plan(54, (300, 400), batch_size=16, lr_scaling="none")
  assert not [w for w in unscaled.warnings() if "scales the learning rate" in w]


def test_plan_notes_a_batch_above_the_dataset_and_hundreds_of_epochs():
  tiny = hyperrule.plan(54, (300, 400))
  notes = tiny.warnings()
  assert any("is 9.5x the 54 training examples" in n for n in notes)
  assert any("~4,741 epochs of 54 examples" in n for n in notes)
  # CIFAR-10's full schedule (~102 epochs) and batch are the paper's: nothing to say.
  assert hyperrule.plan(50_000, (32, 32)).warnings() == []
