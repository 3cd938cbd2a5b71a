"""The one base class for errors caused by the user's input.

Anything the user can fix (a config key, a data file, a checkpoint directory, a missing path)
raises a subclass of `F2JaxError` whose message names what is wrong and where. `f2jax.cli.main`
catches this class alone and prints one line; any other exception is a bug and keeps its
traceback. Subclasses also derive from the builtin type callers already catch (ValueError,
FileNotFoundError, ...), so library users lose nothing.
"""

from __future__ import annotations

import importlib.util


class F2JaxError(Exception):
    """A user-input error: its message says what and where (file, row, column or config key)."""

    kind = "error"  # what family of input was wrong; the CLI prints it before the message


class InputNotFoundError(F2JaxError, FileNotFoundError):
    """A file or directory the user named does not exist (or lacks the files it must hold)."""

    kind = "not found"


class UserInputError(F2JaxError, ValueError):
    """A malformed file or argument the user supplied (not a config key, not a data row)."""

    kind = "invalid input"


class MissingExtraError(F2JaxError):
    """An optional feature whose packages (an extra of the install) are absent."""

    kind = "missing dependency"


def require_extra(module: str, extra: str, feature: str) -> None:
    """Stop `feature` with the install line to run when `module` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"{feature} needs {module}: pip install 'f2jax[{extra}]'")


def one_line(err: BaseException) -> str:
    """The error's message on one line (multi-line messages joined with '; ')."""
    text = str(err).strip() or type(err).__name__
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
