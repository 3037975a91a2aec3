"""The one exception type for mistakes a user can make (and fix)."""


class UserError(Exception):
  """A problem in the user's input: config, dataset, model path, images.

  The message is written for the user: it names the problem and what to do.
  Entry points turn it into one line on stderr and exit code 2.
  """


def first_line(error):
  """The first line of an exception's message (its type name if it has none), for
  quoting a library's error inside a UserError."""
  return (str(error).strip().splitlines() or [type(error).__name__])[0]
