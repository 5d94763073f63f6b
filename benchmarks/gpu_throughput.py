"""GPU training throughput of vaekit, MFU, and the issue's wall-clock targets.

Meant for an H100/H200 (``--device cuda``, the default); ``--device cpu
--smoke`` runs a tiny version of every section (the test suite does, to keep
the script working on machines without a GPU).

Sections
--------
a. **throughput**: steady-state training images/s of ``fashion28`` and
   ``nn3-128`` across batch sizes, with vaekit's defaults (precision and
   compile ``auto``: what the tuner picks for a run of the issue's length,
   recorded as ``speed``) and with float32 / no compile for contrast. Each
   measurement: warm-up steps (compile included), then ``--repeats`` timed
   rounds of ``--steps`` steps, each ended by a synchronize; the median and
   best round are reported. MFU = img/s x training FLOPs per image (see
   ``benchmarks/flops.py``) / peak: the datasheet dense bf16 peak on a known
   GPU, else the measured matmul ceiling (always reported beside it).
b. **celeba_epoch**: one epoch of ``nn3-128`` through :func:`vaekit.train` on a
   synthetic uint8 cache of CelebA's size (162,770 x 3 x 128 x 128, 8.0 GB,
   an ``np.memmap`` file under ``--scratch`` filled with a repeating pattern),
   wrapped zero-copy as an :class:`~vaekit.data.ImageDataset`, once with
   ``data_placement="resident"`` and once with ``"stream"``. Reported: the
   epoch's training seconds (the trainer's own clock, data path included),
   img/s, and the whole ``train()`` call's wall-clock (setup, tuner, copy to
   the GPU, evaluation and figures included).
c. **seed_run**: the 30-epoch ``fashion28`` seed run with its per-epoch
   evaluation, default settings; wall-clock seconds of ``train()`` and the
   final test ELBO.
d. **targets** from the issue, with pass/fail: nn3-128 >= 30,000 img/s (best
   median of the vaekit-default rows); CelebA epoch <= 5.5 s (epoch seconds);
   30-epoch seed run <= 60 s (wall-clock).

Usage::

    python benchmarks/gpu_throughput.py --out gpu.json --scratch /tmp/vaekit-bench \\
        --fashion-dir ../shared/data/fashion-mnist
    python benchmarks/gpu_throughput.py --sections throughput --arch nn3-128
    python benchmarks/gpu_throughput.py --device cpu --smoke --out smoke.json   # what the tests run
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import torch
from flops import cpu_name, measured_matmul_flops, peak_flops, training_flops_per_image

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("throughput", "celeba_epoch", "seed_run")
BATCHES = {"fashion28": [256, 1024, 4096, 16384], "nn3-128": [64, 256, 1024]}
#: Images of the run the tuner is told about, per architecture (it decides whether to measure and to compile):
#: the 30-epoch Fashion-MNIST seed run, one CelebA epoch.
TUNER_RUN_IMAGES = {"fashion28": 30 * 60_000, "nn3-128": 162_770}
CELEBA_IMAGES = 162_770
CELEBA_SHAPE = (3, 128, 128)
TARGETS = {"nn3-128 images/s": 30_000.0, "celeba epoch seconds": 5.5, "seed run seconds": 60.0}
NO_GPU = "no GPU on this machine (torch.cuda.is_available() is False); nothing measured"
SMOKE = {"fashion_batches": [4], "nn3_batches": [1], "steps": 1, "repeats": 2, "warmup": 1,
         "celeba_images": 16, "celeba_test": 4, "celeba_batch": 16, "seed_epochs": 1, "seed_train_limit": 128,
         "seed_test_limit": 64, "matmul_n": 512}


# ---------------------------------------------------------------------- helpers

def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch_version": torch.__version__,
                            "python": platform.python_version(), "cpu": cpu_name()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=torch.cuda.get_device_name(device), gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    sm_count=props.multi_processor_count, cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    try:
        from vaekit import __version__
        info["vaekit_version"] = __version__
    except ImportError:
        pass
    return info


def ceilings(device: torch.device, matmul_n: int | None) -> dict[str, Any]:
    """The datasheet bf16 peak (GPUs in the table) and measured matmul ceilings; which one MFU uses."""
    result: dict[str, Any] = {"datasheet_bf16_flops": peak_flops(device, "bf16")}
    dtypes = ["bf16", "tf32", "fp32"] if device.type == "cuda" else ["bf16", "fp32"]
    for dtype in dtypes:
        try:
            result[f"measured_{dtype}_matmul_flops"] = measured_matmul_flops(device, dtype, n=matmul_n)
        except Exception as error:  # noqa: BLE001 - a dtype the device lacks
            result[f"measured_{dtype}_matmul_flops"] = None
            result[f"measured_{dtype}_error"] = repr(error)
    if result["datasheet_bf16_flops"]:
        result["mfu_peak"] = result["datasheet_bf16_flops"]
        result["mfu_peak_is"] = "datasheet dense bf16 peak"
    else:
        measured = {k: v for k, v in result.items() if k.startswith("measured_") and finite(v)}
        best = max(measured, key=measured.get)
        result["mfu_peak"] = measured[best]
        result["mfu_peak_is"] = f"measured matmul ceiling ({best.split('_')[1]})"
    return result


# ---------------------------------------------------------------------- a. throughput

def time_training(arch: str, batch_size: int, precision: str, compile_mode: str, device: torch.device,
                  steps: int, repeats: int, warmup: int, channels_last: bool = True,
                  fused: bool = True) -> dict[str, Any]:
    """Steady-state img/s of the trainer's step (resident uint8 batches, index_select, Adam fused or not)."""
    from vaekit.models import build_model, to_channels_last
    from vaekit.training.config import TrainConfig
    from vaekit.training.step import prepare_images, train_step
    from vaekit.training.tuning import compile_model, make_optimizer

    free_memory(device)
    if compile_mode != "off":
        torch._dynamo.reset()  # a fresh compile per measurement (no recompile limit, no dynamic batch)
    torch.manual_seed(0)
    config = TrainConfig(arch=arch, batch_size=batch_size, channels_last=channels_last,
                         precision=precision, compile=compile_mode)
    model = build_model(arch).to(device)
    if channels_last:
        to_channels_last(model)
    optimizer = make_optimizer(model, config.lr, fused)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    step_model = compile_model(model, compile_mode)
    pool = 4 * batch_size  # rotate over 4 batches' worth of random images, gathered as the trainer does
    images = torch.randint(0, 256, (pool, *model.image_shape), dtype=torch.uint8, device=device)
    order = torch.randperm(pool, device=device)
    n_batches = pool // batch_size

    def step(i: int) -> None:
        index = order[(i % n_batches) * batch_size:(i % n_batches + 1) * batch_size]
        x = prepare_images(images.index_select(0, index), channels_last)
        train_step(step_model, optimizer, scaler, x, 1.0, config, device, precision)

    started = time.perf_counter()
    for i in range(warmup):
        step(i)
    synchronize(device)
    warmup_s = time.perf_counter() - started
    rates = []
    for r in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        for i in range(steps):
            step(i)
        synchronize(device)
        rates.append(batch_size * steps / (time.perf_counter() - start))
    result = {"images_per_s_median": statistics.median(rates), "images_per_s_best": max(rates),
              "images_per_s_rounds": [round(r, 1) for r in rates], "warmup_s": round(warmup_s, 2)}
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return result  # the model, optimiser and images go with this frame; free_memory() runs before the next


