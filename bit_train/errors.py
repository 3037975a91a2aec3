"""The exception types whose message is for the user: mistakes they can fix, and an
interrupted run."""


class UserError(Exception):
  """A problem in the user's input: config, dataset, model path, images.

  The message is written for the user: it names the problem and what to do.
  Entry points turn it into one line on stderr and exit code 2.
  """


class Interrupted(Exception):
  """Ctrl-C: the message says where the run stopped and how to go on (exit 130)."""


def first_line(error):
  """The first line of an exception's message (its type name if it has none), for
  quoting a library's error inside a UserError."""
  return (str(error).strip().splitlines() or [type(error).__name__])[0]
