"""What defines a training run: :class:`TrainConfig`, saved in ``config.json``.

Each field is also a command-line option: its ``metadata`` holds the help
text and, where they apply, the ``choices``, the ``flag`` (when it is not
the field's name with dashes, ``--latent-dim``) and the ``metavar``. The CLI
generates the options of ``vaekit train`` from these
(:func:`vaekit.cli.options.add_dataclass_options`), so a new field needs no
other code to become an option.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vaekit.errors import ConfigError
from vaekit.models.init import INITS, resolve_init
from vaekit.models.losses import RECONSTRUCTIONS
from vaekit.models.pretrained import SECTION_CHECKS
from vaekit.models.spec import MAX_LATENT_DIM
from vaekit.runtime import COMPILE_MODES, PRECISIONS
from vaekit.training.batches import PLACEMENTS
from vaekit.training.schedule import LR_SCHEDULES

#: The gradient-norm limit ``grad_clip="auto"`` stands for, per architecture (others: no clipping).
#: On fashion28 the norm's median is about 400 and its 90th percentile 630-700 over a trained run, so
#: 1000 cuts only the spikes that made some seeds jump by 1.5-3 nats (docs/training.md). The norm of
#: a per-image summed loss grows with the image, so no other architecture shares this number.
AUTO_GRAD_CLIPS: dict[str, float] = {"fashion28": 1000.0}


def resolve_grad_clip(grad_clip: float | str | None, arch: str) -> float | None:
    """The gradient-norm limit for ``arch``: ``"auto"`` resolved via :data:`AUTO_GRAD_CLIPS`, else as given."""
    if grad_clip == "auto":
        return AUTO_GRAD_CLIPS.get(arch)
    return None if grad_clip is None else float(grad_clip)


def parse_grad_clip(text: str) -> float | str | None:
    """``--grad-clip`` text: ``auto``, ``none`` (no clipping) or a number (checked by :meth:`TrainConfig.validate`)."""
    word = text.strip().lower()
    if word in ("auto", "none"):
        return None if word == "none" else "auto"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"expected auto, none or a number, got '{text}'") from None


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in ``config.json``).

    The defaults train the seed Fashion-MNIST model reliably; see
    ``docs/training.md`` for why they differ from the Keras original.
    """

    dataset: str = field(default="fashion-mnist", metadata={
        "help": "fashion-mnist, shapes, celeba, or folder:PATH", "metavar": "NAME"})
    arch: str = field(default="fashion28", metadata={"help": "fashion28 or nn3-128", "metavar": "NAME"})
    latent_dim: int | None = field(default=None, metadata={
        "help": "latent size (default: the architecture's, 2 for fashion28)", "metavar": "N"})
    beta: float = field(default=1.0, metadata={"help": "weight of the KL term (beta-VAE)"})
    epochs: int = field(default=10, metadata={"help": "training epochs", "metavar": "N"})
    batch_size: int = field(default=64, metadata={
        "help": "images per optimiser step: the global batch, shared by all processes under torchrun",
        "metavar": "N"})
    lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    lr_schedule: str = field(default="constant", metadata={
        "help": "learning-rate schedule: constant, or cosine (from lr down to 0 at the last step of --epochs)",
        "choices": LR_SCHEDULES})
    seed: int = field(default=0, metadata={"help": "random seed (initial weights, shuffling, sampling)"})
    kl_warmup_epochs: float = field(default=0.0, metadata={
        "help": "ramp beta linearly from 0 over this many epochs", "flag": "--kl-warmup", "metavar": "EPOCHS"})
    recon: str = field(default="bernoulli", metadata={
        "help": "reconstruction likelihood", "choices": RECONSTRUCTIONS})
    gaussian_sigma: float = field(default=0.1, metadata={
        "help": "pixel noise of the gaussian likelihood (--recon gaussian)", "metavar": "SIGMA"})
    init: str = field(default="auto", metadata={
        "help": "weight init: auto (the default: pytorch for fashion28, vaekit for every other architecture), "
                "vaekit (He-uniform, small positive bias), keras (glorot, zero bias: the original; may collapse), "
                "pytorch (PyTorch's own)",
        "choices": INITS})
    grad_clip: float | str | None = field(default="auto", metadata={
        "help": "clip the gradient norm to this value: auto (the default: 1000 for fashion28, where it cuts only "
                "the rare spikes, no clipping for every other architecture), a number, or none",
        "metavar": "NORM", "parse": parse_grad_clip})
    ema_decay: float | None = field(default=0.999, metadata={
        "help": "keep an exponential moving average of the weights with this decay per step (the default 0.999 "
                "averages about the last 1,000 steps); the run evaluates and saves the average; none turns it off",
        "flag": "--ema", "metavar": "DECAY"})
    exclude_classes: list[str] = field(default_factory=list, metadata={
        "help": "leave these classes out of training (anomaly-detection protocol)", "metavar": "CLASS"})
    train_limit: int | None = field(default=None, metadata={
        "help": "train on the first N images only (quick runs, tests)", "metavar": "N"})
    test_limit: int | None = field(default=None, metadata={
        "help": "evaluate on the first N test images only", "metavar": "N"})
    data_dir: str | None = field(default=None, metadata={"help": "folder holding the dataset files", "metavar": "DIR"})
    device: str = field(default="auto", metadata={"help": "auto (default), cpu, cuda, cuda:1, mps"})
    precision: str = field(default="auto", metadata={
        "help": "auto (the default) picks whichever of fp32 and bf16 (fp16 on GPUs without bf16) trains "
                "faster in a short measurement on this machine",
        "choices": PRECISIONS})
    channels_last: bool = field(default=True, metadata={
        "help": "keep images and weights in the NCHW memory layout instead of channels-last"})
    compile: str = field(default="auto", metadata={
        "help": "torch.compile: auto (the default) compiles where a measurement on this machine says it pays off; "
                "on; off; cudagraphs (compile with CUDA graphs, GPUs only)", "choices": COMPILE_MODES})
    fused_optimizer: str = field(default="auto", metadata={
        "help": "the fused Adam kernel: auto (the default) uses it where a measurement on this machine says it is "
                "faster; on; off", "choices": ("auto", "on", "off")})
    data_placement: str = field(default="auto", metadata={
        "help": "auto (the default): keep the training images on the device when they fit the memory budget, "
                "else stream them from disk; resident; stream", "choices": PLACEMENTS})
    memory_budget_gb: float | None = field(default=None, metadata={
        "help": "memory the resident training images may take, in GiB (default: half the free GPU memory, "
                "or half the available RAM on a CPU)", "metavar": "GIB"})
    log: str = field(default="none", metadata={
        "help": "experiment tracking: none (the default) or tensorboard (writes RUN/tensorboard; needs the "
                "tensorboard extra); several trackers are joined by commas", "metavar": "TRACKER"})
    eval_batch_size: int = field(default=256, metadata={
        "help": "images per evaluation batch for 28x28 images, fewer for larger ones (bounds evaluation memory)",
        "metavar": "N"})

    def check_types(self) -> None:
        """Raise :class:`ConfigError` naming the first field whose value has the wrong type."""
        for f in dataclasses.fields(self):
            value, kind = getattr(self, f.name), _KINDS[str(f.type)]
            if not _has_kind(value, kind):
                raise ConfigError(f"{f.name} must be {_KIND_NAMES[kind]}, got {type(value).__name__} {value!r}",
                                  param=f.name)

    def validate(self) -> None:
        """Raise :class:`ConfigError` for impossible settings.

        The error's ``param`` is the offending field, named in the message as
        spelled here (the CLI shows its flag instead). Types are checked
        first; every float must be finite; sizes that imply absurd work or
        memory are refused.
        """
        self.check_types()
        finite = {name: getattr(self, name) is None or isinstance(getattr(self, name), str)  # "auto": checked below
                  or math.isfinite(getattr(self, name))
                  for name in ("lr", "beta", "kl_warmup_epochs", "gaussian_sigma", "grad_clip", "memory_budget_gb",
                                "ema_decay")}
        for name, ok in finite.items():
            if not ok:
                raise ConfigError(f"{name} must be a finite number, got {getattr(self, name)}", param=name)
        checks = [
            ("dataset", bool(self.dataset.strip()), "must not be empty"),
            ("arch", bool(self.arch.strip()), "must not be empty"),
            ("epochs", self.epochs >= 1, f"must be at least 1, got {self.epochs}"),
            ("epochs", self.epochs <= MAX_EPOCHS, f"must be at most {MAX_EPOCHS}, got {self.epochs}"),
            ("batch_size", self.batch_size >= 1, f"must be at least 1, got {self.batch_size}"),
            ("batch_size", self.batch_size <= MAX_BATCH, f"must be at most {MAX_BATCH}, got {self.batch_size}"),
            ("lr", self.lr > 0, f"must be a positive number, got {self.lr}"),
            ("beta", self.beta >= 0, f"must be zero or positive, got {self.beta}"),
            ("kl_warmup_epochs", self.kl_warmup_epochs >= 0, f"must be zero or positive, got {self.kl_warmup_epochs}"),
            ("latent_dim", self.latent_dim is None or self.latent_dim >= 1, f"must be at least 1, got {self.latent_dim}"),
            ("latent_dim", self.latent_dim is None or self.latent_dim <= MAX_LATENT_DIM,
             f"must be at most {MAX_LATENT_DIM}, got {self.latent_dim}"),
            ("recon", self.recon in RECONSTRUCTIONS, f"must be one of {', '.join(RECONSTRUCTIONS)}, got '{self.recon}'"),
            ("gaussian_sigma", self.gaussian_sigma > 0, f"must be positive, got {self.gaussian_sigma}"),
            ("precision", self.precision in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}, got '{self.precision}'"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES,
             f"must be one of {', '.join(LR_SCHEDULES)}, got '{self.lr_schedule}'"),
            ("init", self.init in INITS, f"must be one of {', '.join(INITS)}, got '{self.init}'"),
            ("grad_clip", self.grad_clip in (None, "auto") or (not isinstance(self.grad_clip, str) and self.grad_clip > 0),
             f"must be auto, none or a positive number, got {self.grad_clip!r}"),
            ("ema_decay", self.ema_decay is None or 0 < self.ema_decay < 1,
             f"must be between 0 and 1 (exclusive), got {self.ema_decay}"),
            ("exclude_classes", all(c.strip() for c in self.exclude_classes), "must not contain blank class names"),
            ("train_limit", self.train_limit is None or self.train_limit >= 1, f"must be at least 1, got {self.train_limit}"),
            ("test_limit", self.test_limit is None or self.test_limit >= 1, f"must be at least 1, got {self.test_limit}"),
            ("data_dir", self.data_dir is None or "\0" not in self.data_dir, "must not contain a NUL character"),
            ("device", bool(self.device) and self.device.isprintable() and not any(c.isspace() for c in self.device),
             f"must be a device name without spaces or control characters, got {self.device!r}"),
            ("compile", self.compile in COMPILE_MODES,
             f"must be one of {', '.join(COMPILE_MODES)}, got '{self.compile}'"),
            ("fused_optimizer", self.fused_optimizer in ("auto", "on", "off"),
             f"must be one of auto, on, off, got '{self.fused_optimizer}'"),
            ("data_placement", self.data_placement in PLACEMENTS,
             f"must be one of {', '.join(PLACEMENTS)}, got '{self.data_placement}'"),
            ("memory_budget_gb", self.memory_budget_gb is None or self.memory_budget_gb > 0,
             f"must be positive, got {self.memory_budget_gb}"),
            ("log", _trackers_ok(self.log), f"must be none or one or more of {', '.join(TRACKERS)} "
                                            f"(joined by commas), got '{self.log}'"),
            ("eval_batch_size", self.eval_batch_size >= 1, f"must be at least 1, got {self.eval_batch_size}"),
            ("eval_batch_size", self.eval_batch_size <= MAX_BATCH,
             f"must be at most {MAX_BATCH}, got {self.eval_batch_size}"),
        ]
        for param, ok, problem in checks:
            if not ok:
                raise ConfigError(f"{param} {problem}", param=param)

    @property
    def trackers(self) -> tuple[str, ...]:
        """The experiment trackers ``log`` names (none: an empty tuple), e.g. ``("tensorboard",)``."""
        return parse_trackers(self.log)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON values (``config.json``'s ``train`` section; :meth:`from_dict` reads it)."""
        return dataclasses.asdict(self)

    @property
    def effective_init(self) -> str:
        """The initialisation the run uses: ``init`` with ``"auto"`` resolved for ``arch``."""
        return resolve_init(self.init, self.arch)

    @property
    def effective_grad_clip(self) -> float | None:
        """The gradient-norm limit the run uses: ``grad_clip`` with ``"auto"`` resolved for ``arch``."""
        return resolve_grad_clip(self.grad_clip, self.arch)

    def comparable(self) -> dict[str, Any]:
        """:meth:`to_dict` with ``init`` and ``grad_clip`` resolved, so ``auto`` equals what it stands for.

        Use it wherever two configs are compared or a recipe is shown: a run
        trained with ``init="pytorch"`` before ``auto`` existed trained exactly
        as ``auto`` does on ``fashion28`` today.
        """
        return {**self.to_dict(), "init": self.effective_init, "grad_clip": self.effective_grad_clip}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Settings from ``config["train"]``; unknown keys are ignored, wrong types refused (one field named).

        A field missing from ``data`` takes its default, except the fields in
        :data:`SETTINGS_BEFORE_THEY_EXISTED`: a run saved before one of them
        existed trained the way vaekit did then, whatever the default is now.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"train must be an object of settings, got {type(data).__name__}", param="train")
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
        if isinstance(data.get("compile"), bool):  # runs saved before compile had modes
            data["compile"] = "on" if data["compile"] else "off"
        # Fields added since: a run saved without them trained without them, whatever today's default is.
        data = {**SETTINGS_BEFORE_THEY_EXISTED, **data}
        config = cls(**data)
        config.check_types()
        return config