def tuner_choice(arch: str, batch_size: int, device: torch.device, run_images: int,
                 cache_dir: str | None) -> dict[str, Any]:
    """What precision="auto", compile="auto" resolve to for a run of ``run_images`` images at this batch."""
    from vaekit.models import build_model
    from vaekit.training.tuning import choose_speed

    torch.manual_seed(0)
    model = build_model(arch)
    speed = choose_speed(model, device, "auto", "auto", batch_size=batch_size,
                         total_steps=math.ceil(run_images / batch_size), channels_last=True, cache_dir=cache_dir)
    del model
    free_memory(device)
    return speed.to_dict()


def run_throughput(args: argparse.Namespace, device: torch.device, peak: float) -> list[dict[str, Any]]:
    rows = []
    for arch in args.arch:
        from vaekit.models import build_model

        flops = training_flops_per_image(build_model(arch))
        batches = args.fashion_batches if arch == "fashion28" else args.nn3_batches
        for batch_size in batches:
            run_images = args.tuner_images or TUNER_RUN_IMAGES[arch]
            try:
                speed = tuner_choice(arch, batch_size, device, run_images, args.speed_cache)
            except Exception as error:  # noqa: BLE001 - out of memory at a large batch, say
                speed = {"precision": "bf16" if device.type == "cuda" else "fp32", "compile": "off",
                         "how": "tuner failed", "error": repr(error)[:300]}
            variants = [("vaekit default", speed["precision"], speed["compile"], speed.get("fused", True)),
                        ("fp32 eager", "fp32", "off", False)]
            for variant, precision, compile_mode, fused in variants:
                row: dict[str, Any] = {"arch": arch, "batch_size": batch_size, "variant": variant,
                                       "precision": precision, "compile": compile_mode, "channels_last": True,
                                       "flops_per_image": flops, "steps": args.steps, "repeats": args.repeats,
                                       "warmup_steps": args.warmup}
                if variant == "vaekit default":
                    row["speed"] = speed
                    row["tuner_run_images"] = run_images
                try:
                    row.update(time_training(arch, batch_size, precision, compile_mode, device,
                                             args.steps, args.repeats, args.warmup, fused=fused))
                    row["tflops_per_s"] = row["images_per_s_median"] * flops / 1e12
                    row["mfu"] = row["images_per_s_median"] * flops / peak
                    row["mfu_best"] = row["images_per_s_best"] * flops / peak
                except Exception as error:  # noqa: BLE001 - record (e.g. OOM) and go on
                    row["error"] = repr(error)[:500]
                    free_memory(device)
                rows.append(row)
                print(format_row(row), flush=True)
    return rows


