"""pythae, the main PyTorch VAE library, as a reference trainer beside vaekit's.

Both sides train the *same* architecture object, vaekit's ``fashion28`` VAE
(1,361,821 parameters; pythae gets its encoder and decoder wrapped as
``BaseEncoder`` / ``BaseDecoder``), on the real Fashion-MNIST training images
for ``--epochs`` (default 3) with Adam 1e-3 and batch 128, and both are scored
by the same code: :func:`vaekit.analysis.bounds.evaluate_model` on the test
images, one posterior sample, seed 0 (the -ELBO in nats, lower is better).
Only the trainer differs:

* ``pythae``: ``TrainingPipeline`` with ``BaseTrainerConfig``, the
  ``bce`` reconstruction loss (summed per image) and PyTorch's default
  initialisation (pythae has no initialisation of its own);
* ``vaekit <variant>``: ``vaekit.train`` with that variant's settings
  (``default`` is vaekit's defaults; ``init=pytorch,precision=fp32`` and so on
  override single :class:`vaekit.TrainConfig` fields).

Speed is training images per second: epochs x images / wall time of pythae's
pipeline call, and vaekit's own per-epoch ``img_s`` (its per-epoch test
evaluation is not counted; pythae is given no evaluation set).

pythae is an optional benchmark dependency, never needed by the tests. It pins
its own versions, so keep it in its own virtualenv with vaekit installed there
too (``--pythae-python`` points at it)::

    python3 -m venv .venv-pythae
    .venv-pythae/bin/pip install torch==2.13.0        # the CPU wheel, before pythae pulls another
    .venv-pythae/bin/pip install pythae -e .          # tested: pythae 0.1.2
    python benchmarks/pythae_reference.py --seeds 0 1 --json benchmarks/results/pythae_reference.json

Without that interpreter the pythae rows are left out and the output says so.

``--json PATH`` writes every row there and the summary table beside it
(``PATH`` with ``.md``), rendered from that JSON. It keeps what it already holds: rows measured by an earlier call with
the same epochs, batch size, lr and limits are reused, so a later call with one
more variant (``--variants default init=pytorch lr_schedule=cosine``) trains
only that one. Results with other settings there are refused, never mixed.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PYTHAE_PYTHON = ROOT / ".venv-pythae" / "bin" / "python"
ARCH = "fashion28"


def parse_variant(text: str, option: str = "--variants") -> dict[str, Any]:
    """``"default"`` -> ``{}``; ``"init=pytorch,precision=fp32"`` -> typed TrainConfig overrides.

    ``none`` sets an optional field (``ema_decay=none``, ``grad_clip=none``) to ``None``.
    """
    from vaekit import TrainConfig

    if text == "default":
        return {}
    known = {f.name: f for f in fields(TrainConfig)}
    overrides: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or key not in known:
            raise SystemExit(f"{option}: '{item}' is not NAME=VALUE with NAME a TrainConfig field")
        # The field's declared type, so that optional numbers (ema_decay: float | None) parse too.
        declared = str(known[key].type)
        kind = next((k for k in (int, float) if declared.startswith(k.__name__)), None)
        if value.lower() == "none" and declared.endswith("| None"):  # switch an optional setting off: ema_decay=none
            overrides[key] = None
            continue
        try:
            overrides[key] = kind(value) if kind else value
        except ValueError:
            raise SystemExit(f"{option}: '{item}': {key} takes a number ({kind.__name__})") from None
    return overrides


def with_overrides(config: Any, overrides: dict[str, Any], where: str) -> Any:
    """``config`` with ``overrides`` (from :func:`parse_variant`) applied and validated.

    A bad value exits with one line naming ``where`` (``"model_quality: error: --train-settings"``).
    """
    from vaekit import TrainConfig
    from vaekit.errors import VaekitError

    try:
        changed = TrainConfig.from_dict({**config.to_dict(), **overrides})
        changed.validate()
    except VaekitError as error:
        raise SystemExit(f"{where}: {error}") from None
    return changed


def _score(model: Any, test_set: Any) -> dict[str, Any]:
    from vaekit.analysis.bounds import evaluate_model

    scores = evaluate_model(model, test_set, iw_samples=1, iw_images=1, seed=0)
    return {"test_elbo": round(scores.elbo, 3), "recon": round(scores.recon, 3), "kl": round(scores.kl, 3),
            "active_units": scores.active_units, "test_images": scores.n_images}


def _datasets(data_dir: str | None, train_limit: int | None, test_limit: int | None) -> tuple[Any, Any]:
    from vaekit.data import load_fashion_mnist

    train, test = load_fashion_mnist("train", data_dir), load_fashion_mnist("test", data_dir)
    return (train.subset(slice(0, train_limit)) if train_limit else train,
            test.subset(slice(0, test_limit)) if test_limit else test)


def train_pythae(seed: int, epochs: int, batch_size: int, lr: float, data_dir: str | None,
                 train_limit: int | None, test_limit: int | None) -> dict[str, Any]:
    """Train vaekit's architecture with pythae's trainer; score it with vaekit's evaluator."""
    from importlib.metadata import version

    import torch
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig

    from vaekit.models import build_model

    class Encoder(BaseEncoder):
        def __init__(self, vae: torch.nn.Module) -> None:
            super().__init__()
            self.body, self.mean, self.log_var = vae.encoder, vae.z_mean, vae.z_log_var

        def forward(self, x: torch.Tensor) -> ModelOutput:
            hidden = self.body(x)
            return ModelOutput(embedding=self.mean(hidden), log_covariance=self.log_var(hidden))

    class Decoder(BaseDecoder):
        def __init__(self, vae: torch.nn.Module) -> None:
            super().__init__()
            self.body = vae.decoder

        def forward(self, z: torch.Tensor) -> ModelOutput:
            return ModelOutput(reconstruction=torch.sigmoid(self.body(z)))

    train_set, test_set = _datasets(data_dir, train_limit, test_limit)
    torch.manual_seed(seed)
    vae = build_model(ARCH, init="pytorch")
    model = VAE(VAEConfig(input_dim=tuple(vae.image_shape), latent_dim=vae.latent_dim, reconstruction_loss="bce"),
                encoder=Encoder(vae), decoder=Decoder(vae))
    with tempfile.TemporaryDirectory() as scratch:
        config = BaseTrainerConfig(output_dir=scratch, num_epochs=epochs, learning_rate=lr, seed=seed,
                                   per_device_train_batch_size=batch_size, per_device_eval_batch_size=batch_size,
                                   optimizer_cls="Adam", no_cuda=True)
        images = train_set.images.float() / 255
        started = time.perf_counter()
        TrainingPipeline(model=model, training_config=config)(train_data=images)
        seconds = time.perf_counter() - started
    # The wrapped modules are vae's own: it now holds pythae's trained weights.
    return {"trainer": f"pythae {version('pythae')}", "settings": "PyTorch default init, fp32", "seed": seed,
            "epochs": epochs, **_score(vae.eval(), test_set), "train_images": len(train_set),
            "images_per_s": round(epochs * len(train_set) / seconds, 1), "train_seconds": round(seconds, 1)}


