"""Speed settings chosen by measurement on the machine in hand.

CPUs differ: bf16 matrix products are about 3x faster than float32 on an
Intel CPU with AMX, about 1.5x faster on AMD Zen 4, and slower on an Intel
CPU without either. No rule about CPU features predicts this well, so
``precision="auto"`` and ``compile="auto"`` time a few real training steps of
each candidate (on a copy of the model, with random images of the model's
shape and the run's per-process batch) and keep the fastest.

The result is cached in ``<vaekit cache>/speed.json``, keyed by the CPU model
(or GPU name), the torch version, the architecture and the batch, so the
measurement happens once per machine and model. A run records what was
chosen, the images/s of each candidate and whether it came from the cache in
``config.json`` (``"resolved"."speed"``).

``torch.compile`` costs tens of seconds before the first step, so it is only
measured for runs long enough to earn that back, and chosen only when its
measured gain over the whole run exceeds its measured compile time. Runs too
short to be worth measuring (tests, quick looks) take the rule: float32 on a
CPU, bf16 (else fp16) on a GPU, no compile.
"""

from __future__ import annotations

import copy
import hashlib
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch

from vaekit.data.cache import cache_root
from vaekit.errors import ConfigError, VaekitError
from vaekit.files import read_json, write_json
from vaekit.models.vae import to_channels_last
from vaekit.runtime import resolve_precision
from vaekit.training.config import TrainConfig
from vaekit.training.step import train_step

#: Timed steps per candidate and round (best of ROUNDS rounds), after WARMUP_STEPS untimed ones.
MEASURE_STEPS = 3
ROUNDS = 3
WARMUP_STEPS = 2
#: Measure only when the run has this many times more steps than the measurement takes.
MIN_RUN_TO_MEASURE = 20
#: Measure compile only when the eager run is projected to take this long (seconds).
MIN_SECONDS_TO_COMPILE = 900.0
CACHE_FILE = "speed.json"


@dataclass
class SpeedChoice:
    """What :func:`choose_speed` decided, as recorded in a run's config.json.

    Attributes
    ----------
    precision, compile, fused
        The settings training uses (``fused``: the fused Adam kernel).
    how
        ``"given"`` (both set explicitly), ``"measured"``, ``"cached"`` (an
        earlier measurement on this machine) or ``"rule"`` (run too short to
        measure).
    images_per_s
        Measured training images/s of each candidate (``"fp32"``,
        ``"fp32+fused"``, ``"bf16+on"``, ...), per process.
    compile_seconds
        Measured time to compile, when compile was a candidate.
    key
        The cache key: machine, torch version, model and batch.
    """

    precision: str
    compile: str
    fused: bool
    how: str
    images_per_s: dict[str, float] = field(default_factory=dict)
    compile_seconds: float | None = None
    key: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# CPUs that share a model name ("Intel(R) Xeon(R) Processor") differ in the instructions that decide
# whether bf16 pays off, so the name a speed measurement is kept under, and a report states, includes them.
BF16_CPU_FLAGS = {"amx_bf16": "AMX", "avx512_bf16": "AVX512-BF16"}


def machine_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name with its bf16 instructions (AMX, AVX512-BF16) and threads.

    Parameters
    ----------
    device
        The device runs train on.

    Returns
    -------
    str
        e.g. ``"Intel(R) Xeon(R) Processor (AMX, AVX512-BF16) x2 threads"``.
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        cpuinfo = ""
    return f"{cpu_name(cpuinfo)} x{torch.get_num_threads()} threads"


def cpu_name(cpuinfo: str) -> str:
    """The first CPU's model name in ``/proc/cpuinfo``'s text, with its bf16 instructions in brackets."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and not model:
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    model = model or platform.processor() or platform.machine()
    features = [name for flag, name in BF16_CPU_FLAGS.items() if flag in flags]
    return model + (f" ({', '.join(features)})" if features else "")


def speed_key(model: torch.nn.Module, device: torch.device, batch_size: int, channels_last: bool) -> str:
    """What a measurement depends on: machine, torch, the model's layers and shapes, the batch."""
    shapes = ";".join(f"{name}:{tuple(p.shape)}" for name, p in model.named_parameters())
    model_id = f"{type(model).__name__}-{hashlib.sha256(shapes.encode()).hexdigest()[:12]}"
    return (f"{machine_name(device)}|torch {torch.__version__}|{device.type}|{model_id}|batch {batch_size}"
            f"|{'channels_last' if channels_last else 'nchw'}")


class Candidate(NamedTuple):
    """One combination of settings to time."""

    precision: str
    compile: str = "off"
    fused: bool = False

    @property
    def name(self) -> str:
        return "+".join([self.precision] + ([self.compile] if self.compile != "off" else [])
                        + (["fused"] if self.fused else []))


def rule_choice(precision: str, compile_mode: str, fused: str, device: torch.device) -> Candidate:
    """The settings without measuring: bf16/fp16 and fused Adam on GPUs, float32 on CPUs, no compile."""
    precision = resolve_precision(precision, device)
    return Candidate(precision, "off" if compile_mode == "auto" else compile_mode,
                     device.type == "cuda" if fused == "auto" else fused == "on")


