"""Class names as users type them: the one resolver for every command and API function.

``"bag"``, ``"Bag"``, ``"T-shirt"``, ``"t shirt top"``, ``"shoes"`` and ``"8"``
all name a class of Fashion-MNIST. Training (``exclude_classes``), analysis
(interpolation, arithmetic, anomaly protocols) and CelebA attributes
(``Smiling``, ``smiling``) all resolve names here, so a name accepted by one
command is accepted by every other.
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from vaekit.errors import ConfigError

#: (both normalised, see :func:`_normalise`). Dataset-independent: an alias
#: is used only when its target is one of the dataset's classes. Names
#: joined by "/" in a class name ("T-shirt/top") are accepted on their own
#: without an entry here, and so are plurals ending in "s".
CLASS_ALIASES: dict[str, str] = {
    "tshirt": "tshirttop",
    "tee": "tshirttop",
    "teeshirt": "tshirttop",
    "shoe": "sneaker",
    "shoes": "sneaker",
    "trainer": "sneaker",
    "trainers": "sneaker",
    "boot": "ankleboot",
    "boots": "ankleboot",
    "pants": "trouser",
    "jeans": "trouser",
    "sweater": "pullover",
    "jumper": "pullover",
    "jacket": "coat",
    "handbag": "bag",
    "purse": "bag",
    "skirt": "dress",
}



def _normalise(name: str) -> str:
    # "T-shirt/top", "t shirt top" and "TSHIRT_TOP" all mean the same class.
    return re.sub(r"[\s\-/_.]+", "", name.lower())


def _name_candidates(class_names: Sequence[str]) -> dict[str, int]:
    """Normalised spelling -> class id: full names first, then their "/" parts, then aliases."""
    table: dict[str, int] = {}
    for i, name in enumerate(class_names):
        table.setdefault(_normalise(name), i)
    for i, name in enumerate(class_names):
        for part in name.split("/"):
            table.setdefault(_normalise(part), i)
    for alias, target in CLASS_ALIASES.items():
        if target in table:
            table.setdefault(alias, table[target])
    return table


def resolve_class(name: str | int, class_names: Sequence[str]) -> int:
    """Class id of a user-given class name.

    Matching ignores case, spaces, hyphens, slashes and underscores, accepts
    each part of a name like "T-shirt/top", the aliases in
    :data:`CLASS_ALIASES` (``shoes`` -> Sneaker, ``boot`` -> Ankle boot), plurals
    and class ids ("7").

    Raises
    ------
    ConfigError
        For a name that matches no class; the message lists the valid names.
    """
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if 0 <= int(name) < len(class_names):
            return int(name)
    elif isinstance(name, str):
        key = _normalise(name)
        if key.isdigit() and int(key) < len(class_names):
            return int(key)
        table = _name_candidates(class_names)
        for candidate in (key, key[:-1] if key.endswith("s") else None, key[:-2] if key.endswith("es") else None):
            if candidate and candidate in table:
                return table[candidate]
    raise ConfigError(f"unknown class {name!r}; valid names: {', '.join(class_names)}")

