"""What every entry point shares: flag parsing, config loading, one-line errors.

User mistakes end as `error: <what is wrong and what to do>` on stderr with exit
code 2, never as a traceback; so does an OS error on a path (the OS refused a file
the user named or a directory we write: that is the user's to fix, not our bug).
Ctrl-C ends as one such line with exit code 130. Everything else keeps its
traceback: our bugs, and bugs in a config file's code (an error raised while the
config file runs is the file's, not a mistake on the command line).

`--help` prints the command's flags and the config fields it reads (helptext.py)
and exits 0. The console scripts (train, evaluate, predict below) answer it, and a
mistake in a packaged config's fields, before importing their entry module, and so
before TensorFlow. A packaged config is named
without a path (`--config transfer:dataset=cifar10`); run() gives config_flags its
file's path.
"""

import importlib
import os
import re
import select
import sys
import traceback
import types

from absl import app
from absl import flags
from ml_collections import config_flags

from bit_train import config as bit_config
from bit_train import configs
from bit_train import console
from bit_train import specs
from bit_train import files
from bit_train import helptext
from bit_train import reading
from bit_train import workdir as wd
from bit_train.errors import AGAIN, EXIT_INTERRUPTED, EXIT_TERMINATED, Interrupted, Terminated
from bit_train.errors import UserError, interrupted, quote

EXIT_USER_ERROR = 2
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: stdout's reader left (`| head`)

_VERBOSE = flags.DEFINE_bool(console.VERBOSE_FLAG, False,
                             "Also show TensorFlow's own log lines (hidden by default).")


def output_closed(error):
  """After a BrokenPipeError: when stdout's reader left (`| head`), ends quietly as
  a Unix tool does; a broken pipe elsewhere is re-raised."""
  try:  # a pipe whose reader left polls as an error
    poll = select.poll()
    poll.register(sys.stdout.fileno(), select.POLLOUT)
    closed = any(events & select.POLLERR for _, events in poll.poll(0))
  except (AttributeError, OSError, ValueError):
    closed = False
  if not closed:
    raise error
  # What is still buffered would fail again when Python flushes at exit.
  os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
  sys.exit(EXIT_BROKEN_PIPE)


def fail(message, code=EXIT_USER_ERROR):
  """Prints one line naming the problem and exits with `code`."""
  print(f"error: {quote(message, 'all')}", file=sys.stderr)
  sys.exit(code)


# config_flags loads the file given to --config as a module of this name.
CONFIG_MODULE = "config_config"


def _raised_by_config_file(error):
  """The error, or the one it wraps, when it was raised while the config file's own
  code ran (its get_config or its top level), else None.

  config_flags re-raises a TypeError or ValueError of the file as a new error with
  the traceback as text, and absl wraps that again: the original is the context.
  """
  while error is not None:
    if any(frame.f_globals.get("__name__") == CONFIG_MODULE
           for frame, _ in traceback.walk_tb(error.__traceback__)):
      return error
    error = error.__cause__ or error.__context__
  return None


# Flags holding one local path (a leading ~ is expanded: `--workdir=~/w` reaches no
# shell's tilde expansion).
PATH_FLAGS = ("workdir", "model", "labels")


def _parse_flags(argv):
  try:
    rest = flags.FLAGS(argv)
    for name in PATH_FLAGS:
      if name in flags.FLAGS:
        flags.FLAGS[name].value = files.home_expanded(flags.FLAGS[name].value)
    return rest
  except UserError as e:
    fail(e)
  except SyntaxError as e:  # in a config file: Python's file, line and caret only
    print("".join(traceback.format_exception_only(e)).rstrip(), file=sys.stderr)
    fail(f"syntax error in {e.filename}, line {e.lineno} (shown above), while "
         "loading the config: fix it.")
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    original = _raised_by_config_file(e)
    if original is not None:  # a bug in the config file: its traceback
      raise original from None
    fail(_arguments_mistake(e, argv) or _command_line_mistake(e))


