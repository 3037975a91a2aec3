"""Throughput of the train stream on JPEG folders, beside a bare decode+resize loop.

  .venv/bin/python benchmarks/bench_data.py                 # both resolutions
  .venv/bin/python benchmarks/bench_data.py --images 512 --seconds 3 --repeats 7

For each HyperRule resolution (160/128 for small images, 512/480 for large ones) it
writes a JPEG folder of photo crops (scikit-learn's two sample photos; smooth noise
if scikit-learn is missing), then measures in the same run:
  - stream: pipeline.train_dataset (cached encoded images, seeded shuffle, decode,
    resize to precrop, random crop, random flip, batch 32), images/second;
  - bare: the same encoded bytes in memory, decode + resize to precrop + batch 32 in
    a tf.data map with the same parallelism, and nothing else.
Each figure is the best of `--repeats` timed runs of `--seconds`, stream and bare
taking turns, since other processes may share the cores. The R50x1 training rate to
compare with is not measured here: the whole trainer step trains BiT R50x1 at 128 px
at about 10 img/s on this 2-core CPU (9.3 img/s in benchmarks/bench_train.py).
"""

import argparse
import json
import os
import tempfile
import time

import numpy as np
from PIL import Image
import tensorflow as tf

from bit_train import config as bit_config
from bit_train import hyperrule
from bit_train import specs
from bit_train.data import pipeline
from bit_train.data import preprocess
from bit_train.data import sources

BATCH = 32
R50X1_TRAIN_RATE_128 = 10.0  # img/s, benchmarks/bench_train.py on this machine
SETTINGS = {"160/128": (64, 64), "512/480": (375, 500)}  # image (height, width)


def photos():
  try:
    from sklearn.datasets import load_sample_images  # pylint: disable=g-import-not-at-top
    return [np.asarray(p) for p in load_sample_images().images]
  except ImportError:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    return [np.asarray(Image.fromarray(small).resize((640, 480), Image.BICUBIC))]


def write_folder(root, count, size, classes=4, seed=0):
  """`count` JPEG crops of the sample photos, resized to `size`, in class folders."""
  rng = np.random.default_rng(seed)
  sources_ = photos()
  height, width = size
  for i in range(count):
    photo = sources_[i % len(sources_)]
    ph, pw = photo.shape[:2]
    ch, cw = rng.integers(ph // 3, ph), rng.integers(pw // 3, pw)
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    image = Image.fromarray(photo[y:y + ch, x:x + cw]).resize((width, height))
    folder = os.path.join(root, f"class{i % classes}")
    os.makedirs(folder, exist_ok=True)
    image.save(os.path.join(folder, f"{i}.jpg"), quality=90)
  return root


def best_rates(datasets, seconds, repeats):
  """Best images/second of each dataset over `repeats` timed runs of `seconds`.

  Runs alternate between the datasets, so that load from other processes falls on
  all of them alike.
  """
  iterators = [iter(ds) for ds in datasets]
  for iterator in iterators:  # warm-up: fills the cache, starts the threads
    for _ in range(10):
      next(iterator)
  rates = [[] for _ in datasets]
  for _ in range(repeats):
    for iterator, rate in zip(iterators, rates):
      count, start = 0, time.perf_counter()
      while time.perf_counter() - start < seconds:
        next(iterator)[0].numpy()
        count += BATCH
      rate.append(count / (time.perf_counter() - start))
  return [max(rate) for rate in rates]


def bare_dataset(source, precrop):
  """Decode + resize + batch of the same encoded images, and nothing else."""
  encoded = [e for e, _ in source.train_examples().read().as_numpy_iterator()]
  ds = tf.data.Dataset.from_tensor_slices(tf.constant(encoded)).repeat()
  ds = ds.map(lambda e: (tf.image.resize(preprocess.decode(e), [precrop, precrop]),),
              num_parallel_calls=tf.data.AUTOTUNE)
  return ds.batch(BATCH, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def measure(setting, images, seconds, repeats):
  with tempfile.TemporaryDirectory() as root:
    write_folder(root, images, SETTINGS[setting])
    config = bit_config.base_config()
    config.update(dataset="image_folder", data_dir=root, holdout_fraction=0.01)
    start = time.perf_counter()
    source = sources.for_training(specs.data_spec(config))
    scan_seconds = time.perf_counter() - start
    plan = specs.recipe(config).plan(source.facts.num_examples, source.facts.image_size)
    plan = hyperrule.plan(plan.num_examples, plan.image_size, batch_size=BATCH)
    assert f"{plan.precrop}/{plan.crop}" == setting, (setting, plan)
    stream, bare = best_rates([pipeline.train_dataset(source.train_examples(), plan,
                                                      seed=0),
                               bare_dataset(source, plan.precrop)], seconds, repeats)
  record = {"setting": setting, "image_size": list(plan.image_size),
            "images": source.facts.num_examples, "scan_seconds": round(scan_seconds, 2),
            "stream_img_per_s": round(stream, 1), "bare_img_per_s": round(bare, 1),
            "stream_over_bare": round(stream / bare, 3)}
  if setting == "160/128":
    record["stream_over_r50x1_training"] = round(stream / R50X1_TRAIN_RATE_128, 1)
  return record


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=256, help="images per folder")
  parser.add_argument("--seconds", type=float, default=2.0, help="per timed run")
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--settings", nargs="+", default=list(SETTINGS))
  args = parser.parse_args()
  for setting in args.settings:
    print(json.dumps(measure(setting, args.images, args.seconds, args.repeats)),
          flush=True)


if __name__ == "__main__":
  main()
