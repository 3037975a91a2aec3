"""The native BiT ResNet-v2: architecture, values, input contract, head, factory."""

import numpy as np
import pytest
import tensorflow as tf

from bit_train import specs
from bit_train.errors import UserError
from bit_train.evaluators import metrics as eval_metrics
from bit_train.models.factory import create_model
from bit_train.models import bit
from bit_train.models.bit import network
from bit_train.models.bit import npz

from helpers import images, tiny_config, tiny_resnet


def reference_logits(params, num_units, x):
  """BiT ResNet-v2 written plainly from bit/network.py's docstring: grouped tf.nn.moments,
  tf.pad + VALID convs; takes images already in [-1, 1]."""
  def std_conv(x, key, stride=1, pad=0):
    k = params[key]
    k = (k - tf.reduce_mean(k, [0, 1, 2])) / tf.sqrt(tf.math.reduce_variance(
        k, [0, 1, 2]) + 1e-10)
    x = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return tf.nn.conv2d(x, k, stride, "VALID")

  def gn_relu(x, prefix):
    b, h, w, c = x.shape
    g = min(32, c)
    xg = tf.reshape(x, [b, h, w, g, c // g])
    mean, var = tf.nn.moments(xg, [1, 2, 4], keepdims=True)
    x = tf.reshape((xg - mean) / tf.sqrt(var + 1e-5), [b, h, w, c])
    return tf.nn.relu(x * params[f"{prefix}/group_norm/gamma"] +
                      params[f"{prefix}/group_norm/beta"])

  x = std_conv(x, "resnet/root_block/standardized_conv2d/kernel", 2, 3)
  x = tf.nn.max_pool2d(tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]]), 3, 2, "VALID")
  for block, units in enumerate(num_units, 1):
    for unit in range(1, units + 1):
      p = f"resnet/block{block}/unit{unit:02d}"
      stride = 2 if block > 1 and unit == 1 else 1
      pre = gn_relu(x, f"{p}/a")
      shortcut = (std_conv(pre, f"{p}/a/proj/standardized_conv2d/kernel", stride)
                  if unit == 1 else x)
      y = std_conv(pre, f"{p}/a/standardized_conv2d/kernel")
      y = std_conv(gn_relu(y, f"{p}/b"), f"{p}/b/standardized_conv2d/kernel", stride, 1)
      x = shortcut + std_conv(gn_relu(y, f"{p}/c"), f"{p}/c/standardized_conv2d/kernel")
  x = tf.reduce_mean(gn_relu(x, "resnet"), [1, 2])
  return x @ params["resnet/head/conv2d/kernel"][0, 0] + params["resnet/head/conv2d/bias"]


# The model and the reference sum in other orders (its group norm, SAME vs pad +
# VALID): their logits differ by up to 4.3e-5, 14% of a 1e-4 tolerance, over 6
# seeds (tests/margins.py inprocess); 5e-4 leaves a margin of 30x.
REFERENCE_TOL = 5e-4


@pytest.mark.parametrize("num_units,height,width", [((1, 1, 1, 1), 32, 32),
                                                    ((2, 1, 2, 1), 48, 40)])
def test_logits_match_the_reference_architecture(num_units, height, width):
  model = tiny_resnet(num_classes=7, seed=3, num_units=num_units)
  x = images(3, height, width)
  logits = model(x)
  assert logits.shape == (3, 7) and logits.dtype == tf.float32
  params = {key: var.numpy() for key, var in model.params.items()}
  expected = reference_logits(params, num_units, x * 2. - 1.)
  np.testing.assert_allclose(logits, expected, rtol=REFERENCE_TOL, atol=REFERENCE_TOL)
  assert float(tf.math.reduce_std(logits)) > 0.1  # a real test: outputs vary


# Group Norm and weight standardisation carry hand-written gradients (bit/network.py).
# Against autodiff of the plain reference, every gradient differs by at most 2.4e-5
# of its largest entry (8 seeds x the two architectures below, eager); 5e-4 leaves
# 20x. Dropping one term of the group-norm gradient moves them by far more.
@pytest.mark.parametrize("graph", [False, True])
@pytest.mark.parametrize("num_units,height,width", [((1, 1, 1, 1), 32, 32),
                                                    ((2, 1, 2, 1), 48, 40)])