# Python's words when get_config's parameters and the text after the config file's
# name (FILE.py:ARGS) do not fit: config_flags calls get_config(ARGS), or
# get_config() when there is none.
_TAKES_NONE = re.compile(r"get_config\(\) takes 0 positional arguments but 1 was given")
_NEEDS_ONE = re.compile(r"get_config\(\) missing 1 required positional argument")


def _arguments_mistake(error, argv):
  """The one line for `--config FILE.py:ARGS` given to a get_config() that takes no
  parameter, or `--config FILE.py` to one that needs one; else None. The call failed
  before any of the file's code ran, so it is the command line's mistake, not the
  file's bug. argv: the command line, or the `FILE.py[:ARGS]` text itself."""
  given = [argv] if isinstance(argv, str) else [v for _, _, v in _config_values(argv)]
  if not given or _raised_by_config_file(error) is not None:
    return None
  path, has_args, args = given[-1].partition(":")
  refused = _TAKES_NONE if has_args else _NEEDS_ONE
  while error is not None and not (isinstance(error, TypeError)
                                   and refused.match(str(error))):
    error = error.__cause__ or error.__context__
  if error is None:
    return None
  if has_args:
    return (f"the config file {path} takes no arguments (its get_config() has no "
            f"parameter), but {args!r} follows its name: give --config {path} and set "
            "fields with --config.<field>=<value>, or define get_config(arg=None) and "
            "apply arg (see bit_train/configs/transfer.py).")
  return (f"the config file {path} needs an argument (its get_config has a parameter "
          f"without a default): give it after the file's name, --config {path}:ARG, or "
          "define get_config(arg=None).")


def _command_line_mistake(e):
  """The one line for a flag or a --config.<field> the command line got wrong."""
  if isinstance(e, flags.Error):
    return f"bad command line: {e}"
  if isinstance(e, AttributeError):  # ml_collections: --config.<unknown field>
    if e.name == "get_config" and isinstance(e.obj, types.ModuleType):
      return (f"the config file {getattr(e.obj, '__file__', e.obj.__name__)} has no "
              "get_config(arg=None) returning a ConfigDict: define it (see "
              "bit_train/configs/transfer.py).")
    text = str(e).replace("\\n", " ").replace("\\'", "").strip("'\" ")
    return f"unknown config field on the command line: {text}"
  return f"bad config value on the command line: {quote(e, 'last')}"


HELP_FLAGS = ("-h", "--help", "-help", "--helpshort", "-helpshort", "-?")
CONFIG_FLAGS = ("--config", "-config")  # the config_flags flag of bit-train, bit-eval


def _options(argv):
  """The arguments before a `--` (after it, all are positional)."""
  return argv[1:argv.index("--")] if "--" in argv else argv[1:]


def wants_help(argv):
  return any(arg in HELP_FLAGS for arg in _options(argv))


def _config_values(argv):
  """[(index in argv, text before the value there, the value)] of each --config."""
  found, count = [], len(_options(argv)) + 1
  for i in range(1, count):
    flag, equals, value = argv[i].partition("=")
    if flag in CONFIG_FLAGS:
      if equals:
        found.append((i, flag + "=", value))
      elif i + 1 < count:
        found.append((i + 1, "", argv[i + 1]))
  return found


def one_config(argv):
  """A second --config would replace the first without a word."""
  values = [value for _, _, value in _config_values(argv)]
  if len(values) > 1:
    raise UserError(f"--config is given {len(values)} times ({', '.join(values)}): "
                    "give one, and set fields after its name (NAME:field=value,...) "
                    "or with --config.<field>=<value>.")


def resolve_configs(argv):
  """argv with each packaged config's name after --config replaced by its path; each
  config file is read through the reading layer first (check_config_file)."""
  argv = list(argv)
  for i, before, value in _config_values(argv):
    argv[i] = before + check_config_file(configs.resolve(value))
  return argv


