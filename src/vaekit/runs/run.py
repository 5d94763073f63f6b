"""A run directory and what it holds: config, model, metrics, and its dataset."""

from __future__ import annotations

import csv
import os
from pathlib import Path

METRICS_FILE = "metrics.csv"
CHECKPOINT_FILE = "checkpoint.pt"


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of ``metrics.csv`` (empty if training has not finished an epoch)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))
