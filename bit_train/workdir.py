"""The layout of a workdir, who may use it, and the check that a resumed run is the
same run. Every module finds a workdir's files through the names below.

`bit-train --workdir W` writes:
  W/.lock                  LOCK: held by the bit-train using W (see `claim`)
  W/plan.json              PLAN: the config and the HyperRule's plan (--dry_run adds
                           the dataset's facts and the model's location)
  W/plan.txt               PLAN_TEXT: the plan as --dry_run prints it (--dry_run only)
  W/checkpoints/           CHECKPOINTS: ckpt-<step> of the model, optimizer state,
                           step and loss scale (see checkpoints.py); the data stream
                           is not saved, it is replayed from the seed
  W/history.jsonl          HISTORY: one line per logged step and evaluation
                           (runlog.py)
  W/tensorboard/{train,eval}/  TENSORBOARD: summaries
  W/metrics.json           METRICS: the final evaluation, the model and the step;
                           written last, so it marks a finished run, exports included
  W/curves.png             CURVES: training loss, learning rate and evaluation
                           accuracy (runlog.plot_curves)
  W/scan_cache.json        what an image folder's scan learned of each file
                           (data/sources/scan_cache.py)
  W/export/                EXPORT (see export.py):
    serving/                 SERVING: SavedModel for serving (class names in assets/)
    hub_module/              HUB_MODULE: reusable TF Hub module
    class_names.txt          CLASS_NAMES: line i names output i
    export.json              EXPORT_FACTS: model name, classes, crop, the run and
                             what it trained on
    trained_files.txt        an image folder's training files (trained_on.py)
  W/workers/<i>/           WORKERS: a multi-worker run's non-chief copies (own_dir)
`bit-eval --workdir W` writes:
  W/eval/metrics.json      EVAL, METRICS: every evaluated set's results
  W/eval/<set>.per_class.tsv   per-class accuracy of one set (see
                           evaluators/classification.py)
"""

import contextlib
import fcntl
import os

from absl import logging

from bit_train import config as bit_config
from bit_train.errors import UserError

# The module imports without TensorFlow (the experiments' runner and collect read
# workdirs through these names); its functions import what needs it.

LOCK = ".lock"
PLAN, PLAN_TEXT = "plan.json", "plan.txt"
CHECKPOINTS = "checkpoints"
HISTORY = "history.jsonl"
TENSORBOARD = "tensorboard"
METRICS = "metrics.json"
CURVES = "curves.png"
EXPORT = "export"
SERVING, HUB_MODULE = "serving", "hub_module"
CLASS_NAMES, EXPORT_FACTS = "class_names.txt", "export.json"
WORKERS = "workers"
EVAL = "eval"


def path(workdir, *parts):
  return os.path.join(workdir, *parts)


def own_dir(workdir, strategy=None):
  """Where this process writes: W for the chief, W/workers/<i> for the other workers."""
  from bit_train import distribute  # pylint: disable=g-import-not-at-top
  if strategy is None or distribute.is_chief(strategy):
    return workdir
  return path(workdir, WORKERS, str(distribute.worker_index(strategy)))


@contextlib.contextmanager
def claim(workdir, strategy=None):
  """Creates this process's directory (see own_dir) and holds its lock while inside.

  The lock is an flock on W/.lock: the OS releases it when the process ends in any
  way (kill -9 included), so it never goes stale; a second bit-train on the same
  directory is refused. gs:// and other remote workdirs cannot be locked: running
  two there at once is the user's to avoid.
  """
  from bit_train import files  # pylint: disable=g-import-not-at-top
  own = own_dir(workdir, strategy)
  files.make_dirs(own, "workdir")
  if not files.is_local(own):
    logging.info("%s is not on a local file system: it is not locked against a "
                 "second bit-train.", own)
    yield
    return
  lock_file = path(own, LOCK)
  try:
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserError(f"cannot use --workdir {workdir}: {lock_file}: {e.strerror}: choose "
                    "a directory you can write to.") from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
      raise UserError(
          f"workdir {own} is in use by another bit-train"
          f"{f' (pid {holder})' if holder.isdigit() else ''}: wait for it to end, or "
          "use another --workdir.") from None
    except OSError as e:  # e.g. a network file system without locks
      logging.warning("Cannot lock %s (%s): a second bit-train on it would not be "
                      "noticed.", lock_file, e.strerror)
    else:
      os.ftruncate(fd, 0)
      os.write(fd, f"{os.getpid()}\n".encode())
    yield
  finally:
    os.close(fd)  # releases the lock


def check_outside(workdir, image_folder):
  """The workdir is not the image folder or inside it: what a run writes there
  (checkpoints/, export/, ...) would be read as classes by the next scan."""
  if not image_folder or "://" in workdir or "://" in image_folder:
    return
  inside, root = os.path.realpath(workdir), os.path.realpath(image_folder)
  if inside == root or inside.startswith(root.rstrip(os.sep) + os.sep):
    raise UserError(f"the workdir {workdir} is inside the image folder {image_folder} "
                    "(data_dir): what the run writes there would be read as classes; "
                    "choose a --workdir outside it.")


# The folders a run writes under its workdir, each read back as a whole (an export
# by bit-eval and bit-predict, checkpoints by a resume).
RUN_OUTPUTS = (EXPORT, CHECKPOINTS, TENSORBOARD, WORKERS)