def check_config_file(argument):
  """`FILE.py[:ARGS]` as it is, once FILE reads as Python source: a missing,
  unreadable or undecodable config file is one line (reading.read_source), not the
  import error config_flags would raise. An error inside the file's code is the
  file's and keeps its traceback when config_flags runs it."""
  reading.read_source(argument.partition(":")[0], "config file")
  return argument


def check_packaged_config(argv):
  """Ends a mistake in a packaged config's argument (an unknown config, field or
  model name, a bad value, a value validate() refuses) with the line the entry
  module would print, before it and TensorFlow are imported. Only when no --config.<field> flag is given
  (config_flags applies those, and they may change what validate() sees); the user's
  own config file is run by config_flags alone."""
  values = _config_values(argv)
  if not values or any(a.startswith(tuple(f"{f}." for f in CONFIG_FLAGS))
                       for a in _options(argv)):
    return
  name, _, arg = values[-1][2].partition(":")
  try:
    if configs.resolve(name) != name:  # a packaged config
      config = bit_config.validate(configs.load(name, arg or None))
      specs.recipe(config)  # the records' own checks (batch split, holdout...) too
      specs.data_spec(config)
      specs.model_spec(config)  # the model's name, in the registry
      specs.run_spec(config)
  except UserError as e:
    fail(e)


def _command(main):
  """The console script whose entry module defines `main`, or None."""
  module = main.__module__
  if module == "__main__":  # python -m bit_train.train
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    module = spec.name if spec else module
  return helptext.command_of(module)


def _print_help_and_exit(command):
  print(helptext.command_help(command))
  sys.exit(0)


# What --workdir holds, for the commands that need one.
WORKDIR_HOLDS = {"bit-train": "the plan, checkpoints and exports",
                 "bit-eval": "the metrics"}


# The answer to each command's missing --config: a whole command of the README's.
CONFIG_EXAMPLES = {
    "bit-train": "bit-train --config transfer:dataset=cifar10,model=BiT-M-R50x1 "
                 "--workdir W",
    "bit-eval": "bit-eval --config imagenet_eval:dataset=image_folder,data_dir=photos,"
                "model_path=W/export --workdir E"}


def require_workdir(command, workdir):
  """The one line for a missing --workdir of `command`, or one in a trainer export
  or another run's output folder (workdir.check_not_in_outputs)."""
  if not workdir:
    raise UserError(f"--workdir is required: the directory for "
                    f"{WORKDIR_HOLDS[command]}.")
  wd.check_not_in_outputs(workdir)


def _workdir_given(argv):
  options = _options(argv)
  for i, arg in enumerate(options):
    name, equals, value = arg.partition("=")
    if name in ("--workdir", "-workdir"):
      return bool(value) if equals else i + 1 < len(options)
  return False


def console_script(command):
  """Runs console script `command`: --help from the declarations and a mistake in a
  packaged config's argument, before the entry module (and TensorFlow) is imported;
  anything else by the entry module's run()."""
  if wants_help(sys.argv):
    _print_help_and_exit(command)
  if helptext.fields_of(command):
    check_packaged_config(sys.argv)
  if command in WORKDIR_HOLDS and not _workdir_given(sys.argv):
    try:
      require_workdir(command, None)
    except UserError as e:
      fail(e)
  importlib.import_module(helptext.COMMANDS[command]).run()


def train():
  console_script("bit-train")


def evaluate():
  console_script("bit-eval")


def predict():
  console_script("bit-predict")


