"""Sub-commands of the ``vaekit`` CLI, grouped by concern (see :mod:`vaekit.cli`)."""