def format_row(row: dict[str, Any]) -> str:
    name = f"{row['arch']:<9} b{row['batch_size']:<6} {row['variant']:<15} {row['precision'] + '+' + row['compile']:<18}"
    if "error" in row:
        return f"  {name} failed: {row['error'][:120]}"
    return (f"  {name} {row['images_per_s_median']:>11,.0f} img/s (best {row['images_per_s_best']:>11,.0f})  "
            f"{row['tflops_per_s']:>7.2f} TFLOP/s  MFU {100 * row['mfu']:5.1f}%")


# ---------------------------------------------------------------------- b. CelebA-size epoch

def synthetic_cache(scratch: Path, n: int) -> Path:
    """A uint8 (n, 3, 128, 128) file of a repeating pattern, written in chunks; reused when complete."""
    path = scratch / f"celeba-synthetic-{n}.u8"
    done = path.with_suffix(".done")
    per_image = math.prod(CELEBA_SHAPE)
    if done.exists() and path.exists() and path.stat().st_size == n * per_image:
        return path
    chunk_images = 2048
    # A smooth image-like pattern per slot in the chunk (not constant, not random per byte).
    c, h, w = CELEBA_SHAPE
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    base = np.stack([(xx * (k + 1) + yy * (3 - k)) for k in range(c)]).astype(np.int64)
    chunk = np.empty((chunk_images, c, h, w), dtype=np.uint8)
    for i in range(chunk_images):
        chunk[i] = ((base + 7 * i) % 256).astype(np.uint8)
    scratch.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        left = n
        while left > 0:
            take = min(left, chunk_images)
            handle.write(chunk[:take].tobytes())
            left -= take
    done.write_text("complete\n")
    return path


def memmap_dataset(path: Path, n: int, split: str, limit: int | None = None):
    """The file as a zero-copy ImageDataset (torch tensor over the np.memmap)."""
    from vaekit.data.dataset import ImageDataset

    count = n if limit is None else min(n, limit)
    array = np.memmap(path, dtype=np.uint8, mode="r+", shape=(count, *CELEBA_SHAPE))
    images = torch.from_numpy(array)
    return ImageDataset(images, torch.zeros(count, dtype=torch.int64), ("face",), name="celeba-synthetic",
                        split=split)