#: The settings a published recipe states; vaekit's defaults for these have changed over time.
RECIPE_FIELDS = ("batch_size", "lr", "lr_schedule", "init", "ema_decay", "grad_clip")


def settings_since(recipe: dict[str, Any], arch: str, fields: Sequence[str] = RECIPE_FIELDS) -> dict[str, Any]:
    """The settings among ``fields`` whose default has changed since ``recipe`` was trained, as it trained them.

    Parameters
    ----------
    recipe
        Saved training settings (a run's or a published result's), ``init``
        as trained.
    arch
        The architecture they trained, which ``init="auto"`` depends on.
    fields
        The settings compared (default :data:`RECIPE_FIELDS`).

    Returns
    -------
    dict
        ``{"batch_size": 128, "init": "vaekit", "grad_clip": None,
        "ema_decay": None}`` for a recipe of the old defaults on ``fashion28``;
        empty when today's defaults are the recipe.
    """
    # A setting the recipe lacks predates it: from_dict reads it as the run trained then.
    trained = TrainConfig.from_dict({**recipe, "arch": arch}).comparable()
    today = TrainConfig(arch=arch).comparable()
    return {f.name: trained[f.name] for f in dataclasses.fields(TrainConfig)
            if f.name in fields and trained[f.name] != today[f.name]}