def precision_options(precision: str, device: torch.device) -> list[str]:
    """The precisions worth timing on ``device`` (just ``precision`` unless it is ``"auto"``)."""
    if precision != "auto":
        return [precision]
    if device.type == "cuda":
        return ["bf16" if torch.cuda.is_bf16_supported() else "fp16", "fp32"]
    return ["fp32", "bf16"] if device.type == "cpu" else ["fp32"]


def compile_options(compile_mode: str, device: torch.device) -> list[str]:
    """The compiled modes worth timing (empty when compile is off)."""
    if compile_mode != "auto":
        return [] if compile_mode == "off" else [compile_mode]
    return ["on"] + (["cudagraphs"] if device.type == "cuda" else [])


def fused_options(fused: str, device: torch.device) -> list[bool]:
    """Whether to time Adam unfused, fused or both (the fused kernel exists for CPUs and GPUs)."""
    if fused != "auto":
        return [fused == "on"]
    return [False, True] if device.type in ("cpu", "cuda") else [False]


def check_speed_settings(precision: str, compile_mode: str, device: torch.device) -> None:
    """Refuse, in one line naming the setting, what ``device`` cannot do (fp16 on a CPU, CUDA graphs off a GPU)."""
    resolve_precision(precision, device)
    if compile_mode == "cudagraphs" and device.type != "cuda":
        raise ConfigError(f"compile cudagraphs needs a CUDA GPU, not {device.type}; use on or off", param="compile")


def compile_model(model: torch.nn.Module, mode: str) -> torch.nn.Module:
    """``model`` compiled as ``mode`` says (``"off"``, ``"on"``, ``"cudagraphs"``: CUDA graphs too)."""
    if mode == "off":
        return model
    return torch.compile(model, mode="reduce-overhead" if mode == "cudagraphs" else None)


