"""Command-line options: generated from config dataclasses, and errors shown with their flags.

A config dataclass (:class:`~vaekit.training.config.TrainConfig`) is the one
declaration of its options. Each field becomes ``--field-name`` (``dest`` is
the field's name), typed from its annotation:

* ``int``, ``float``, ``str`` (and any other class, called on the text), or
  ``X | None`` of one of them: one value, ``None`` by default (for a number,
  the value ``none`` is ``None`` too: ``--ema none`` switches averaging off);
* ``list[X]``: zero or more values (``nargs="*"``);
* ``Literal["a", "b"]``: one of those values;
* ``bool``: a switch, ``--field-name`` (``store_true``) when the default is
  False, ``--no-field-name`` (``store_false``) when it is True.

A field's ``metadata`` may hold ``help``, ``choices``, ``metavar``,
``flag`` (the option string, when it is not the derived one) and ``parse``
(a function from the text to the value, for a field of several kinds such as
``float | str | None``; its ``ValueError`` is shown after the flag). Help texts get
``(default: ...)`` appended unless they mention the default themselves.

Library code raises :class:`~vaekit.errors.VaekitError` naming parameters as
Python spells them (``param="latent_dim"``); :func:`translate_error` shows
them as the flag of the command that was run (``--latent-dim``).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

# Namespace attribute holding the dests of generated options typed on the command line.
GIVEN_ATTRIBUTE = "_options_given"


# ----------------------------------------------------------------------------
# Small shared options


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{text}'") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinities are refused, with the option named)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


def add_output_option(parser: argparse.ArgumentParser, default_name: str, what: str = "figure") -> None:
    """``-o/--output PATH``, defaulting to ``RUN/default_name`` (see :func:`output_path`)."""
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help=f"where to write the {what} (default: RUN/{default_name})")


def output_path(args: argparse.Namespace, default_name: str, option: str = "output",
                suffixes: Sequence[str] | None = None) -> Path:
    """``-o`` (or ``RUN/default_name``), refused at once if writing it could lose a file (see
    :func:`vaekit.guard.check_output`) or, with ``suffixes``, if the command writes another kind of file."""
    from vaekit.errors import ConfigError
    from vaekit.guard import check_output

    given = getattr(args, option, None)
    path = Path(given if given is not None else Path(args.run) / default_name)
    if suffixes is not None and path.suffix.lower() not in suffixes:
        kinds = " or ".join(suffixes)
        raise ConfigError(f"{option} {path}: this command writes {kinds} files; give a path ending in {kinds}",
                          param=option)
    return check_output(path, option)


def add_data_options(parser: argparse.ArgumentParser, *, split: bool = True, dataset: bool = True,
                     limit: str | None = None, limit_default: int | None = None, seed: bool = False) -> None:
    """The options that pick a run's images, declared once for every command that reads them.

    Parameters
    ----------
    parser
        The command's parser; it always gets ``--data-dir``.
    split, dataset
        Add ``--split`` (default ``test``; any split the dataset has) and ``--dataset`` (default: the run's).
    limit
        The help of ``--limit N`` (what the first N images are used for); ``None``: no ``--limit``.
    limit_default
        ``--limit``'s default (``None``: all images).
    seed
        Add ``--seed`` (default 0), the seed of the command's random draws.
    """
    if split:
        parser.add_argument("--split", default="test",
                            help="dataset split (default: test; also train, or any split the dataset has)")
    if dataset:
        parser.add_argument("--dataset", default=None, help="dataset name (default: the run's)")
    parser.add_argument("--data-dir", default=None, help="folder holding the dataset files (default: the run's)")
    if limit is not None:
        parser.add_argument("--limit", type=positive_int, default=limit_default, metavar="N", help=limit)
    if seed:
        add_seed_option(parser)


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    """``--seed`` (default 0): the seed of every random draw a command makes."""
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw (default: 0)")


def add_jobs_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--jobs N``: how many of a series' trainings run at once (see :mod:`vaekit.training.series`)."""
    parser.add_argument("--jobs", type=positive_int, default=1, metavar="N",
                        help=f"{what} trained at once, each in its own process with its share of the CPU cores "
                             "(or of the GPU); small models train more images per second in all this way "
                             "(benchmarks/parallel_runs.py measures it). Default 1: one after the other, here")


def add_runtime_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """``--device`` and ``--precision``, for every command that runs a model.

    They are :class:`~vaekit.training.config.TrainConfig`'s fields, so their
    help and choices are declared once, there.
    """
    from vaekit.training.config import TrainConfig

    return add_dataclass_options(parser, TrainConfig, include=("device", "precision"))


# ----------------------------------------------------------------------------
# Options from a dataclass


def add_dataclass_options(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    defaults: Any = None,
    exclude: Collection[str] = (),
    include: Collection[str] | None = None,
) -> dict[str, argparse.Action]:
    """Add one option per field of the dataclass ``cls`` to ``parser``.

    Parameters
    ----------
    parser
        An argument parser (or argument group).
    cls
        The config dataclass.
    defaults
        Option defaults other than the fields' own: an instance of ``cls``, or
        a mapping from field names to defaults (fields missing from it keep
        their own).
    exclude
        Fields that get no option.
    include
        When given, only these fields get an option (in the dataclass's order).

    Returns
    -------
    dict
        The added actions by field name (to hide one:
        ``actions["beta"].help = argparse.SUPPRESS``).
    """
    from vaekit.training.config import option_flag

    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = (set(exclude) | set(include or ())) - set(fields)
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    hints = _type_hints(cls)
    actions = {}
    for name, field in fields.items():
        if name in exclude or (include is not None and name not in include):
            continue
        default = _option_default(field, defaults)
        action = parser.add_argument(option_flag(field), dest=name,
                                     **_argument_kwargs(field, hints.get(name, field.type), default))
        action.__class__ = _recording_class(type(action))
        actions[name] = action
    parser.set_defaults(**{GIVEN_ATTRIBUTE: None})
    return actions


def config_from_args(cls: type, args: argparse.Namespace, **changes: Any) -> Any:
    """Build the dataclass ``cls`` from parsed options.

    Fields without an option in ``args`` keep their defaults; ``changes``
    override both (``config_from_args(TrainConfig, args, latent_dim=2)``).
    """
    values = {}
    for field in dataclasses.fields(cls):
        if field.init and hasattr(args, field.name):
            value = getattr(args, field.name)
            values[field.name] = list(value) if isinstance(value, list) else value  # never the parser's default list
    return cls(**{**values, **changes})


def explicit_overrides(cls: type, args: argparse.Namespace,
                       parser: argparse.ArgumentParser | None = None) -> dict[str, Any]:
    """The fields of ``cls`` whose option was given on the command line, with their values.

    Options generated by :func:`add_dataclass_options` record that they were
    typed, so ``--epochs 10`` counts even when 10 is the default. For a
    namespace not parsed by them, the fields that differ from their defaults
    (``parser``'s when given, else the dataclass's) are returned instead.
    """
    names = [f.name for f in dataclasses.fields(cls) if hasattr(args, f.name)]
    given = getattr(args, GIVEN_ATTRIBUTE, False)
    if given is not False:
        return {name: getattr(args, name) for name in names if name in (given or ())}
    defaults = {f.name: _option_default(f, None) for f in dataclasses.fields(cls)}
    if parser is not None:
        defaults.update({name: parser.get_default(name) for name in names})
    return {name: getattr(args, name) for name in names if getattr(args, name) != defaults[name]}


def _type_hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # annotations naming local classes: use the ones that are types
        return {f.name: f.type for f in dataclasses.fields(cls) if not isinstance(f.type, str)}


def _option_default(field: dataclasses.Field, defaults: Any) -> Any:
    if isinstance(defaults, Mapping) and field.name in defaults:
        return defaults[field.name]
    if defaults is not None and not isinstance(defaults, Mapping):
        return getattr(defaults, field.name)
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _argument_kwargs(field: dataclasses.Field, annotation: Any, default: Any) -> dict[str, Any]:
    from vaekit.training.config import option_flag

    meta = field.metadata
    kind = _without_none(annotation)
    if kind is bool:
        switch_off = option_flag(field).startswith("--no-")
        return {"action": "store_false" if switch_off else "store_true",
                "default": bool(default) if default is not dataclasses.MISSING else not switch_off,
                "help": _help(meta.get("help"), None)}
    kwargs: dict[str, Any] = {}
    if kind is list or typing.get_origin(kind) is list:
        (kind,) = typing.get_args(kind) or (str,)
        kwargs["nargs"] = "*"
    if typing.get_origin(kind) is typing.Literal:
        kwargs["choices"] = typing.get_args(kind)
        kind = type(kwargs["choices"][0])
    if "parse" in meta:  # a field of several kinds ("auto", "none" or a number) parses its own text
        kwargs["type"] = _reporting_value_errors(meta["parse"])
    elif not isinstance(kind, type):
        raise TypeError(f"field {field.name!r}: no command-line option for the type {annotation!r}")
    elif kind is not str:
        kwargs["type"] = _or_none(kind) if kind is not annotation and "nargs" not in kwargs else kind
    if "choices" in meta:
        kwargs["choices"] = tuple(meta["choices"])
    if "metavar" in meta:
        kwargs["metavar"] = meta["metavar"]
    elif "choices" not in kwargs:
        kwargs["metavar"] = option_flag(field).lstrip("-").replace("-", "_").upper()
    if default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    kwargs["help"] = _help(meta.get("help"), default)
    return kwargs


def _reporting_value_errors(parse: Any) -> Any:
    """``parse`` as an argparse type whose ``ValueError`` message is shown as it is, after the flag."""
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    return convert


def _or_none(kind: type) -> Any:
    """A converter for an ``X | None`` option: ``none`` (any case) is ``None``, anything else ``kind(text)``."""
    def convert(text: str) -> Any:
        return None if text.strip().lower() == "none" else kind(text)

    convert.__name__ = kind.__name__  # argparse names it in "invalid float value: 'x'"
    return convert


def _without_none(annotation: Any) -> Any:
    """``X`` for ``X | None`` (or ``Optional[X]``), else the annotation itself."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _help(text: str | None, default: Any) -> str | None:
    text = (text or "").replace("%", "%%")
    if default is None or default is dataclasses.MISSING or default == [] or "default" in text:
        return text or None
    shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else "%(default)s"
    return f"{text} (default: {shown})".strip()


class _RecordsGiven(argparse.Action):
    """Mixin for generated options: note in the namespace that the option was typed."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, GIVEN_ATTRIBUTE, None)
        if given is None:
            given = set()
            setattr(namespace, GIVEN_ATTRIBUTE, given)
        given.add(self.dest)
        super().__call__(parser, namespace, values, option_string)


@functools.cache
def _recording_class(action_class: type) -> type:
    return type(f"Recorded{action_class.__name__}", (_RecordsGiven, action_class), {})


# ----------------------------------------------------------------------------
# Errors


def flag_for(parser: argparse.ArgumentParser, dest: str) -> str | None:
    """The long option string of ``parser``'s option storing ``dest`` (``None`` when there is none)."""
    for action in parser._actions:
        if action.dest == dest and action.option_strings:
            long = [s for s in action.option_strings if s.startswith("--")]
            return (long or action.option_strings)[0]
    return None


def translate_error(error: BaseException, parser: argparse.ArgumentParser) -> str:
    """The message of ``error`` with its parameter shown as ``parser``'s flag for it.

    A :class:`~vaekit.errors.VaekitError` with ``param="latent_dim"`` and the
    message ``"latent_dim must be at least 1, got 0"`` becomes
    ``"--latent-dim must be at least 1, got 0"``. The name is replaced where
    the message starts with it, or right after a leading ``"xxx: "``; other
    messages, and parameters ``parser`` has no option for, are unchanged.
    """
    message = str(error)
    param = getattr(error, "param", None)
    flag = flag_for(parser, param) if param else None
    if flag is None:
        return message
    name = re.compile(rf"{re.escape(param)}(?![\w-])")
    if name.match(message):
        return flag + message[len(param):]
    head, colon, tail = message.partition(": ")
    if colon and name.match(tail):
        return head + colon + flag + tail[len(param):]
    return message


def command_parser(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The sub-parser of the command ``args`` were parsed for (``parser`` itself without sub-commands)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return command_parser(chosen, args)
    return parser