def test_gradients_match_autodiff_of_the_reference(num_units, height, width, graph):
  model = tiny_resnet(num_classes=7, seed=1, num_units=num_units)
  x = images(3, height, width, seed=1)
  labels = tf.one_hot([0, 3, 5], 7)
  variables = list(model.params.values())

  def gradients(logits_fn):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels, logits_fn()))
    return tape.gradient(loss, variables + [x])
  if graph:
    gradients = tf.function(gradients)
  ours = gradients(lambda: model(x))
  expected = gradients(lambda: reference_logits(model.params, num_units, x * 2. - 1.))
  for key, a, b in zip(list(model.params) + ["images"], ours, expected):
    assert float(np.abs(a - b).max()) <= REFERENCE_TOL * float(np.abs(b).max()), key
  assert float(np.abs(expected[0]).max()) > 0  # the root kernel's gradient flows


def reference_group_norm_relu(x, gamma, beta, groups):
  """ReLU(GroupNorm(x)) written plainly in float32: grouped tf.nn.moments, autodiff."""
  b, h, w, c = x.shape
  xg = tf.reshape(x, [b, h, w, groups, c // groups])
  mean, var = tf.nn.moments(xg, [1, 2, 4], keepdims=True)
  normed = tf.reshape((xg - mean) / tf.sqrt(var + network.GN_EPS), [b, h, w, c])
  return tf.nn.relu(normed * gamma + beta)


# Relative L2 gaps to the float32 reference of ReLU(GroupNorm(x)) and of the gradients
# of x, gamma and beta, over seeds 0-9 and both channel-mean spreads below: at most
# 2.7e-7 in float32 (2e-6 leaves 7x); in bfloat16 at most 4.4e-3 (the bfloat16
# rounding of y, dx and of the reductions' results; statistics and sums taken from
# a float32 copy of x gave at most 3.5e-3). Dropping the gradient's term
# through the variance moves dx by 5e-2 or more in both; dropping its shift term
# (shift - mean) by 8.3e-3 or more in bfloat16 (2.5e-3 in float32): 6e-3 sits
# between. The loss weighs only elements whose pre-activation lies 0.05 or more from
# the ReLU's kink: bfloat16's rounding flips the ReLU of the others, moving dx by up
# to 7e-2 by itself.
GROUP_NORM_TOL = {tf.float32: 2e-6, tf.bfloat16: 6e-3}


def group_norm_gaps(dtype, channel_means, seed):
  """{y, dx, dgamma, dbeta: relative L2 gap to the float32 reference} of
  network.group_norm_relu on one random activation, and the share the ReLU passes."""
  shape, groups = (3, 6, 5, 64), 8
  rng = np.random.default_rng(seed)
  x = tf.cast(rng.normal(size=shape) * rng.uniform(0.5, 2, shape[-1])
              + channel_means * rng.normal(size=shape[-1]), dtype)
  gamma = tf.constant(rng.uniform(0.5, 1.5, shape[-1]), tf.float32)
  beta = tf.constant(rng.normal(size=shape[-1]) * 0.3, tf.float32)
  x32 = tf.cast(x, tf.float32)  # the reference sees the same (rounded) input
  pre_activation = reference_group_norm_relu(x32, gamma, beta + 1e3, groups) - 1e3
  weights = tf.where(tf.abs(pre_activation) < 0.05, 0., rng.normal(size=shape))

  def values(fn, x):
    with tf.GradientTape() as tape:
      tape.watch([x, gamma, beta])
      y = fn(x, gamma, beta, groups)
      loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(weights, tf.float32))
    return [tf.cast(v, tf.float32).numpy()
            for v in [y] + tape.gradient(loss, [x, gamma, beta])]
  ours = values(network.group_norm_relu, x)
  expected = values(reference_group_norm_relu, x32)
  gaps = {name: float(np.linalg.norm(a - b) / np.linalg.norm(b))
          for name, a, b in zip(("y", "dx", "dgamma", "dbeta"), ours, expected)}
  return gaps, float(np.mean(ours[0] > 0))


@pytest.mark.parametrize("dtype", [tf.float32, tf.bfloat16])
@pytest.mark.parametrize("channel_means", [0., 4.])  # spread of the channels' means
def test_group_norm_relu_and_its_gradients_match_a_float32_reference(dtype,
                                                                     channel_means):
  gaps, passed = group_norm_gaps(dtype, channel_means, seed=int(channel_means))
  for name, gap in gaps.items():
    assert gap <= GROUP_NORM_TOL[dtype], (name, gap)
  assert passed > 0.3  # a real test: the ReLU passes a good share


def test_images_in_0_1_are_mapped_to_minus_1_1_inside():
  model = tiny_resnet(num_classes=4)
  x = images(2)
  params = {key: var.numpy() for key, var in model.params.items()}
  np.testing.assert_allclose(model(x), reference_logits(params, (1, 1, 1, 1), 2 * x - 1),
                             rtol=REFERENCE_TOL, atol=REFERENCE_TOL)
  assert not np.allclose(model(x), reference_logits(params, (1, 1, 1, 1), x), atol=1e-2)


def test_pre_logits_are_the_pooled_features_the_head_sees():
  model = tiny_resnet(num_classes=5)
  x = images(2, 40, 56)
  features = model.pre_logits(x)
  assert features.shape == (2, 512)
  kernel, bias = model.head_variables
  np.testing.assert_allclose(model(x), features @ kernel[0, 0] + bias, rtol=1e-5,
                             atol=1e-5)


def test_variable_names_are_the_official_npz_keys():
  model = tiny_resnet()
  names = {v.name.rsplit(":", 1)[0] for v in model.variables}
  assert names == set(npz.param_shapes((1, 1, 1, 1), 0.25, 10))
  for key in ("resnet/root_block/standardized_conv2d/kernel",
              "resnet/block1/unit01/a/proj/standardized_conv2d/kernel",
              "resnet/block4/unit01/c/group_norm/beta", "resnet/group_norm/gamma",
              "resnet/head/conv2d/kernel", "resnet/head/conv2d/bias"):
    assert key in names


@pytest.mark.parametrize("arch,features", [("R50x1", 2048), ("R50x3", 6144),
                                           ("R101x1", 2048), ("R152x4", 8192)])
def test_named_architectures_have_the_published_shapes(arch, features):
  from bit_train.models import bit
  from bit_train.models.bit import network
  from bit_train.models.bit import npz
  units, width = bit.ARCHS[arch]
  shapes = npz.param_shapes(units, width, 1000)
  assert shapes[npz.ROOT] == (7, 7, 3, 64 * width)
  assert shapes[npz.HEAD_KERNEL] == (1, 1, features, 1000)
  last = f"resnet/block3/unit{units[2]:02d}/b/standardized_conv2d/kernel"
  assert shapes[last] == (3, 3, 256 * width, 256 * width)
  assert f"resnet/block3/unit{units[2] + 1:02d}/a/group_norm/gamma" not in shapes
  projections = [k for k in shapes if "/proj/" in k]
  assert len(projections) == 4 and all("unit01" in k for k in projections)


def test_a_new_head_starts_at_zero_and_learns():
  model = create_model(specs.model_spec(tiny_config(model_source="native")), num_classes=6)
  x = images(2)
  assert model.num_classes == 6
  assert not np.any(model(x)) and not any(np.any(v) for v in model.head_variables)
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits([1, 2], model(x)))
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(g is not None for g in grads)
  kernel_grad = dict(zip([v.name for v in model.trainable_variables], grads))[
      model.head_variables[0].name]
  assert np.any(kernel_grad)