def run(main, before=None):
  """absl's app.run, with user mistakes reduced to one line and exit code 2, and
  --help from the declarations (helptext.py). `before`: what a Ctrl-C or SIGTERM
  that main does not take over stops before it started (see guarded)."""
  command = _command(main)
  if command and wants_help(sys.argv):
    _print_help_and_exit(command)
  argv = sys.argv
  if "config" in flags.FLAGS:  # the entry module reads a config file
    try:
      one_config(argv)
      argv = resolve_configs(argv)
    except UserError as e:
      fail(e)

  def guarded_main(argv):
    console.configure_python_logs(_VERBOSE.value)
    return guarded(main, argv, before=before)
  app.run(guarded_main, argv=argv, flags_parser=_parse_flags)


def guarded(main, *args, again=AGAIN, before=None):
  """main(*args), ended as every command of the project ends: a user's mistake or a
  path the system refused is one line and exit 2, an interruption its own line and
  the shells' code, a closed stdout exit 141; `again` says how to go on after Ctrl-C
  or SIGTERM, `before` what they stopped before it started (errors.interrupted).
  Anything else is a bug and keeps its traceback."""
  tf = sys.modules.get("tensorflow")  # imported by the entry module, if it uses it
  out_of_memory = (tf.errors.ResourceExhaustedError,) if tf else ()
  try:
    return main(*args)
  except UserError as e:
    fail(e)
  except out_of_memory as e:  # a crop or batch too large for this machine
    shape = re.search(r"tensor with shape\s*(\[[^\]]*\])", str(e))
    fail(f"out of memory: TensorFlow could not allocate "
         f"{f'a tensor of shape {shape.group(1)}' if shape else 'the memory it needed'}: "
         "use a smaller crop or batch size (bit-train: batch_split=k keeps the batch in "
         "k smaller micro-batches).")
  except BrokenPipeError as e:
    output_closed(e)
  except OSError as e:
    if e.filename is None:
      raise
    fail(f"{e.filename}: {e.strerror}: check the path.")
  except Interrupted as e:
    fail(e, e.exit_code)
  except KeyboardInterrupt:
    fail(interrupted(again, before), EXIT_INTERRUPTED)
  except Terminated:
    fail(interrupted(again, before), EXIT_TERMINATED)


def reject_arguments(argv):
  """Config entry points take no positional arguments: name where settings go."""
  if len(argv) > 1:
    raise UserError(f"unexpected arguments {argv[1:]}: settings go after the config "
                    "file (file.py:key=val) or as --config.<field>=<value>.")


def load_config(source, overrides=(), flag_name="config", command="bit-train"):
  """The validated ConfigDict of a config file, loaded the way --config loads it.

  source: the config_flags holder of an entry point's --config, or the text
    `FILE.py[:ARGS]` itself (the experiments runner).
  overrides: `--config.<field>=<value>` (or `<field>=<value>`) settings on top.
  command: the console script whose --config it is, for the line when it is missing.
  """
  given = isinstance(source, str) or bool(getattr(source, "present", False))
  if isinstance(source, str):
    check_config_file(source)
    try:
      parsed = config_flags.config_flags.ConfigFileFlagParser(flag_name).parse(source)
    except TypeError as e:
      mistake = _arguments_mistake(e, source)
      if mistake is None:
        raise
      raise UserError(mistake) from None
    source = types.SimpleNamespace(value=parsed)
  config = source.value
  if config is None and given:  # config_flags keeps a None that get_config returned
    raise UserError(f"the config file's get_config returned None (--{flag_name}): "
                    "return the config, e.g. bit_train.config.base_config() changed "
                    "as your run needs.")
  if config is None:
    raise UserError(f"--{flag_name} is required, e.g. {CONFIG_EXAMPLES[command]} "
                    f"(`{command} --help` lists the configs).")
  try:
    config.keys()
  except OSError as e:  # config_flags defers "file not found" to first access
    raise UserError(f"cannot load the config file: {quote(e, 'last')}"
                    f" (check the path given to --{flag_name})") from None
  for item in overrides:
    bit_config.apply_arg(config, item.removeprefix(f"--{flag_name}."))
  return bit_config.validate(config)