def train_vaekit(variant: str, seed: int, epochs: int, batch_size: int, lr: float, data_dir: str | None,
                 train_limit: int | None, test_limit: int | None) -> dict[str, Any]:
    """Train with ``vaekit.train`` and one variant's settings; score the saved run like pythae's."""
    import vaekit
    from vaekit import TrainConfig
    from vaekit.runs import Run

    overrides = parse_variant(variant)
    _, test_set = _datasets(data_dir, None, test_limit)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        result = vaekit.train(out=Path(scratch) / "run", arch=ARCH, epochs=epochs, seed=seed, batch_size=batch_size,
                              lr=lr, data_dir=data_dir, train_limit=train_limit, test_limit=test_limit,
                              progress=False, **overrides)
        seconds = time.perf_counter() - started
        run = Run.open(Path(scratch) / "run", device="cpu", precision="fp32")
        precision = run.config.get("resolved", {}).get("precision", "?")
        trained = run.config["train"]  # the settings the run trained with, defaults included
        scores = _score(run, test_set)
    rates = [float(row["images_per_s"]) for row in result.metrics if row.get("images_per_s")]
    recipe = TrainConfig.from_dict(trained).comparable()  # init and clip as they resolved for the architecture
    averaging = f", EMA {recipe['ema_decay']:g}" if recipe["ema_decay"] else ""
    clipping = f", clip {recipe['grad_clip']:g}" if recipe["grad_clip"] else ""
    return {"trainer": f"vaekit {variant}", "settings": f"precision {precision}, "
            f"init {recipe['init']}{averaging}{clipping}", "seed": seed, "epochs": epochs, **scores,
            "train_images": train_limit or 60000, "images_per_s": round(statistics.median(rates), 1) if rates else None,
            "train_seconds": round(seconds, 1)}


