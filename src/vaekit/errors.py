"""User-facing errors.

Every mistake a user can make (a missing file, a bad option, a corrupt
dataset) raises a :class:`VaekitError`. The CLI prints its message as one
line and exits with a non-zero status instead of showing a traceback.
"""

from __future__ import annotations


class VaekitError(Exception):
    """Base class for errors caused by user input, not by bugs."""


class DataError(VaekitError):
    """A dataset is missing, corrupt or inconsistent."""


class ConfigError(VaekitError):
    """An option or hyper-parameter is invalid."""


class RunDirError(VaekitError):
    """A run directory is missing, incomplete or inconsistent."""