def make_optimizer(model: torch.nn.Module, lr: float, fused: bool) -> torch.optim.Optimizer:
    """Adam, with the fused kernel (one kernel for all parameters) when ``fused``."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True if fused else None)


def measure_rates(model: torch.nn.Module, device: torch.device, batch_size: int,
                  runs: list[Candidate], channels_last: bool = True, rounds: int = ROUNDS,
                  steps: int = MEASURE_STEPS, warmup: int = WARMUP_STEPS) -> tuple[dict[str, float], float]:
    """Training images/s of each :class:`Candidate` (by name), and the longest compile seen.

    Candidates take turns, ``steps`` timed steps each per round, and each keeps
    its best round, so a burst of load from another process does not decide
    the choice. Runs on copies of ``model`` with random images and leaves every
    RNG as it found it.
    """
    rates: dict[str, float] = {}
    compile_seconds = 0.0
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(0)
        steppers = {}
        for run in runs:
            step = _trial_step(model, device, batch_size, run, channels_last)
            start = time.perf_counter()
            for _ in range(warmup):
                step()
            _synchronize(device)
            if run.compile != "off":
                compile_seconds = max(compile_seconds, time.perf_counter() - start)
            steppers[run.name] = step
        for _ in range(rounds):
            for name, step in steppers.items():
                start = time.perf_counter()
                for _ in range(steps):
                    step()
                _synchronize(device)
                rates[name] = max(rates.get(name, 0.0), batch_size * steps / (time.perf_counter() - start))
    return rates, compile_seconds


def _copy(model: torch.nn.Module, device: torch.device, channels_last: bool) -> torch.nn.Module:
    trial = copy.deepcopy(model).to(device).train()
    return to_channels_last(trial) if channels_last else trial


def _trial_step(model: torch.nn.Module, device: torch.device, batch_size: int, run: Candidate,
                channels_last: bool):
    trial = _copy(model, device, channels_last)
    step_model = compile_model(trial, run.compile)
    optimizer = make_optimizer(trial, 1e-4, run.fused)
    precision = run.precision
    images = torch.rand((batch_size, *model.image_shape), device=device)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    scaler, settings = torch.amp.GradScaler(device.type, enabled=False), TrainConfig()

    def step() -> None:
        train_step(step_model, optimizer, scaler, images, 1.0, settings, device, precision)

    return step


def choose_speed(model: torch.nn.Module, device: torch.device, precision: str, compile_mode: str,
                 batch_size: int, total_steps: int, channels_last: bool = True, fused: str = "auto",
                 cache_dir: str | Path | None = None, measure: bool | None = None) -> SpeedChoice:
    """Resolve ``precision``, ``compile_mode`` and ``fused`` (each maybe ``"auto"``) for training ``model``.

    Eager candidates are timed first, one per precision; then, with the
    fastest precision, the fused optimizer; then, for runs long enough to earn
    back the compile time, the compiled modes. The candidate that finishes the
    run soonest wins, compile time included.

    Parameters
    ----------
    model
        The model to train (it is copied, never changed).
    device
        Where training runs.
    precision, compile_mode
        The settings asked for; only ``"auto"`` ones are chosen here.
    batch_size
        Images per step in this process.
    total_steps
        Steps the run will take; short runs are not worth measuring.
    channels_last
        The memory layout training uses.
    fused
        ``"auto"``, ``"on"`` or ``"off"``: the fused Adam kernel.
    cache_dir
        Where ``speed.json`` lives (default: the vaekit cache).
    measure
        Force (True) or forbid (False) a measurement; default: by run length.

    Returns
    -------
    SpeedChoice
    """
    check_speed_settings(precision, compile_mode, device)
    if "auto" not in (precision, compile_mode, fused):
        return SpeedChoice(precision, compile_mode, fused == "on", "given")
    key = speed_key(model, device, batch_size, channels_last)
    cache_path = cache_root(cache_dir) / CACHE_FILE
    cached = _cached_entry(_read_cache(cache_path), key)
    rates: dict[str, float] = dict(cached.get("images_per_s", {}))
    fuses = fused_options(fused, device)
    eager = [Candidate(p, "off", fuses[0]) for p in precision_options(precision, device)]
    if measure is None:
        measure = total_steps >= MIN_RUN_TO_MEASURE * (MEASURE_STEPS * ROUNDS + WARMUP_STEPS) * len(eager) or \
            all(c.name in rates for c in eager)
    if not measure:
        return SpeedChoice(*rule_choice(precision, compile_mode, fused, device), "rule", key=key)
    compile_seconds = cached.get("compile_seconds")
    fresh = _measure(model, device, batch_size, channels_last, eager, rates)
    best = max(eager, key=lambda c: rates[c.name])
    tried = eager + [Candidate(best.precision, "off", f) for f in fuses[1:]]
    fresh = _measure(model, device, batch_size, channels_last, tried, rates) or fresh
    best = max(tried, key=lambda c: rates[c.name])
    projected = total_steps * batch_size / rates[best.name]
    if compile_mode != "auto" or projected >= MIN_SECONDS_TO_COMPILE:
        compiled = [Candidate(best.precision, mode, best.fused) for mode in compile_options(compile_mode, device)]
        if compile_mode not in ("auto", "off"):
            tried = [c for c in tried if c.compile == compile_mode]  # compile given: only compiled candidates
        if any(c.name not in rates for c in compiled):
            # The best eager one again, so compiled ones are compared under the same conditions.
            measured, seconds = measure_rates(model, device, batch_size, compiled + [best], channels_last)
            rates.update(measured)
            compile_seconds = max(float(compile_seconds or 0.0), seconds) if seconds else compile_seconds
            fresh = True
        tried += compiled
    chosen = _fastest(tried, rates, total_steps * batch_size, compile_seconds, compile_mode)
    if fresh:
        _write_cache(cache_path, key, {"images_per_s": rates, "compile_seconds": compile_seconds})
    return SpeedChoice(*chosen, "measured" if fresh else "cached",
                       {k: round(v, 1) for k, v in rates.items()}, compile_seconds, key)


def _measure(model: torch.nn.Module, device: torch.device, batch_size: int, channels_last: bool,
             runs: list[Candidate], rates: dict[str, float]) -> bool:
    """Time the candidates of ``runs`` that ``rates`` lacks, into ``rates``; True if any was."""
    missing = [c for c in runs if c.name not in rates]
    if missing:
        rates.update(measure_rates(model, device, batch_size, missing, channels_last)[0])
    return bool(missing)


def choose_speed_on_all_ranks(*args: Any, **kwargs: Any) -> SpeedChoice:
    """:func:`choose_speed` on rank 0 alone, its choice sent to every rank (all must train alike)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return choose_speed(*args, **kwargs)
    box = [choose_speed(*args, **kwargs).to_dict() if dist.get_rank() == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return SpeedChoice(**box[0])


def _fastest(tried: list[Candidate], rates: dict[str, float], images: int, compile_seconds: float | None,
             compile_mode: str) -> Candidate:
    """The candidate that finishes the run soonest, counting compile time when compile is chosen by us."""
    def total_seconds(candidate: Candidate) -> float:
        seconds = images / rates[candidate.name]
        if candidate.compile != "off" and compile_mode == "auto":
            seconds += compile_seconds or 0.0
        return seconds

    return min(tried, key=total_seconds)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = read_json(path)
    except (OSError, VaekitError):  # absent or damaged: measure again
        return {}
    return data if isinstance(data, dict) else {}


def _cached_entry(cache: dict[str, Any], key: str) -> dict[str, Any]:
    """The entry for ``key`` if it holds positive finite rates (and compile seconds); else none: measure again."""
    entry = cache.get(key)
    if not isinstance(entry, dict):
        return {}
    rates, seconds = entry.get("images_per_s", {}), entry.get("compile_seconds")
    if not isinstance(rates, dict) or not all(_is_positive_number(rate) for rate in rates.values()):
        return {}
    if seconds is not None and not (_is_positive_number(seconds) or seconds == 0):
        return {}
    return entry


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _write_cache(path: Path, key: str, entry: dict[str, Any]) -> None:
    """Add one entry; a cache that cannot be written only costs a measurement next time."""
    try:
        data = _read_cache(path)
        data[key] = entry
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, data)
    except OSError:
        pass
