"""Several small trainings at once: is the machine busier with N runs side by side than with one?

For each layout ``JOBSxTHREADS`` (default: ``1xC``, ``2xC/2`` ... ``Cx1`` for C
cores) this starts JOBS processes at the same moment, each timing the training
step of ``benchmarks/train_throughput.py`` (``fashion28``, batch 128, fp32,
eager) with THREADS CPU threads, and reports the images/s of each process
and their sum. The best sum tells you what ``--jobs`` to give ``vaekit
train-family``, ``vaekit anomaly-protocol`` and ``benchmarks/model_quality.py``
on this machine (:mod:`vaekit.training.series`). Random uint8 images are used:
throughput does not depend on pixel values.

Usage::

    python benchmarks/parallel_runs.py                       # every layout of this machine's cores
    python benchmarks/parallel_runs.py --layouts 1x2 2x1 --json benchmarks/results/parallel_runs.json
    python benchmarks/parallel_runs.py --device cuda --layouts 1x4 2x4 4x4 8x2

On a GPU the processes share the device; THREADS is then each one's CPU threads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def default_layouts(cores: int) -> list[str]:
    """``1xC``, then halving threads and doubling jobs down to ``Cx1``."""
    layouts, jobs = [], 1
    while jobs <= cores:
        layouts.append(f"{jobs}x{max(1, cores // jobs)}")
        jobs *= 2
    return layouts


def parse_layout(text: str) -> tuple[int, int]:
    jobs, sep, threads = text.partition("x")
    if not sep or not jobs.isdigit() or not threads.isdigit() or int(jobs) < 1 or int(threads) < 1:
        raise SystemExit(f"--layouts: expected JOBSxTHREADS such as 2x1, got '{text}'")
    return int(jobs), int(threads)


def measure_layout(jobs: int, threads: int, steps: int, device: str, arch: str, batch: int) -> dict[str, Any]:
    """Start ``jobs`` measuring processes at once; collect each one's images/s."""
    code = ("import json, sys, torch; sys.path.insert(0, sys.argv[1]); torch.set_num_threads(int(sys.argv[2])); "
            "from train_throughput import measure_torch; "
            "print(json.dumps(measure_torch(sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), 'fp32', sys.argv[6])))")
    command = [sys.executable, "-c", code, str(HERE), str(threads), arch, str(batch), str(steps), device]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                 for _ in range(jobs)]
    rates = []
    for process in processes:
        out, err = process.communicate()
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if process.returncode != 0 or not lines:
            raise SystemExit(f"a measuring process failed:\n{err[-2000:]}")
        rates.append(json.loads(lines[-1])["median_images_per_s"])
    return {"layout": f"{jobs}x{threads}", "jobs": jobs, "threads": threads, "images_per_s": rates,
            "total_images_per_s": round(sum(rates), 1)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layouts", nargs="+", default=None, metavar="JOBSxTHREADS")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per process")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--arch", default="fashion28")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from flops import cpu_name

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    layouts = [parse_layout(text) for text in (args.layouts or default_layouts(cores))]
    rows = []
    for jobs, threads in layouts:
        rows.append(measure_layout(jobs, threads, args.steps, args.device, args.arch, args.batch_size))
        print(f"{rows[-1]['layout']:>6}: {rows[-1]['total_images_per_s']:8.1f} images/s in all "
              f"({', '.join(f'{r:.0f}' for r in rows[-1]['images_per_s'])})", flush=True)
    base = rows[0]["total_images_per_s"]
    for row in rows:
        row["speedup_vs_first"] = round(row["total_images_per_s"] / base, 2)
    best = max(rows, key=lambda row: row["total_images_per_s"])
    print(f"best: {best['layout']} ({best['speedup_vs_first']}x {rows[0]['layout']}): use --jobs {best['jobs']}")
    result = {"machine": cpu_name()["model"], "cores": cores, "device": args.device, "arch": args.arch,
              "batch_size": args.batch_size, "steps": args.steps, "rows": rows, "best": best["layout"],
              "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
