"""User-facing errors.

Every mistake a user can make (a missing file, a bad option, a corrupt
dataset) raises a :class:`VaekitError`. The CLI prints its message as one
line and exits with a non-zero status instead of showing a traceback.

Library code names parameters as the Python API spells them
(``ConfigError("epochs must be at least 1, got 0", param="epochs")``); the
CLI replaces the name with the option's flag (``--epochs``) when it prints
the message (:func:`vaekit.cli.options.translate_error`).
"""

from __future__ import annotations


class VaekitError(Exception):
    """Base class for errors caused by user input, not by bugs.

    Parameters
    ----------
    message
        One line for the user.
    param
        The parameter (a keyword argument or config field, e.g.
        ``"latent_dim"``) the message is about, named in the message as
        spelled here; ``None`` when it is not about one parameter.
    """

    def __init__(self, message: str = "", *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class DataError(VaekitError):
    """A dataset is missing, corrupt or inconsistent."""


class ConfigError(VaekitError):
    """An option or hyper-parameter is invalid."""


class RunDirError(VaekitError):
    """A run directory is missing, incomplete or inconsistent."""


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (its whitespace collapsed), or its type's name when it has none.

    Every message vaekit shows (the CLI's ``vaekit: error:`` line, the live
    explorer's JSON errors) is one line; some library errors span several.
    """
    return " ".join(str(error).split()) or type(error).__name__
