"""What a user reads while a run goes: the plan, progress, evaluations and results.

TensorFlow's own lines (C++ log lines, the saver's "Sharding callback
duration", signature-serialization renames, "Assets written to") stay out of a
bit-train, bit-eval or bit-predict run unless `--verbose` is given (or
BIT_TRAIN_VERBOSE=1). Warnings and errors from any library always show.

Only an entry point's run quiets them, never an import of the package: each entry
module calls `quiet_native_logs` before it imports TensorFlow (which also makes a
Ctrl-C or SIGTERM from then on one line), and cli.run calls `configure_python_logs`
once the flags are parsed.
"""

import atexit
import logging
import os
import re
import shlex
import signal
import sys
import threading

from bit_train import errors

VERBOSE_FLAG = "verbose"  # defined by bit_train.cli for the entry points
ENTRY_POINTS = ("bit-train", "bit-eval", "bit-predict")
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

def verbose_requested(argv=None):
  argv = sys.argv if argv is None else argv
  return (f"--{VERBOSE_FLAG}" in argv or f"--{VERBOSE_FLAG}=true" in argv
          or os.environ.get("BIT_TRAIN_VERBOSE") == "1")


def _running_an_entry_point(argv):
  """Whether this process is a console script of ours."""
  return bool(argv) and os.path.basename(argv[0]) in ENTRY_POINTS


# TensorFlow's C++ lines (absl's format: level+date, time, thread, file:line]).
# TF_CPP_MIN_LOG_LEVEL quiets those logged after absl's initialisation; TensorFlow
# 2.21 writes the ones logged before it (its start-up lines) to stderr regardless,
# so those are filtered out of stderr. Python's absl logs a record in the same
# format, and before the flags are parsed (config_flags' warning on a get_config
# that returned None, which the command's own error line says) first a line saying
# so: both are filtered out too.
_NATIVE_LINE = re.compile(
    rb"[IWE]\d{4} [\d:]+\.\d+ +\d+ [^ ]+:\d+\] |"
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called|"
    rb"WARNING: Logging before flag parsing goes to stderr\.|"
    rb"To enable the following instructions: .* rebuild TensorFlow")


def _pump(source, target):
  """Copies lines from `source` to `target` (file descriptors), dropping C++ log
  lines. A partial line goes on at once unless it could be the start of one."""
  pending = b""
  while True:
    chunk = os.read(source, 1 << 16)
    if not chunk:
      break
    pending += chunk
    *lines, pending = pending.split(b"\n")
    kept = b"".join(line + b"\n" for line in lines if not _NATIVE_LINE.match(line))
    if pending and pending[:1] not in (b"I", b"W", b"E", b"T"):
      kept, pending = kept + pending, b""
    if kept:
      os.write(target, kept)
  if pending and not _NATIVE_LINE.match(pending):
    os.write(target, pending)


_stderr_was_terminal = None  # before quiet_native_logs put its filter on stderr


def stderr_is_terminal():
  """Whether the user's stderr is a terminal (the filter's pipe does not count)."""
  if _stderr_was_terminal is not None:
    return _stderr_was_terminal
  return sys.stderr.isatty()


def _interruption_in_one_line(previous, before):
  """A sys.excepthook that ends a KeyboardInterrupt or errors.Terminated no guard
  caught (Ctrl-C or SIGTERM while an entry module imports TensorFlow, before
  cli.guarded runs) as the guard does: one line (errors.interrupted(before=before))
  and exit code 130 or 143; other exceptions go to `previous`."""
  def hook(kind, value, traceback):
    codes = {KeyboardInterrupt: errors.EXIT_INTERRUPTED,
             errors.Terminated: errors.EXIT_TERMINATED}
    code = next((c for k, c in codes.items() if issubclass(kind, k)), None)
    if code is None:
      return previous(kind, value, traceback)
    print(f"error: {errors.interrupted(before=before)}", file=sys.stderr, flush=True)
    atexit._run_exitfuncs()  # pylint: disable=protected-access  (the stderr filter)
    os._exit(code)  # pylint: disable=protected-access
  return hook


def _raise_terminated(signum, frame):
  del signum, frame
  raise errors.Terminated


def quiet_native_logs(script=False, before=None):
  """Called by an entry module before it imports TensorFlow. In a run of an entry
  point (a console script, or a `script` run as __main__), a Ctrl-C or SIGTERM from
  here on that the command does not take over itself is one line
  (errors.interrupted, `before` naming what it stopped before it started) and exit
  code 130 or 143, imports included; TensorFlow's C++ INFO and WARNING
  lines are switched off (TF_CPP_MIN_LOG_LEVEL=2: the filter cannot tell the lines
  after a warning's first from ours, such as the allocator's "Current allocation
  summary follows." above an out-of-memory error, and some come after the command's
  last line) and stderr goes through a filter that drops its start-up lines and
  passes everything else on; at exit the filter is drained. Imported anywhere else,
  it does nothing."""
  if not (script or _running_an_entry_point(sys.argv)):
    return
  sys.excepthook = _interruption_in_one_line(sys.excepthook, before)
  # SIGTERM's default ends the process without a word (a SIG_IGN it inherited is kept).
  if (threading.current_thread() is threading.main_thread()
      and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
    signal.signal(signal.SIGTERM, _raise_terminated)
  if verbose_requested():
    return
  global _stderr_was_terminal
  _stderr_was_terminal = os.isatty(2)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  original = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)
  thread = threading.Thread(target=_pump, args=(read_end, original), daemon=True)
  thread.start()

  def drain():
    sys.stderr.flush()
    os.dup2(original, 2)  # closes our write end of the pipe: the filter sees EOF
    thread.join(timeout=5)  # children that inherited stderr may hold it open
  atexit.register(drain)


class _OursAndWarnings(logging.Filter):
  """Every record of bit_train; only warnings and errors of other libraries."""

  def filter(self, record):
    return record.levelno >= logging.WARNING or record.pathname.startswith(_PACKAGE_DIR)


class _Plain(logging.Formatter):
  """`HH:MM:SS message`; warnings and errors say what they are."""

  def format(self, record):
    text = super().format(record)
    stamp = self.formatTime(record, "%H:%M:%S")
    if record.levelno >= logging.WARNING:
      return f"{stamp} {record.levelname.lower()}: {text}"
    return f"{stamp} {text}"


def configure_python_logs(verbose=False):
  """After the flags are parsed: plain lines of ours, library noise filtered out."""
  if verbose or verbose_requested():
    return
  from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
  handler = absl_logging.get_absl_handler()
  handler.addFilter(_OursAndWarnings())
  handler.setFormatter(_Plain())
  logging.getLogger("tensorflow").setLevel(logging.WARNING)


def command(*words):
  """A command line a user can paste: each word quoted as a shell needs it (a path
  with a space stays one argument; plain words are left as they are)."""
  return " ".join(shlex.quote(str(word)) for word in words)


def outputs_and_next(headline, outputs, commands):
  """The text that ends a run: its result, where each output is, what to run next.

  outputs: [(what, where)]; commands: [command line].
  """
  width = max(len(what) for what, _ in outputs)
  lines = [headline] + [f"  {what:<{width}}  {where}" for what, where in outputs]
  if commands:
    lines += ["Next:"] + [f"  {command}" for command in commands]
  return "\n".join(lines)
