"""The exception types whose message is for the user: mistakes they can fix, and an
interrupted run; and the one way to quote another library's error inside them."""


class UserError(Exception):
  """A problem in the user's input: config, dataset, model path, images.

  The message is written for the user: it names the problem and what to do.
  Entry points turn it into one line on stderr and exit code 2.
  """


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


AGAIN = "run the same command again."


def interrupted(again=AGAIN, before=None):
  """The message of a Ctrl-C or SIGTERM that stopped no run: `before` names what had
  not started yet (so nothing of it was saved), `again` says what to do next."""
  if before:
    return f"interrupted before {before} started (nothing saved): {again}"
  return f"interrupted: {again}"


class Terminated(BaseException):
  """SIGTERM before a command's own handling of it (bit-train's training loop):
  raised by the handler console.quiet_native_logs installs, so that the command ends
  as after Ctrl-C, in one line, with exit code 143. A BaseException, as
  KeyboardInterrupt is: no `except Exception` takes it for a failure."""


class Interrupted(Exception):
  """Ctrl-C or SIGTERM: the message says where the run stopped and how to go on.

  The exit code is the shells' 128 + the signal's number: 130 for Ctrl-C (SIGINT),
  143 for SIGTERM (what Slurm, Kubernetes and preemptible VMs send first).
  """

  def __init__(self, message, exit_code=EXIT_INTERRUPTED):
    super().__init__(message)
    self.exit_code = exit_code


def quote(error, part="first"):
  """An error's message as one line, runs of spaces and line breaks collapsed.

  part="first": its first line, where libraries (TensorFlow, TFDS, TF Hub) put the
  gist; "last": its last line, for wrappers that put the cause there (ml_collections'
  "Failed loading config file ... [Errno 2] ..."); "all": the whole message. An
  empty message is quoted as the error's type name.
  """
  lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
  if not lines:
    return type(error).__name__
  return {"first": lines[0], "last": lines[-1], "all": " ".join(lines)}[part]