def test_tiny_widths_cap_the_groups_and_odd_widths_are_refused():
  assert tiny_resnet(width=0.125)(images(1)).shape == (1, 10)  # 8 root channels
  with pytest.raises(UserError, match="groups"):
    network.ResNetV2((1, 1, 1, 1), 0.6, 10)
  with pytest.raises(UserError, match="num_units"):
    network.ResNetV2((1, 1, 1), 1, 10)


def test_bfloat16_compute_keeps_float32_variables_and_logits():
  config = tiny_config(model_source="native", precision="mixed_bfloat16")
  model = create_model(specs.model_spec(config), num_classes=3)
  reference = tiny_resnet(num_classes=3)
  for key, var in model.params.items():
    var.assign(reference.params[key])
  x = images(2)
  logits = model(x)
  assert logits.dtype == tf.float32
  assert all(v.dtype == tf.float32 for v in model.variables)
  # bfloat16 keeps 8 bits of mantissa: over the 13 convs the logits move by 2-16%
  # of their largest value (30 seeds and inputs; 8.6% for this one), and kernels
  # with native bfloat16 may round elsewhere. A wrong weight or input mapping moves
  # them by 75% or more. 35% sits between the two. A model that computes in float32
  # moves them by 0: 0.2%, ten times below the least seen, shows bfloat16 is used.
  expected = reference(x).numpy()
  gap = np.abs(logits.numpy() - expected).max() / np.abs(expected).max()
  assert 0.002 <= gap <= 0.35