def run_celeba_epoch(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import vaekit

    n = args.celeba_images
    started = time.perf_counter()
    path = synthetic_cache(args.scratch, n)
    result: dict[str, Any] = {"images": n, "bytes": n * math.prod(CELEBA_SHAPE), "file": str(path),
                              "cache_write_s": round(time.perf_counter() - started, 2),
                              "batch_size": args.celeba_batch, "test_limit": args.celeba_test, "runs": []}
    for placement in ("resident", "stream"):
        train_set = memmap_dataset(path, n, "train")
        test_set = memmap_dataset(path, n, "test", limit=args.celeba_test)
        out = args.scratch / f"run-celeba-{placement}-{os.getpid()}-{time.time_ns()}"
        row: dict[str, Any] = {"data_placement": placement}
        free_memory(device)
        try:
            start = time.perf_counter()
            trained = vaekit.train(out=out, progress=False, model="nn3-128", dataset=train_set,
                                   test_dataset=test_set, epochs=1, batch_size=args.celeba_batch,
                                   test_limit=args.celeba_test, device=str(device), data_placement=placement)
            wall = time.perf_counter() - start
            metrics = trained.metrics[-1]
            resolved = json.loads((out / "config.json").read_text()).get("resolved", {})
            row.update(wall_s=round(wall, 2), epoch_s=metrics["seconds"],
                       images_per_s=n / max(metrics["seconds"], 1e-9), test_elbo=metrics["test_elbo"],
                       resolved=resolved)
            if device.type == "cuda":
                row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        except Exception as error:  # noqa: BLE001
            row["error"] = repr(error)[:500]
        finally:
            shutil.rmtree(out, ignore_errors=True)
        del train_set, test_set
        result["runs"].append(row)
        if "error" in row:
            print(f"  {placement:<9} failed: {row['error'][:200]}", flush=True)
        else:
            print(f"  {placement:<9} epoch {row['epoch_s']:>8.2f} s  {row['images_per_s']:>9,.0f} img/s  "
                  f"(train() wall {row['wall_s']:.1f} s; {resolved.get('precision')}+{resolved.get('compile')}, "
                  f"placement {resolved.get('data_placement')})", flush=True)
    if not args.keep_cache:
        path.unlink(missing_ok=True)
        path.with_suffix(".done").unlink(missing_ok=True)
    return result


# ---------------------------------------------------------------------- c. seed run

def run_seed(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import vaekit

    result: dict[str, Any] = {"epochs": args.seed_epochs, "data_dir": str(args.fashion_dir),
                              "train_limit": args.seed_train_limit, "test_limit": args.seed_test_limit}
    if not args.fashion_dir or not Path(args.fashion_dir).exists():
        result["skipped"] = f"Fashion-MNIST not found in {args.fashion_dir} (pass --fashion-dir)"
        print(f"  skipped: {result['skipped']}")
        return result
    out = args.scratch / f"run-seed-{os.getpid()}-{time.time_ns()}"
    free_memory(device)
    try:
        start = time.perf_counter()
        trained = vaekit.train(out=out, progress=False, dataset="fashion-mnist", data_dir=str(args.fashion_dir),
                               epochs=args.seed_epochs, device=str(device), train_limit=args.seed_train_limit,
                               test_limit=args.seed_test_limit)
        wall = time.perf_counter() - start
        rows = trained.metrics
        config = json.loads((out / "config.json").read_text())
        result.update(wall_s=round(wall, 2), final_test_elbo=rows[-1]["test_elbo"],
                      train_seconds=round(sum(r["seconds"] for r in rows), 2),
                      last_epoch_images_per_s=rows[-1]["images_per_s"], train=config.get("train"),
                      resolved=config.get("resolved"))
        print(f"  {args.seed_epochs} epochs: {wall:.1f} s wall ({result['train_seconds']:.1f} s in training steps), "
              f"final test ELBO {result['final_test_elbo']:.2f}", flush=True)
    except Exception as error:  # noqa: BLE001
        result["error"] = repr(error)[:500]
        print(f"  failed: {result['error'][:200]}", flush=True)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return result


# ---------------------------------------------------------------------- d. targets

def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    targets = []
    nn3 = [r for r in report.get("throughput", []) if r["arch"] == "nn3-128" and r["variant"] == "vaekit default"
           and "error" not in r]
    if nn3:
        best = max(nn3, key=lambda r: r["images_per_s_median"])
        targets.append({"target": "nn3-128 training >= 30,000 img/s", "value": best["images_per_s_median"],
                        "at": f"batch {best['batch_size']}, {best['precision']}+{best['compile']}",
                        "pass": best["images_per_s_median"] >= TARGETS["nn3-128 images/s"]})
    celeba = report.get("celeba_epoch")
    if celeba:
        for run in celeba["runs"]:
            if "error" not in run:
                full = celeba["images"] == CELEBA_IMAGES
                targets.append({"target": f"CelebA epoch <= 5.5 s ({run['data_placement']})",
                                "value": run["epoch_s"],
                                "at": f"{celeba['images']} images, batch {celeba['batch_size']}"
                                      + ("" if full else " (not the full size: no verdict)"),
                                "pass": run["epoch_s"] <= TARGETS["celeba epoch seconds"] if full else None})
    seed = report.get("seed_run")
    if seed and "wall_s" in seed:
        full = seed["epochs"] == 30 and not seed.get("train_limit")
        targets.append({"target": "30-epoch fashion28 seed run <= 60 s", "value": seed["wall_s"],
                        "at": f"{seed['epochs']} epochs" + ("" if full else " (not the full run: no verdict)"),
                        "pass": seed["wall_s"] <= TARGETS["seed run seconds"] if full else None})
    return targets


# ---------------------------------------------------------------------- main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="vaekit GPU training throughput, MFU and the issue's targets")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:1, cpu")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here")
    parser.add_argument("--smoke", action="store_true", help="a tiny run of every section (for tests, on a CPU)")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--arch", nargs="+", choices=list(BATCHES), default=list(BATCHES))
    parser.add_argument("--fashion-batches", type=int, nargs="+", default=BATCHES["fashion28"])
    parser.add_argument("--nn3-batches", type=int, nargs="+", default=BATCHES["nn3-128"])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median and best reported)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps first (compile included)")
    parser.add_argument("--tuner-images", type=int, default=None,
                        help="images of the run the tuner plans for (default: 30 Fashion-MNIST epochs for "
                             "fashion28, one CelebA epoch for nn3-128)")
    parser.add_argument("--speed-cache", default=None, help="the tuner's cache folder (default: vaekit's cache)")
    parser.add_argument("--matmul-n", type=int, default=None, help="size of the timed matmuls (default 8192 GPU)")
    parser.add_argument("--scratch", type=Path, default=Path("/tmp/vaekit-gpu-bench"),
                        help="folder for the synthetic CelebA cache and run directories")
    parser.add_argument("--celeba-images", type=int, default=CELEBA_IMAGES)
    parser.add_argument("--celeba-test", type=int, default=1000, help="test images evaluated after the epoch")
    parser.add_argument("--celeba-batch", type=int, default=128, help="batch size (vaekit's default: 128)")
    parser.add_argument("--keep-cache", action="store_true", help="keep the synthetic CelebA file")
    parser.add_argument("--fashion-dir", type=Path, default=ROOT.parent / "shared" / "data" / "fashion-mnist")
    parser.add_argument("--seed-epochs", type=int, default=30)
    parser.add_argument("--seed-train-limit", type=int, default=None)
    parser.add_argument("--seed-test-limit", type=int, default=None)
    args = parser.parse_args(argv)
    if args.smoke:
        given = {a.lstrip("-").split("=")[0].replace("-", "_") for a in (argv if argv is not None else sys.argv[1:])
                 if a.startswith("--")}
        for key, value in {"fashion_batches": SMOKE["fashion_batches"], "nn3_batches": SMOKE["nn3_batches"],
                           "steps": SMOKE["steps"], "repeats": SMOKE["repeats"], "warmup": SMOKE["warmup"],
                           "celeba_images": SMOKE["celeba_images"], "celeba_test": SMOKE["celeba_test"],
                           "celeba_batch": SMOKE["celeba_batch"], "seed_epochs": SMOKE["seed_epochs"],
                           "seed_train_limit": SMOKE["seed_train_limit"], "seed_test_limit": SMOKE["seed_test_limit"],
                           "matmul_n": SMOKE["matmul_n"], "tuner_images": 1}.items():
            if key not in given:
                setattr(args, key, value)
    return args


def write_report(path: Path | None, report: dict[str, Any]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=2, default=str))
        print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(NO_GPU)
        write_report(args.out, {"measured": False, "reason": NO_GPU, "torch_version": torch.__version__,
                                "settings": settings})
        return 0
    args.scratch.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"measured": True, **device_info(device), "settings": settings,
                              "targets_from_issue": TARGETS}
    print(f"device {report.get('gpu', report['cpu']['model'])}, torch {torch.__version__}")
    report["ceilings"] = ceilings(device, args.matmul_n)
    peak = report["ceilings"]["mfu_peak"]
    print(f"MFU peak: {peak / 1e12:.1f} TFLOP/s ({report['ceilings']['mfu_peak_is']}); measured matmul: "
          + ", ".join(f"{k.split('_')[1]} {v / 1e12:.1f}" for k, v in report["ceilings"].items()
                      if k.startswith("measured_") and k.endswith("_flops") and finite(v)) + " TFLOP/s")
    report["section_seconds"] = {}
    sections = {"throughput": ("a. training throughput (median of rounds)", lambda: run_throughput(args, device, peak)),
                "celeba_epoch": (f"b. CelebA-size epoch of nn3-128 ({args.celeba_images:,} images)",
                                 lambda: run_celeba_epoch(args, device)),
                "seed_run": (f"c. fashion28 seed run ({args.seed_epochs} epochs)", lambda: run_seed(args, device))}
    for name, (title, run) in sections.items():
        if name in args.sections:
            print(title, flush=True)
            start = time.perf_counter()
            report[name] = run()
            report["section_seconds"][name] = round(time.perf_counter() - start, 2)
    report["targets"] = check_targets(report)
    print("d. targets from the issue")
    for t in report["targets"]:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[t["pass"]]
        print(f"  {verdict}  {t['target']:<40} {t['value']:>12,.2f}  ({t['at']})")
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