def ema_and_clip_text(recipe: dict[str, Any]) -> str:
    """How a recipe averages weights and clips gradients, in the words every results page uses.

    Parameters
    ----------
    recipe
        Saved training settings with ``grad_clip`` resolved (as
        :meth:`TrainConfig.comparable` gives it); a key the recipe lacks
        predates the setting, which was then off.

    Returns
    -------
    str
        ``weights averaged (EMA 0.999), gradient norm clipped at 1000``, or
        ``no weight averaging, no gradient clipping``.
    """
    decay, clip = recipe.get("ema_decay"), recipe.get("grad_clip")
    averaging = f"weights averaged (EMA {decay:g})" if decay else "no weight averaging"
    return averaging + (f", gradient norm clipped at {clip:g}" if clip else ", no gradient clipping")


def options_since(recipe: dict[str, Any], arch: str) -> list[str]:
    """Command-line options that train ``recipe`` again under today's defaults.

    ``recipe`` and ``arch`` are as for :func:`settings_since`, whose settings
    this spells as flags: ``["--batch-size", "128", "--init", "vaekit",
    "--grad-clip", "none", "--ema", "none"]`` for a recipe of the old
    defaults on ``fashion28``; empty when today's defaults are the recipe.
    """
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    words: list[str] = []
    for name, value in settings_since(recipe, arch).items():
        words += [option_flag(fields[name]), "none" if value is None else str(value)]
    return words


