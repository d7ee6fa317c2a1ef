"""The one exception type that users see, and the one way to warn them.

Anything raised as `MetabenchError` is bad input or an unmet request that the
user can fix; the CLI prints its message on one line and exits 2, with no
traceback. Every other exception is a bug and keeps its traceback.
`warn` prints a line the user should read but that stops nothing.
"""

import sys


class MetabenchError(ValueError):
    """Bad input: the message says what is wrong and what to do about it."""


class LengthError(MetabenchError):
    """A requested token length cannot be met (too short for a task, etc.)."""


def warn(message: str) -> None:
    """One line on stderr: something was handled, and the user should know what."""
    print(f"metabench: warning: {message}", file=sys.stderr)
