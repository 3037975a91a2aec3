"""The offline quickstart (`make demo`): a real BiT transfer in miniature, end to end.

  python experiments/miniature/demo.py [--workdir workdirs/quickstart]

1. writes scikit-learn's 1,797 real 8x8 digit scans as an image folder;
2. `bit-train` fine-tunes the bundled BiT-MNIST-R14x0.25 (pre-trained here on MNIST)
   on it with the HyperRule (CPU-budget overrides in the quickstart config), evaluates
   it on a held-out 10 % of every class and exports it;
3. `bit-predict` classifies a few held-out scans with the export;
4. prints a summary: accuracy, where everything is, what to try next.

Each step is the command a user would type; it is printed before it runs.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time

from bit_train import console  # pylint: disable=wrong-import-position

console.quiet_native_logs(script=__name__ == "__main__")  # before TensorFlow is imported
from bit_train import workdir as wd  # pylint: disable=g-import-not-at-top,wrong-import-position
from write_digits import write_digits  # pylint: disable=g-import-not-at-top,wrong-import-position

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*command):
  """Runs one of the project's commands as a user would, stopping the demo on failure."""
  print(f"\n$ {console.command(*command)}", flush=True)
  module = {"bit-train": "bit_train.train", "bit-predict": "bit_train.predict"}[command[0]]
  result = subprocess.run([sys.executable, "-m", module, *command[1:]], cwd=ROOT)
  if result.returncode:
    sys.exit(result.returncode)


def held_out_examples(data, count=4):
  """The first held-out scan of `count` classes: the run evaluated, never trained on them."""
  from bit_train.data.sources import folder  # pylint: disable=g-import-not-at-top
  held = folder.scan(data).eval
  first = {}
  for path, label in zip(held.paths, held.labels):
    first.setdefault(label, path)
  return [first[label] for label in sorted(first)[:count]]


def demo_workdir(workdir, data):
  """None when `workdir` may be deleted and written afresh: it is not there, is an
  empty folder, or holds a run whose plan.json says it trained on the demo's `data`;
  else the one line saying why it is left alone."""
  from bit_train import reading  # pylint: disable=g-import-not-at-top
  from bit_train.errors import UserError  # pylint: disable=g-import-not-at-top
  if not os.path.lexists(workdir):
    return None
  keep = f"--workdir {workdir} is left alone"
  if os.path.islink(workdir) or not os.path.isdir(workdir):
    return f"{keep}: it is not a folder; give the demo another --workdir."
  if not os.listdir(workdir):
    return None
  try:
    record = reading.read_json_if_exists(wd.path(workdir, wd.PLAN), "run record",
                                         reading.Record(required={"config": dict}))
  except UserError as e:
    return f"{keep}: {e}"
  if record is None or record["config"].get("data_dir") != data:
    return (f"{keep}: it holds files that are not a demo run on {data} (the demo "
            "deletes its workdir to start afresh); give the demo another --workdir.")
  return None


def demo_data(data):
  """None when the digits may be written to `data`: it is not there, is an empty
  folder, or holds only the digits (0/ ... 9/ of <label>_<index>.png); else the one
  line saying why it is left alone (the digits would join the images there)."""
  if not os.path.exists(data):
    return None
  if not os.path.isdir(data):
    return f"--data {data} is a file, not a folder: give another --data."
  try:
    for name in os.listdir(data):
      folder = os.path.join(data, name)
      if name not in {str(label) for label in range(10)} or not os.path.isdir(
          folder) or any(not re.fullmatch(rf"{name}_\d{{4}}\.png", f)
                         for f in os.listdir(folder)):
        return (f"--data {data} is left alone: it holds {folder}, which is not one of "
                "the demo's digit scans (they would join the images there); give the "
                "demo another --data.")
  except OSError as e:
    return f"--data {data} cannot be read ({e.strerror}): give another --data."
  return None


# What the demo decides itself: its digits, written to --data.
OWN_FIELDS = ("dataset", "data_dir")


def demo_config_args(config_args):
  """None when --config_args leaves the demo's data alone, else the one line: a
  data_dir there trained on other images under the summary's 'digit scans'."""
  keys = [item.partition("=")[0].strip() for item in config_args.split(",")]
  own = [key for key in keys if key in OWN_FIELDS]
  if own:
    return (f"--config_args sets {', '.join(own)}, which the demo sets itself (its "
            "digits, written to --data): remove it, or give --data; for your own "
            "images run bit-train --config folder:data_dir=... .")
  return None


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", default="workdirs/quickstart")
  parser.add_argument("--data", default="workdirs/digits")
  parser.add_argument("--config_args", default="",
                      help="extra key=val settings for the quickstart config")
  args = parser.parse_args()
  start = time.time()
  here = os.getcwd()  # the user's relative paths are from here, not from ROOT
  if os.path.realpath(here) != os.path.realpath(ROOT):
    args.workdir, args.data = (os.path.join(here, p) for p in (args.workdir, args.data))
  os.chdir(ROOT)
  refused = (demo_config_args(args.config_args) or demo_workdir(args.workdir, args.data)
             or demo_data(args.data))
  if refused:
    print(f"error: {refused}", file=sys.stderr)
    sys.exit(2)
  count = write_digits(args.data)
  print(f"Wrote {count} real 8x8 digit scans (scikit-learn) to {args.data}/<class>/")
  config = f"quickstart:data_dir={args.data}"
  if args.config_args:
    config += f",{args.config_args}"
  if os.path.exists(args.workdir):  # the demo's own workdir: start afresh
    shutil.rmtree(args.workdir)
  run("bit-train", "--config", config, "--workdir", args.workdir)
  run("bit-predict", "--model", os.path.join(args.workdir, "export"), "--top", "2",
      "--images", *held_out_examples(args.data))

  metrics = json.load(open(wd.path(args.workdir, wd.METRICS)))
  plan = json.load(open(wd.path(args.workdir, wd.PLAN)))["plan"]
  w = args.workdir
  print(f"""
Demo done in {time.time() - start:.0f} s.
  Fine-tuned {metrics['model']} on {plan['num_examples']} digit scans for {plan['supports'][-1]} steps:
  held-out top-1 {metrics['top1']:.1%} ({metrics['count']} scans the run never trained on).
  The plan and config      {w}/plan.json
  Checkpoints (resume)     {w}/checkpoints/
  Curves                   {w}/curves.png   ({console.command("tensorboard", "--logdir", f"{w}/tensorboard")})
  Metrics                  {w}/metrics.json
  Exports                  {w}/export/serving (uint8 images in, classes out)
                           {w}/export/hub_module (a reusable TF Hub module)
Next:
  . .venv/bin/activate
  {console.command("bit-predict", "--model", f"{w}/export", "--images", f"{args.data}/7", "--top", "3")}
  bit-train --config quickstart:examples_per_class=5 --workdir workdirs/five_shot
  python -m experiments.run miniature --root workdirs/experiments   # transfer vs scratch vs probe, k = 1, 5, 10, all (~40 min)
  bit-train --config folder:data_dir=YOUR_PHOTOS,model=BiT-M-R50x1 --workdir W   # with network
""")


if __name__ == "__main__":
  main()
