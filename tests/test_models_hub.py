"""TF Hub modules: export, hub.load / hub.KerasLayer round trips, heads, bad paths."""

import numpy as np
import pytest
import tensorflow as tf

from bit_train import specs
from bit_train.errors import UserError
from bit_train.models.factory import create_model
from bit_train.models.hub import export_module
from bit_train.models import hub
from bit_train.models import registry

from helpers import export_tiny_hub_module, images, tiny_config


def hub_config(path, **fields):
  return tiny_config(model_source="hub", model_path=str(path), **fields)


# Each export traces and saves a model (seconds): the module exports each kind once
# and the tests only read them.
@pytest.fixture(scope="module")
def feature_vector(tmp_path_factory):
  """(path, the model it holds) of a tiny feature-vector module."""
  path = tmp_path_factory.mktemp("hub") / "fv"
  return path, export_tiny_hub_module(path, "feature_vector", seed=1)


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
  """(path, the model it holds) of a tiny classification module of 5 classes."""
  path = tmp_path_factory.mktemp("hub") / "cls"
  return path, export_tiny_hub_module(path, "classification", 5, seed=3)


def test_exported_modules_load_back_with_identical_outputs(feature_vector,
                                                          classification):
  import tensorflow_hub as tfhub
  (fv_path, features), (cls_path, classifier) = feature_vector, classification
  x = images(2, 40, 48)
  fv, cls = tfhub.load(str(fv_path)), tfhub.load(str(cls_path))
  np.testing.assert_array_equal(fv(x), features.pre_logits(x))
  np.testing.assert_array_equal(cls(x, training=True), classifier(x))
  np.testing.assert_array_equal(cls.pre_logits(x), classifier.pre_logits(x))
  assert len(fv.trainable_variables) == len(features.trainable_variables) - 2  # no head
  assert len(cls.variables) == len(classifier.variables)
  assert list(cls.regularization_losses) == []


def test_keras_layer_trains_every_module_variable(classification):
  import tensorflow_hub as tfhub
  import tf_keras
  path, original = classification
  layer = tfhub.KerasLayer(str(path), trainable=True)
  model = tf_keras.Sequential([tf_keras.Input((32, 32, 3)), layer])
  x = images(2)
  np.testing.assert_array_equal(model(x), original(x))
  assert len(model.trainable_weights) == len(original.trainable_variables)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(model(x, training=True) ** 2)
  assert all(g is not None for g in tape.gradient(loss, model.trainable_weights))


def test_feature_vector_module_gets_a_zero_head(feature_vector):
  path, original = feature_vector
  model = create_model(specs.model_spec(hub_config(path)), num_classes=3)
  x = images(2)
  assert model.num_classes == 3 and model(x).shape == (2, 3) and not np.any(model(x))
  np.testing.assert_array_equal(model.pre_logits(x), original.pre_logits(x))
  assert len(model.trainable_variables) == len(original.trainable_variables)
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits([0, 2], model(x)))
  grads = tape.gradient(loss, model.trainable_variables)
  assert np.any(grads[-2])  # the head kernel learns first


def test_mixed_precision_with_a_hub_module_says_it_runs_float32(feature_vector,
                                                                caplog):
  path, _ = feature_vector
  create_model(specs.model_spec(hub_config(path)), num_classes=3)
  assert "precision" not in caplog.text
  model = create_model(specs.model_spec(hub_config(path, precision="mixed_bfloat16")), 3)
  assert "precision=mixed_bfloat16 does not apply to TF Hub modules" in caplog.text
  assert model(images(1)).dtype == tf.float32


def test_classification_module_as_is_or_with_a_new_head(classification):
  path, original = classification
  x = images(2)
  kept = create_model(specs.model_spec(hub_config(path, head="keep")), None)
  assert kept.num_classes == 5
  np.testing.assert_array_equal(kept(x), original(x))
  replaced = create_model(specs.model_spec(hub_config(path)), 2)
  np.testing.assert_array_equal(replaced.pre_logits(x), original.pre_logits(x))
  assert replaced(x).shape == (2, 2) and not np.any(replaced(x))
  with pytest.raises(UserError, match="outputs 5 classes but the dataset has 9"):
    create_model(specs.model_spec(hub_config(path, head="keep")), 9)


def test_a_fine_tuned_hub_model_exports_again(feature_vector, tmp_path):
  model = create_model(specs.model_spec(hub_config(feature_vector[0])), num_classes=3)
  model.head_kernel.assign(tf.random.normal(model.head_kernel.shape))
  export_module(model, str(tmp_path / "tuned"), "classification")
  again = create_model(specs.model_spec(hub_config(tmp_path / "tuned", head="keep")), 3)
  np.testing.assert_array_equal(again(images(2)), model(images(2)))


def test_classifier_without_pre_logits_cannot_get_a_new_head(tmp_path):
  root = tf.train.Checkpoint()
  root.kernel = tf.Variable(tf.ones([3, 4]))
  root.variables = root.trainable_variables = [root.kernel]
  root.regularization_losses = []
  root.__call__ = tf.function(lambda x: tf.reduce_mean(x, [1, 2]) @ root.kernel,
                              input_signature=[tf.TensorSpec([None, None, None, 3])])
  path = tmp_path / "imagenet_classification"
  tf.saved_model.save(root, str(path))
  assert create_model(specs.model_spec(hub_config(path, head="keep")), None).num_classes == 4
  with pytest.raises(UserError, match="cannot be replaced"):
    create_model(specs.model_spec(hub_config(path)), 3)


def test_unreadable_modules_are_one_user_error(tmp_path):
  with pytest.raises(UserError, match="cannot load the TF Hub module"):
    create_model(specs.model_spec(hub_config(tmp_path / "missing")), 3)
  (tmp_path / "empty").mkdir()
  with pytest.raises(UserError, match="is not a TF Hub module: it has no saved_model.pb"):
    create_model(specs.model_spec(hub_config(tmp_path / "empty")), 3)
  tf.saved_model.save(tf.Module(), str(tmp_path / "plain"))
  with pytest.raises(UserError, match="not a reusable TF Hub module"):
    create_model(specs.model_spec(hub_config(tmp_path / "plain")), 3)


def test_handles_and_registry_locations():
  assert hub.resolve_handle("google/bit/m-r50x1/1") == "https://tfhub.dev/google/bit/m-r50x1/1"
  assert hub.resolve_handle("/models/bit") == "/models/bit"
  spec = registry.lookup("bit-m-r101x3")
  assert registry.location(spec, "hub", "new").endswith("/m-r101x3/1")
  assert registry.location(spec, "hub", "keep", 1000).endswith(
      "/m-r101x3/ilsvrc2012_classification/1")
  assert registry.location(spec, "hub", "keep", 21843).endswith(
      "/imagenet21k_classification/1")
  assert registry.location(spec, "npz", "keep", 1000).endswith("BiT-M-R101x3-ILSVRC2012.npz")
  assert registry.location(spec, "npz", "new", 10).endswith("BiT-M-R101x3.npz")
  with pytest.raises(UserError, match="no hub model"):
    create_model(specs.model_spec(tiny_config(model="BiT-S-R152x2")), 3)
