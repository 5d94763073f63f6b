"""Run directories: the unit of persistence, opened as a :class:`Run`."""

from vaekit.runs.run import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    Run,
    parse_metrics_row,
    read_metrics,
)

__all__ = ["CHECKPOINT_FILE", "METRICS_FILE", "Run", "parse_metrics_row", "read_metrics"]
