"""Class names as users type them: the one resolver for every command and API function.

``"bag"``, ``"Bag"``, ``"T-shirt"``, ``"t shirt top"``, ``"shoes"`` and ``"8"``
all name a class of Fashion-MNIST. Training (``exclude_classes``), analysis
(interpolation, arithmetic, anomaly protocols) and CelebA attributes
(``Smiling``, ``smiling``) all resolve names here, so a name accepted by one
command is accepted by every other. :func:`class_mask` turns names into the
images they select, for code that would otherwise compare labels itself.
"""

from __future__ import annotations

import re
from typing import Iterable, Sequence

import numpy as np
import torch

from vaekit.errors import ConfigError

#: alias -> class name (both normalised, see :func:`_normalise`). Dataset-independent: an alias
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


def resolve_class(name: str | int, class_names: Sequence[str], *, what: str = "class") -> int:
    """Id of a user-given class (or attribute) name.

    Matching ignores case, spaces, hyphens, slashes and underscores, accepts
    each part of a name like "T-shirt/top", the aliases in
    :data:`CLASS_ALIASES` (``shoes`` -> Sneaker, ``boot`` -> Ankle boot), plurals
    and ids (``7`` or ``"7"``).

    Parameters
    ----------
    name : str or int
        What the user typed, or an id.
    class_names : sequence of str
        The valid names; the result indexes into it.
    what : str, default "class"
        The kind of name, for the error message (``"attribute"`` for CelebA).

    Returns
    -------
    int
        Index into ``class_names``.

    Raises
    ------
    ConfigError
        For a name that matches nothing or an id out of range; one line
        listing the valid names.
    """
    valid = f"valid names: {', '.join(class_names)}"
    # bool is an int subclass; reject it so True does not mean id 1.
    if isinstance(name, (int, np.integer)) and not isinstance(name, bool):
        if 0 <= int(name) < len(class_names):
            return int(name)
        raise ConfigError(f"{what} id {int(name)} is out of range (0..{len(class_names) - 1}); {valid}")
    if isinstance(name, str):
        key = _normalise(name)
        if key.isdigit() and int(key) < len(class_names):
            return int(key)
        table = _name_candidates(class_names)
        singular = (key[:-1] if key.endswith("s") else None, key[:-2] if key.endswith("es") else None)
        for candidate in (key, *singular):
            if candidate and candidate in table:
                return table[candidate]
    raise ConfigError(f"unknown {what} {name!r}; {valid}")


def resolve_classes(
    names: Iterable[str | int] | str | int, class_names: Sequence[str], *, what: str = "class"
) -> list[int]:
    """Ids of several names (or of one), each resolved by :func:`resolve_class`.

    Parameters
    ----------
    names : str, int, or iterable of them
        A single name or id is treated as a list of one.
    class_names : sequence of str
        The valid names.
    what : str, default "class"
        The kind of name, for the error message.

    Returns
    -------
    list of int
        One id per name, in the given order (duplicates kept).
    """
    if isinstance(names, (str, int, np.integer)):
        names = [names]
    return [resolve_class(name, class_names, what=what) for name in names]


def class_mask(
    labels: torch.Tensor | np.ndarray | Sequence[int],
    names: Iterable[str | int] | str | int,
    class_names: Sequence[str],
) -> np.ndarray:
    """Which images belong to any of the named classes.

    Parameters
    ----------
    labels : tensor, array or sequence of int
        Class id of each image, shape ``(N,)``.
    names : str, int, or iterable of them
        Class names or ids, resolved by :func:`resolve_class`.
    class_names : sequence of str
        The dataset's class names.

    Returns
    -------
    numpy.ndarray
        bool ``(N,)``.
    """
    ids = resolve_classes(names, class_names)
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    return np.isin(np.asarray(labels), ids)
