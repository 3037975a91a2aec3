"""A linear probe: logistic regression on a model's frozen pre-logits.

  python -m experiments.miniature.probe --config quickstart:ARGS --workdir W

Takes the same config as a bit-train run (the same data, few-shot examples and
held-out split, the model's eval crop), fits scikit-learn's logistic regression on
the frozen features of the training examples and writes W/metrics.json with the
top-1 on the eval examples, like a bit-train run does, so the runner and collect
treat it as one more run. No training steps; a minute on a CPU.
"""

import argparse
import json
import os

import numpy as np

from bit_train import console

console.quiet_native_logs(script=__name__ == "__main__")  # before TensorFlow is imported


def linear_probe(run):
  """(top-1, eval count) of logistic regression on the model's frozen pre-logits."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  from bit_train.data import preprocess  # pylint: disable=g-import-not-at-top
  from bit_train.data import sources  # pylint: disable=g-import-not-at-top
  from bit_train.models.factory import create_model  # pylint: disable=g-import-not-at-top
  source = sources.for_training(run.data)
  model = create_model(run.model, source.num_classes)
  crop = run.recipe.crop

  def features(dataset):
    batches = dataset.map(lambda e, y: (preprocess.eval_image(e, crop), y)).batch(256)
    xs, ys = zip(*[(model.pre_logits(x).numpy(), y.numpy()) for x, y in batches])
    return np.concatenate(xs), np.concatenate(ys)

  train_x, train_y = features(source.train_examples().read())
  eval_x, eval_y = features(source.eval_examples().read())
  probe = LogisticRegression(max_iter=5000, C=1.0).fit(train_x, train_y)
  return float(np.mean(probe.predict(eval_x) == eval_y)), len(eval_y)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--config", required=True, help="FILE.py:key=val,... as for bit-train")
  parser.add_argument("--workdir", required=True)
  args, flags = parser.parse_known_args()
  from bit_train import cli  # pylint: disable=g-import-not-at-top
  from bit_train import specs  # pylint: disable=g-import-not-at-top
  from bit_train import workdir as wd  # pylint: disable=g-import-not-at-top
  from bit_train.errors import UserError  # pylint: disable=g-import-not-at-top
  from experiments import plans  # pylint: disable=g-import-not-at-top
  try:
    run = specs.from_config(plans.load_config(args.config, flags))
    top1, count = linear_probe(run)
  except UserError as e:
    cli.fail(e)
  os.makedirs(args.workdir, exist_ok=True)
  record = {"top1": top1, "count": count, "probe": "logistic regression, C=1",
            "model": run.model.name}
  metrics = wd.path(args.workdir, wd.METRICS)
  with open(metrics + ".tmp", "w") as f:
    json.dump(record, f, indent=1)
  os.replace(metrics + ".tmp", metrics)
  print(json.dumps(record))


if __name__ == "__main__":
  main()
