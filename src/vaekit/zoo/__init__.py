"""Pretrained models shipped inside the package: names, model cards and loading.

See :mod:`vaekit.zoo.registry`.
"""

from vaekit.zoo.registry import (
    CARD_FILE,
    WEIGHTS_DIR,
    ModelCard,
    is_pretrained_name,
    load_pretrained,
    model_card,
    model_cards,
    pretrained_dir,
    pretrained_names,
    resolve_run_dir,
)

__all__ = ["CARD_FILE", "WEIGHTS_DIR", "ModelCard", "is_pretrained_name", "load_pretrained", "model_card",
           "model_cards", "pretrained_dir", "pretrained_names", "resolve_run_dir"]