def test_bfloat16_gradients_are_float32_and_follow_float32():
  reference = tiny_resnet(num_classes=3)
  model = network.ResNetV2(reference.num_units, reference.width, 3,
                            compute_dtype=tf.bfloat16)
  for key, var in model.params.items():
    var.assign(reference.params[key])
  x, labels = images(4), tf.one_hot([0, 1, 2, 0], 3)

  def flat_gradients(m):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels, m(x)))
    grads = tape.gradient(loss, list(m.params.values()))
    assert all(g.dtype == tf.float32 for g in grads)
    return np.concatenate([g.numpy().ravel() for g in grads])
  ours, expected = flat_gradients(model), flat_gradients(reference)
  assert np.isfinite(ours).all()
  # bfloat16 rounding turns the gradient to a cosine of 0.80-0.92 with float32's
  # (seeds 0-5; autodiff of the same forward gave the same within 1e-3); an unrelated
  # gradient would be near 0, and float32's own is 1.
  cosine = ours @ expected / np.linalg.norm(ours) / np.linalg.norm(expected)
  assert 0.7 <= cosine <= 0.99


def conv_dtypes(concrete_fn):
  """The dtypes (attr T) of every convolution a traced function runs, its nested
  functions' included."""
  graph_def = concrete_fn.graph.as_graph_def()
  nodes = list(graph_def.node) + [n for f in graph_def.library.function
                                  for n in f.node_def]
  return [tf.as_dtype(n.attr["T"].type) for n in nodes if n.op.startswith("Conv2D")]


@pytest.mark.parametrize("precision,dtype", [("mixed_bfloat16", tf.bfloat16),
                                             ("float32", tf.float32)])
def test_evaluation_runs_the_forward_in_the_runs_precision(precision, dtype):
  """The eval step the trainer and bit-eval build for a model of this precision
  runs every convolution in its compute dtype (no float32 copy for evaluation)."""
  strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
  with strategy.scope():
    config = tiny_config(model_source="native", precision=precision)
    model = create_model(specs.model_spec(config), 3)
  step = eval_metrics.make_eval_step(model, strategy, 3)
  concrete = step.get_concrete_function((tf.TensorSpec([2, 32, 32, 3]),
                                         tf.TensorSpec([2], tf.int64),
                                         tf.TensorSpec([2])))
  dtypes = conv_dtypes(concrete)
  assert len(dtypes) == 17  # root, and 4 per unit (the head is a MatMul)
  assert set(dtypes) == {dtype}
  result = eval_metrics.evaluate(step, [(images(2), tf.constant([0, 1]), tf.ones([2]))])
  assert result.count == 2


def test_variables_are_created_in_the_strategy_scope():
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  with strategy.scope():
    model = create_model(specs.model_spec(tiny_config(model_source="native")), num_classes=2)
  assert all(strategy.extended.variable_created_in_scope(v)
             for v in model.trainable_variables)
  out = strategy.run(tf.function(lambda x: model(x)), (images(2),))
  assert strategy.experimental_local_results(out)[0].shape == (2, 2)


def test_native_config_errors():
  with pytest.raises(UserError, match="head=keep needs pre-trained weights"):
    create_model(specs.model_spec(tiny_config(model_source="native", head="keep")), None)
  with pytest.raises(UserError, match="unknown model"):
    create_model(specs.model_spec(tiny_config(model_source="native", model="BiT-X-R50x1")), 3)
  config = tiny_config(model_source="native", model="R50x1")  # bare arch: not a name
  config.num_units = None
  with pytest.raises(UserError, match="unknown model"):
    create_model(specs.model_spec(config), 3)