def option_flag(field: dataclasses.Field) -> str:
    """The command-line option of a config dataclass field: ``metadata["flag"]``, else derived from its name.

    The one spelling of flags: :func:`vaekit.cli.options.add_dataclass_options` declares options with it,
    and recorded commands spell settings with it. A field whose default is ``True`` is switched off by
    ``--no-NAME``.
    """
    if "flag" in field.metadata:
        return field.metadata["flag"]
    name = field.name.replace("_", "-")
    return f"--no-{name}" if field.default is True else f"--{name}"


#: What a run saved before a field existed trained with (the behaviour of the time, not today's default).
#: (``grad_clip`` was always saved by runs; a published recipe without it predates ``auto``, so trained unclipped.)
SETTINGS_BEFORE_THEY_EXISTED: dict[str, Any] = {"lr_schedule": "constant", "ema_decay": None, "grad_clip": None}

#: Settings a saved run may change when it is resumed (``train(resume=True)``, a family's or protocol's members).
CHANGEABLE_ON_RESUME = ("epochs", "device", "data_dir", "log")

#: Most epochs, and most images per batch (training or evaluation), a run may ask for.
MAX_EPOCHS = 10**6
MAX_BATCH = 2**20

#: The experiment trackers ``log`` may name (see :func:`vaekit.training.callbacks.tracker_callbacks`).
TRACKERS = ("tensorboard",)