def _pythae_rows(args: argparse.Namespace, notes: list[str],
                 kept: dict[tuple[str, int], dict[str, Any]]) -> list[dict[str, Any]]:
    mine = [row for (trainer, seed), row in kept.items() if trainer.startswith("pythae") and seed in args.seeds]
    for row in mine:
        _print_row(row)
    python = Path(args.pythae_python)
    todo = [seed for seed in args.seeds if seed not in {row["seed"] for row in mine}]
    if todo and not python.is_file():
        notes.append(f"pythae rows left out: {python} not found (see this script's docstring to install it)")
        return mine
    rows = mine
    for seed in todo:
        command = [str(python), __file__, "--side", "pythae", "--seed", str(seed), *_shared_args(args)]
        done = subprocess.run(command, check=False, capture_output=True, text=True, cwd=ROOT)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode != 0 or not lines:
            notes.append(f"pythae seed {seed} failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}")
            continue
        rows.append(json.loads(lines[-1]))
        _print_row(rows[-1])
    return rows


def _shared_args(args: argparse.Namespace) -> list[str]:
    shared = ["--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr)]
    for flag, value in (("--data-dir", args.data_dir), ("--train-limit", args.train_limit),
                        ("--test-limit", args.test_limit)):
        if value is not None:
            shared += [flag, str(value)]
    return shared


def _print_row(row: dict[str, Any]) -> None:
    print(f"{row['trainer']:>34} seed {row['seed']}: test -ELBO {row['test_elbo']:.2f} "
          f"(recon {row['recon']:.2f}, KL {row['kl']:.2f}), {row['images_per_s']} img/s", flush=True)


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sd (over seeds) of test -ELBO and images/s, per trainer, in first-seen order."""
    out = []
    for trainer in dict.fromkeys(row["trainer"] for row in rows):
        mine = [row for row in rows if row["trainer"] == trainer]
        elbos = [row["test_elbo"] for row in mine]
        rates = [row["images_per_s"] for row in mine if row["images_per_s"]]
        out.append({"trainer": trainer, "settings": mine[0]["settings"], "seeds": [row["seed"] for row in mine],
                    "test_elbo_mean": round(statistics.mean(elbos), 2),
                    "test_elbo_sd": round(statistics.stdev(elbos), 2) if len(elbos) > 1 else 0.0,
                    "images_per_s_mean": round(statistics.mean(rates), 1) if rates else None})
    return out


def markdown(result: dict[str, Any]) -> str:
    """The summary as a markdown table, with the machine and notes."""
    meta = result["meta"]
    heading = (f"fashion28, {meta['epochs']} epochs, {meta['train_images']:,} training images, test -ELBO on "
               f"{meta['test_images']:,} test images (one posterior sample); {meta['machine']}")
    lines = [heading, "",
             "| trainer | settings | seeds | test -ELBO (mean ± sd) | images/s |", "|---|---|---|---|---|"]
    for row in result["summary"]:
        lines.append(f"| {row['trainer']} | {row['settings']} | {len(row['seeds'])} | "
                     f"{row['test_elbo_mean']:.2f} ± {row['test_elbo_sd']:.2f} | {row['images_per_s_mean']} |")
    if meta.get("reused_rows"):
        lines.append(f"\n- {meta['reused_rows']} of {len(result['rows'])} rows were kept from an earlier call with the "
                     f"same settings; this call took {meta['wall_seconds']:.0f} s")
    lines += [f"\n- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--side", choices=["all", "pythae"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--variants", nargs="+", default=["default", "init=pytorch,precision=fp32"],
                        help="vaekit settings to train: 'default' or NAME=VALUE[,NAME=VALUE]")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-limit", type=int, default=None)
    parser.add_argument("--test-limit", type=int, default=None)
    parser.add_argument("--pythae-python", default=str(DEFAULT_PYTHAE_PYTHON))
    parser.add_argument("--json", type=Path, default=None,
                        help="write the results here; rows already there with the same settings are kept, "
                             "so a second call with more --variants or --seeds adds only what is missing")
    return parser


# What makes two rows comparable: a kept row is reused only when all of these match.
SETTINGS = ("epochs", "batch_size", "lr", "train_limit", "test_limit")


def kept_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of ``args.json`` from an earlier call with the same :data:`SETTINGS` (none if no file)."""
    if args.json is None or not args.json.is_file():
        return []
    try:
        data = json.loads(args.json.read_text(encoding="utf-8"))
        parser = build_parser()
        parser.exit_on_error = False
        earlier, _ = parser.parse_known_args(shlex.split(data["meta"]["command"])[2:])
        rows = list(data["rows"])
    except (ValueError, KeyError, TypeError, AttributeError, argparse.ArgumentError):
        raise SystemExit(f"--json {args.json}: not a results file of this script; choose another file") from None
    differ = [name for name in SETTINGS if getattr(earlier, name) != getattr(args, name)]
    if differ:
        raise SystemExit(f"--json {args.json}: holds results with other {', '.join(differ)}; choose another file")
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    if args.side == "pythae":
        print(json.dumps(train_pythae(args.seed, args.epochs, args.batch_size, args.lr, args.data_dir,
                                      args.train_limit, args.test_limit)))
        return None
    for variant in args.variants:
        parse_variant(variant)  # a bad variant fails before any training
    kept = {(row["trainer"], row["seed"]): row for row in kept_rows(args)}
    started = time.perf_counter()
    notes: list[str] = []
    rows = _pythae_rows(args, notes, kept)
    for seed in args.seeds:
        for variant in args.variants:
            row = kept.get((f"vaekit {variant}", seed))
            rows.append(row or train_vaekit(variant, seed, args.epochs, args.batch_size, args.lr, args.data_dir,
                                            args.train_limit, args.test_limit))
            _print_row(rows[-1])
    reused = sum(1 for row in rows if kept.get((row["trainer"], row["seed"])) is row)
    result = {"meta": _meta(args, argv, rows, time.perf_counter() - started, reused), "rows": rows,
              "summary": summary(rows), "notes": notes}
    print(markdown(result))
    if args.json:
        from vaekit.files import atomic_write_text, write_json

        write_json(args.json, result)
        atomic_write_text(args.json.with_suffix(".md"), markdown(result))  # the table, rendered from that JSON
    return result


def _meta(args: argparse.Namespace, argv: list[str], rows: list[dict[str, Any]], seconds: float,
          reused: int) -> dict[str, Any]:
    import torch
    from flops import cpu_name

    machine = cpu_name()
    return {"command": shlex.join(["python", "benchmarks/pythae_reference.py", *argv]),
            "machine": f"{machine['model']} x{machine['threads']} threads", "torch": torch.__version__,
            "epochs": args.epochs, "train_images": rows[0]["train_images"] if rows else None,
            "test_images": rows[0]["test_images"] if rows else None, "wall_seconds": round(seconds, 1),
            "reused_rows": reused,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d")}


if __name__ == "__main__":
    main()
