"""A run's export from ordinary TensorFlow code: the hub module's signature and class
names in Keras 3, tf_keras, plain TensorFlow and saved_model_cli; the serving model
on gray and RGBA images. Each way is the one docs/export.md shows.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from bit_train import export
from bit_train import hyperrule
from helpers import images
from helpers import tiny_resnet

CLASSES = ["cat", "dog", "fox"]
CROP = 32


# An export traces and saves two SavedModels (seconds): written once, only read here.
@pytest.fixture(scope="module")
def exported(tmp_path_factory):
  """(W/export, the model it holds), as the trainer writes them."""
  workdir = str(tmp_path_factory.mktemp("w"))
  model = tiny_resnet(len(CLASSES), seed=1)
  plan = hyperrule.plan(100, (32, 32), precrop=CROP, crop=CROP)
  export.export_all(model, plan, CLASSES, workdir, chief=True)
  return os.path.join(workdir, "export"), model


def hub_path(exported):
  return os.path.join(exported[0], "hub_module")


def close(a, b):
  np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_plain_tensorflow_signature_has_named_outputs_and_the_class_names(exported):
  _, model = exported
  loaded = tf.saved_model.load(hub_path(exported))
  x = images(2, 40, 48)
  outputs = loaded.signatures["serving_default"](images=x)
  assert sorted(outputs) == ["logits", "pre_logits"]
  close(outputs["logits"], model(x))
  close(outputs["pre_logits"], model.pre_logits(x))
  np.testing.assert_array_equal(loaded(x), model(x))  # calling it gives logits
  names = tf.io.read_file(loaded.class_names_file.asset_path).numpy().decode()
  assert names.splitlines() == CLASSES
  with open(os.path.join(hub_path(exported), "assets", "class_names.txt")) as f:
    assert f.read().splitlines() == CLASSES


def test_keras_3_model_through_tfsm_layer(exported):
  import keras
  _, model = exported
  inputs = keras.Input((CROP, CROP, 3))
  module = keras.layers.TFSMLayer(hub_path(exported), call_endpoint="serving_default")
  classifier = keras.Model(inputs, module(inputs)["logits"])
  x = images(3)
  close(classifier.predict(x, verbose=0), model(x))
  # A new head on the pre-logits, fine-tuned with the module's weights.
  features = keras.Model(inputs, module(inputs)["pre_logits"])
  head = keras.layers.Dense(2)
  new = keras.Sequential([features, head])
  new.compile(optimizer=keras.optimizers.SGD(0.1),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  weights = [w.numpy().copy() for w in (head.kernel, module.trainable_weights[0])]
  new.fit(x, np.array([0, 1, 0]), epochs=1, verbose=0)
  assert len(module.trainable_weights) == len(model.trainable_variables)
  for before, after in zip(weights, (head.kernel, module.trainable_weights[0])):
    assert not np.allclose(after.numpy(), before)
  frozen = keras.layers.TFSMLayer(hub_path(exported), call_endpoint="serving_default",
                                  trainable=False)
  assert frozen.trainable_weights == []
  assert len(frozen.non_trainable_weights) == len(model.trainable_variables)


def test_tf_keras_hub_keras_layer_gives_logits_or_a_named_output(exported):
  import tensorflow_hub as hub
  import tf_keras
  _, model = exported
  x = images(2)
  logits = tf_keras.Sequential([tf_keras.Input((CROP, CROP, 3)),
                                hub.KerasLayer(hub_path(exported), trainable=True)])
  close(logits(x), model(x))
  assert len(logits.trainable_weights) == len(model.trainable_variables)
  pre_logits = tf_keras.Sequential([
      tf_keras.Input((CROP, CROP, 3)),
      hub.KerasLayer(hub_path(exported), signature="serving_default",
                     output_key="pre_logits")])
  close(pre_logits(x), model.pre_logits(x))


def saved_model_cli(folder):
  cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
  result = subprocess.run([cli, "show", "--dir", folder, "--all"],
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout


def signature_block(text, name):
  """The lines saved_model_cli prints for one signature."""
  start = text.index(f"signature_def['{name}']")
  end = text.find("signature_def[", start + 1)
  return text[start:end if end > 0 else None]


def test_saved_model_cli_shows_inputs_outputs_and_shapes(exported):
  root, _ = exported
  hub_text = signature_block(saved_model_cli(hub_path(exported)), "serving_default")
  assert "inputs['images']" in hub_text
  assert "shape: (-1, -1, -1, 3)" in hub_text  # float32 RGB in [0, 1]
  assert "outputs['logits']" in hub_text and "outputs['pre_logits']" in hub_text
  assert f"shape: (-1, {len(CLASSES)})" in hub_text
  serving = saved_model_cli(os.path.join(root, "serving"))
  for name in ("serving_default", "serve_float"):
    text = signature_block(serving, name)
    assert "inputs['images']" in text and "shape: (-1, -1, -1, -1)" in text
    for output in ("probabilities", "class_ids", "class_names"):
      assert f"outputs['{output}']" in text


def test_serving_takes_gray_and_rgba_images_as_decode_image_gives_them(exported):
  root, _ = exported
  serve = tf.saved_model.load(os.path.join(root, "serving")).signatures[
      "serving_default"]
  rng = np.random.default_rng(0)
  gray = rng.integers(0, 256, (1, 37, 41, 1), dtype=np.uint8)
  rgb = rng.integers(0, 256, (1, 37, 41, 3), dtype=np.uint8)
  alpha = rng.integers(0, 256, (1, 37, 41, 1), dtype=np.uint8)
  as_rgb = serve(images=np.repeat(gray, 3, axis=-1))["probabilities"]
  close(serve(images=gray)["probabilities"], as_rgb)
  close(serve(images=np.concatenate([gray, alpha], -1))["probabilities"], as_rgb)
  close(serve(images=np.concatenate([rgb, alpha], -1))["probabilities"],
        serve(images=rgb)["probabilities"])
  assert not np.allclose(serve(images=rgb)["probabilities"], as_rgb)
  with pytest.raises(tf.errors.InvalidArgumentError, match="1 \\(gray\\)"):
    serve(images=np.zeros([1, 8, 8, 5], np.uint8))


def test_a_gray_jpeg_decoded_with_one_channel_is_classified(exported):
  root, _ = exported
  serve = tf.saved_model.load(os.path.join(root, "serving")).signatures[
      "serving_default"]
  pixels = np.random.default_rng(1).integers(0, 256, (30, 30, 1), dtype=np.uint8)
  image = tf.io.decode_jpeg(tf.io.encode_jpeg(pixels), channels=1)
  result = serve(images=image[None])
  assert result["class_names"].numpy()[0].decode() in CLASSES


def test_feature_vector_and_kept_hub_head_modules_have_the_signature_too(exported,
                                                                         tmp_path):
  """A feature-vector module's signature gives pre-logits only; a model keeping a
  loaded module's own head (no head variables) exports the same logits again."""
  from bit_train.models import hub
  _, model = exported
  x = images(2)
  hub.export_module(model, str(tmp_path / "fv"), "feature_vector")
  outputs = tf.saved_model.load(str(tmp_path / "fv")).signatures["serving_default"](
      images=x)
  assert list(outputs) == ["pre_logits"]
  close(outputs["pre_logits"], model.pre_logits(x))
  kept = hub.HubModel(tf.saved_model.load(hub_path(exported)), None, "keep")
  assert kept.head_variables == ()
  hub.export_module(kept, str(tmp_path / "again"), class_names=CLASSES)
  again = tf.saved_model.load(str(tmp_path / "again"))
  outputs = again.signatures["serving_default"](images=x)
  close(outputs["logits"], model(x))
  close(outputs["pre_logits"], model.pre_logits(x))
  assert tf.io.read_file(again.class_names_file.asset_path).numpy().decode(
      ).splitlines() == CLASSES