def parse_trackers(log: str) -> tuple[str, ...]:
    """``"tensorboard"`` -> ``("tensorboard",)``; ``"none"`` or ``""`` -> ``()`` (names not checked)."""
    names = [name.strip().lower() for name in log.split(",")]
    return tuple(dict.fromkeys(name for name in names if name and name != "none"))


def _trackers_ok(log: str) -> bool:
    names = [name.strip().lower() for name in log.split(",")]
    if names == ["none"]:
        return True
    return all(name in TRACKERS for name in names)


_KINDS = {"str": "str", "str | None": "str?", "int": "int", "int | None": "int?", "float": "float",
          "float | None": "float?", "float | str | None": "float|str?", "bool": "bool", "list[str]": "list[str]"}
_KIND_NAMES = {"str": "a string", "str?": "a string or null", "int": "an integer", "int?": "an integer or null",
               "float": "a number", "float?": "a number or null", "float|str?": "a number, a string or null",
               "bool": "true or false",
               "list[str]": "a list of strings"}


def _has_kind(value: Any, kind: str) -> bool:
    if kind.endswith("?"):
        if value is None:
            return True
        kind = kind[:-1]
    if kind == "float|str":
        return _has_kind(value, "float") or isinstance(value, str)
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _check_saved_settings(section: Any) -> None:
    """Validate the ``train`` section of a run's config.json (registered with the model files' reader)."""
    TrainConfig.from_dict(section).validate()


SECTION_CHECKS["train"] = _check_saved_settings