def check_not_in_outputs(workdir):
  """The workdir is not in a trainer export (a folder holding export.json: W/export,
  or a copy of it) nor in another run's output folder (W/export before its export is
  written, W/checkpoints, ...): what a run or bit-eval writes there would mix into
  what another command reads as a whole."""
  if not workdir or "://" in workdir:
    return
  here, below = os.path.realpath(workdir), None
  while True:
    if os.path.isfile(path(here, EXPORT_FACTS)):
      raise UserError(f"--workdir {workdir} is in the trainer export {here}: what this "
                      "command writes would mix into the export, which bit-eval and "
                      "bit-predict read as a whole: choose a --workdir outside it.")
    if below in RUN_OUTPUTS and os.path.isfile(path(here, PLAN)):
      raise UserError(f"--workdir {workdir} is in {path(here, below)}, where the run in "
                      f"{here} writes its {below}: choose a --workdir outside it.")
    parent = os.path.dirname(here)
    if parent == here:
      return
    here, below = parent, os.path.basename(here)


def longest_names(total_steps, workers=1):
  """The longest paths, relative to W, a run of `total_steps` writes: TensorFlow's
  temporary files of a checkpoint (checkpoints.py) and of the export (export.py),
  whose names end in `.tempstate` and up to 20 digits; with several workers, also
  the temporary checkpoint files of the last worker's own folder (own_dir)."""
  data = "data-00000-of-00001.tempstate" + "9" * 20
  checkpoint = os.path.join(CHECKPOINTS, f"ckpt-{total_steps}_temp",
                            f"part-00000-of-00001.{data}")
  names = [checkpoint,
           os.path.join(EXPORT, f"{HUB_MODULE}.tmp", "variables", f"variables.{data}")]
  if workers > 1:
    names.append(os.path.join(WORKERS, str(workers - 1), checkpoint))
  return names


def check_room(workdir, total_steps, workers=1):
  """Before the first step: W can hold the names a run of `workers` workers writes
  (the OS's longest path), and where the run writes (checkpoints, export,
  tensorboard) is a folder it can write."""
  if "://" in workdir:
    return
  try:
    limit = os.pathconf(workdir, "PC_PATH_MAX")
  except (OSError, ValueError):
    limit = 4096
  for name in longest_names(total_steps, workers):
    full = os.path.join(workdir, name)
    if len(os.fsencode(full)) >= limit:
      raise UserError(
          f"the workdir {workdir} is too long a path for the files a run writes: "
          f"{full} would be {len(os.fsencode(full))} bytes, over the system's "
          f"{limit - 1}: choose a --workdir at least "
          f"{len(os.fsencode(full)) - limit + 1} bytes shorter.")
  for name in (CHECKPOINTS, EXPORT, TENSORBOARD):
    folder = os.path.join(workdir, name)
    if os.path.exists(folder) and not os.path.isdir(folder):
      raise UserError(f"{folder} is a file, but the run writes its {name} there: move "
                      "it away or use another --workdir.")
    if os.path.isdir(folder) and not os.access(folder, os.W_OK):
      raise UserError(f"cannot write to {folder}, where the run writes its {name}: "
                      "make it writable or use another --workdir.")


def _differences(old, new, ignore=()):
  keys = sorted(set(old) | set(new))
  return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys
          if k not in ignore and old.get(k) != new.get(k)]


def _saved_run(workdir):
  """plan.json's config and plan, or a UserError naming the file and the fix."""
  from bit_train import reading  # pylint: disable=g-import-not-at-top
  return reading.read_json(
      path(workdir, PLAN), "run record", reading.Record(required={"config": dict,
                                                               "plan": dict}),
      "pass --force to resume with this command's config (the checkpoints are still "
      "checked against the model), or use a new --workdir")


def holds_run(workdir):
  """Whether W has checkpoints: its plan.json then belongs to that run."""
  from bit_train import checkpoints  # pylint: disable=g-import-not-at-top
  return bool(checkpoints.candidates(path(workdir, CHECKPOINTS)))


def check_same_run(workdir, record, force=False):
  """Raises UserError when W holds checkpoints of a run with another config, plan or
  data; with `force`, only when the class names differ (a label would silently
  change meaning).

  `record` is this run's {"config": the config as plain data, "plan": the plan's
  dict, "data": the data's identity when known} (specs.Specs.identity). Only reads:
  plan.json is written by save_run once the checkpoint has restored.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not (holds_run(workdir) and tf.io.gfile.exists(path(workdir, PLAN))):
    return
  saved = _saved_run(workdir)
  old_data, new_data = saved.get("data"), record.get("data")
  if isinstance(old_data, dict) and new_data is not None:
    old_names, new_names = old_data.get("class_names"), new_data.get("class_names")
    if old_names != new_names:
      raise UserError(
          f"workdir {workdir} holds a run whose classes were {_names(old_names)}; this "
          f"run's data has {_names(new_names)}: the model's outputs would silently "
          "change meaning, so even --force does not resume it: use a new --workdir.")
  if force:
    return
  run_only = {k for k in record["config"] if bit_config.kind(k) == bit_config.RUN_ONLY}
  changes = []
  if isinstance(old_data, dict) and new_data is not None:  # the cause, named first
    changes += [f"data {c}" for c in _differences(old_data, new_data)]
  changes = list(dict.fromkeys(  # a field of both the plan and the config once
      changes + _differences(saved["plan"], record["plan"]) +
      _differences(saved["config"], record["config"], run_only)))
  if changes:
    raise UserError(f"workdir {workdir} holds a run with a different config, plan or "
                    f"data ({'; '.join(changes[:3])}): use a new --workdir, or pass "
                    "--force to resume it with the new settings.")


def _names(names):
  if not isinstance(names, list):
    return "unknown"
  shown = ", ".join(map(str, names[:5])) + (", ..." if len(names) > 5 else "")
  return f"{len(names)} ({shown})"


def save_run(workdir, record):
  """Writes this run's record (see check_same_run) as W/plan.json."""
  from bit_train import files  # pylint: disable=g-import-not-at-top
  files.write_json_atomic(path(workdir, PLAN), record)
