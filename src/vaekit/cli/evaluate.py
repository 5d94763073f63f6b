"""``vaekit evaluate``, ``embed``, ``anomaly`` and ``denoise``: thin CLI over :mod:`vaekit.analysis`.

Every command computes everything first and writes its files only at the
end (atomically), so a mistake never leaves a half-written result.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vaekit.cli.options import (
    add_data_options,
    add_output_option,
    add_runtime_options,
    finite_float,
    output_path,
    positive_int,
)
from vaekit.errors import ConfigError
from vaekit.guard import check_output, mark_output


def _open(args: argparse.Namespace):
    """The run of ``args.run`` on ``--device`` at ``--precision``, reading data from ``--data-dir`` if given."""
    from vaekit.runs import Run

    return Run.open(args.run, device=args.device, precision=args.precision, data_dir=args.data_dir)


def _int_or_all(text: str) -> int | None:
    return None if text == "all" else positive_int(text)


def _add_data_options(parser: argparse.ArgumentParser, limit_help: str = "use only the first N images") -> None:
    add_data_options(parser, limit=limit_help, seed=True)
    add_runtime_options(parser)


def _binarize_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--binarize", choices=("stochastic", "threshold"), default=None,
                        help="score binarised images under a normalised Bernoulli likelihood "
                             "(default: grey values, as in training)")


def _figure_path(args: argparse.Namespace, default_name: str) -> Path:
    return output_path(args, default_name, option="figure")


# ----------------------------------------------------------------------------
# evaluate


def cmd_evaluate(args: argparse.Namespace) -> int:
    from vaekit.analysis.bounds import evaluate_run
    from vaekit.files import write_json

    path = output_path(args, "evaluation.json")  # refused before the (possibly long) IWAE
    result = evaluate_run(_open(args), args.split, args.iw_samples, args.iw_images, args.binarize, args.dataset,
                          args.limit, args.all_classes, args.seed)
    write_json(path, mark_output(result.to_dict()))
    _print_evaluation(result)
    print(f"wrote {path}")
    return 0


def _print_evaluation(r) -> None:
    held = f"; held out of training and left out: {', '.join(r.excluded_classes)}" if r.excluded_classes else ""
    print(f"{r.dataset} ({r.split}), {r.n_images} images{held}")
    print(f"likelihood: {r.likelihood['description']}")
    print(f"-ELBO  {r.elbo:9.2f} nats/image ({r.elbo_bits_per_dim:.4f} bits/dim) = recon {r.recon:.2f} + KL {r.kl:.2f}")
    which = "all images" if r.iw_images == r.n_images else f"first {r.iw_images} images"
    print(f"IWAE   {r.iwae:9.2f} nats/image ({r.iwae_bits_per_dim:.4f} bits/dim), K={r.iw_samples}, {which}; "
          f"-ELBO on the same images {r.elbo_iw_images:.2f} (gap {r.elbo_iw_images - r.iwae:.2f})")
    print(f"active units: {r.active_units} of {r.latent_dim} (variance of E[z|x] over the data > 0.01)")
    print("KL per unit (nats): " + " ".join(f"{v:.2f}" for v in r.kl_per_dim))


def _register_evaluate(commands) -> None:
    parser = commands.add_parser("evaluate", help="ELBO, IWAE bound, active units and per-unit KL of a run",
                                 description="Measure a run's model: mean -ELBO (recon + KL), the importance-"
                                             "weighted bound (IWAE), active latent units and KL per unit, in nats "
                                             "per image and bits per dimension. Writes evaluation.json.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--iw-samples", type=int, default=1000, metavar="K",
                        help="importance samples per image for the IWAE bound (default: 1000)")
    parser.add_argument("--iw-images", type=_int_or_all, default=100, metavar="N",
                        help="compute the IWAE bound on the first N images, or 'all' (default: 100; "
                             "it costs K decoder passes per image)")
    _binarize_option(parser)
    parser.add_argument("--all-classes", action="store_true",
                        help="keep the classes the run was trained without (default: leave them out)")
    _add_data_options(parser)
    add_output_option(parser, "evaluation.json", "JSON results")
    parser.set_defaults(func=cmd_evaluate)


# ----------------------------------------------------------------------------
# embed


def cmd_embed(args: argparse.Namespace) -> int:
    from vaekit.analysis.embedding import embed_dataset, embedding_quality
    from vaekit.analysis.inference import inference_for
    from vaekit.files import write_json

    path = output_path(args, "embeddings.npz", suffixes=(".npz", ".csv"))
    quality_path = None if args.no_probe else check_output(path.with_name(path.stem + "_quality.json"))
    run = _open(args)
    model = inference_for(run)  # the run's device and precision
    data = run.dataset(args.split, limit=args.limit, name=args.dataset)
    embedding = embed_dataset(model, data)
    quality = None
    if not args.no_probe and data.num_classes > 1:
        train = run.dataset("train", limit=args.probe_train, in_distribution=True, name=args.dataset)
        test = run.dataset(args.split, limit=args.limit, in_distribution=True, name=args.dataset)
        quality = embedding_quality(model, train, test, args.k, args.seed)
    embedding.save(path)
    print(f"{len(embedding.labels)} images of {data.name} ({data.split}) -> z_mean, z_log_var, labels "
          f"({model.latent_dim} latent units)")
    print(f"wrote {path}")
    if quality is not None:
        write_json(quality_path, mark_output(quality.to_dict()))
        _print_quality(quality)
        print(f"wrote {quality_path}")
    return 0


def _print_quality(q) -> None:
    print(f"label accuracy on {q.n_test} images (probes fitted on {q.n_train} training images; chance "
          f"{q.chance_accuracy:.3f}):")
    print(f"  {'':22s} {'VAE z_mean':>10s} {f'PCA({q.dim})':>10s}")
    print(f"  {f'k-NN (k={q.k})':22s} {q.knn_accuracy:10.3f} {q.pca_knn_accuracy:10.3f}")
    print(f"  {'linear probe':22s} {q.linear_accuracy:10.3f} {q.pca_linear_accuracy:10.3f}")


def _register_embed(commands) -> None:
    parser = commands.add_parser("embed", help="export z_mean, z_log_var and labels; k-NN / linear-probe accuracy",
                                 description="Dimensionality reduction: encode a dataset split and write z_mean, "
                                             "z_log_var and labels (.npz or .csv), then report k-NN and linear-"
                                             "probe label accuracy against PCA with as many components.")
    parser.add_argument("run", type=Path)
    parser.add_argument("-k", type=positive_int, default=10, help="neighbours of the k-NN probe (default: 10)")
    parser.add_argument("--probe-train", type=positive_int, default=10000, metavar="N",
                        help="training images the probes are fitted on (default: 10000)")
    parser.add_argument("--no-probe", action="store_true", help="only export the embedding")
    _add_data_options(parser)
    add_output_option(parser, "embeddings.npz", "embedding (.npz or .csv)")
    parser.set_defaults(func=cmd_embed)


# ----------------------------------------------------------------------------
# anomaly


def cmd_anomaly(args: argparse.Namespace) -> int:
    from vaekit.analysis.anomaly import score_run
    from vaekit.files import write_csv, write_json
    from vaekit.viz.evaluation_figures import anomaly_figure
    from vaekit.viz.figures import save_figure

    if args.normal is not None and args.images is None:
        raise ConfigError("--normal: give the anomalous images with --images as well")
    csv_path = output_path(args, "anomaly_scores.csv")
    json_path, figure_path = check_output(csv_path.with_suffix(".json")), _figure_path(args, "anomaly.png")
    report = score_run(_open(args), args.images, args.normal, args.binarize, args.iw_samples, args.seed, args.limit)
    figure = anomaly_figure(report.dataset.images, report.scores.scores, report.captions, args.n, report.title)
    write_csv(csv_path, report.rows())
    print(f"scored {len(report.dataset)} images (IWAE with K={args.iw_samples}; higher = more anomalous)")
    print(f"wrote {csv_path}")
    if report.protocol is not None:
        summary = report.protocol.to_dict()
        write_json(json_path, mark_output(summary))
        print(f"AUROC, anomalous {', '.join(summary['anomalous'])} ({summary['n_anomalous']} images) "
              f"vs normal ({summary['n_normal']} images):")
        for name, value in summary["auroc"].items():
            print(f"  {name:12s} {value:.3f}")
        print(f"wrote {json_path}")
    print(f"wrote {save_figure(figure, figure_path)}")
    return 0


def _register_anomaly(commands) -> None:
    parser = commands.add_parser("anomaly", help="anomaly scores per image; AUROC for a held-out class",
                                 description="Score images by negative ELBO, reconstruction error, IWAE bound and "
                                             "the complexity-corrected score of Serra et al. (ICLR 2020). Without "
                                             "--images, run the held-out-class protocol: score the run's test "
                                             "split and report AUROC of the classes the run was trained without "
                                             "(vaekit train --exclude-classes) against the others.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--images", default=None, metavar="PATH_OR_DATASET",
                        help="a PNG/JPEG file or folder, or a dataset such as fashion-mnist:test or shapes")
    parser.add_argument("--normal", default=None, metavar="PATH_OR_DATASET",
                        help="in-distribution images to compare --images with: report AUROC of --images "
                             "(anomalous) against these (e.g. fashion-mnist:test)")
    parser.add_argument("--iw-samples", type=int, default=16, metavar="K",
                        help="importance samples per image for the IWAE scores (default: 16)")
    parser.add_argument("-n", type=positive_int, default=10, help="images per score in the figure (default: 10)")
    _binarize_option(parser)
    add_data_options(parser, split=False, dataset=False, limit="score the first N images only", seed=True)
    add_runtime_options(parser)
    parser.add_argument("--figure", type=Path, default=None, help="figure path (default: RUN/anomaly.png)")
    add_output_option(parser, "anomaly_scores.csv", "scores CSV (AUROCs go to the same name with .json)")
    parser.set_defaults(func=cmd_anomaly)


# ----------------------------------------------------------------------------
# denoise


def cmd_denoise(args: argparse.Namespace) -> int:
    from vaekit.analysis.denoise import denoise_benchmark
    from vaekit.analysis.inference import inference_for
    from vaekit.files import write_json
    from vaekit.viz.evaluation_figures import denoise_figure
    from vaekit.viz.figures import save_figure

    path, figure_path = output_path(args, "denoise.json"), _figure_path(args, "denoise.png")
    run = _open(args)
    model = inference_for(run)  # the run's device and precision
    data = run.dataset(args.split, limit=args.limit, name=args.dataset)
    corruptions = [("gaussian", args.noise_sigma), ("mask", args.mask_area)]
    results, examples = denoise_benchmark(model, data, corruptions, args.seed)
    figure = denoise_figure(examples, [kind for kind, _ in corruptions], args.n)
    write_json(path, mark_output({"dataset": data.name, "split": data.split,
                                 "results": [r.to_dict() for r in results]}))
    print(f"{len(data)} images of {data.name} ({data.split}); mean squared error to the clean image "
          f"(pixels in [0, 1]); reconstructing clean images: {results[0].mse_clean_reconstruction:.4f}")
    print(f"  {'':18s} {'whole image':^37s}   {'corrupted pixels':^17s}")
    print(f"  {'corruption':18s} {'input':>8s} {'output':>8s} {'removed':>8s} {'PSNR gain':>11s}   "
          f"{'input':>8s} {'output':>8s}")
    for r in results:
        label = f"{r.corruption} {'sigma' if r.corruption == 'gaussian' else 'area'} {r.level:g}"
        print(f"  {label:18s} {r.mse_input:8.4f} {r.mse_output:8.4f} {r.mse_reduction:8.1%} "
              f"{r.improvement_db:+8.2f} dB   {r.mse_input_region:8.4f} {r.mse_output_region:8.4f}")
    print(f"wrote {path}")
    print(f"wrote {save_figure(figure, figure_path)}")
    return 0


def _register_denoise(commands) -> None:
    parser = commands.add_parser("denoise", help="reconstruct noisy / masked images; error before and after",
                                 description="Corrupt images with Gaussian noise and with a masked square, "
                                             "reconstruct them from their posterior means and report how much "
                                             "closer to the clean image the output is than the input.")
    parser.add_argument("run", type=Path)
    parser.add_argument("--noise-sigma", type=finite_float, default=0.3, help="std of the Gaussian noise (default: 0.3)")
    parser.add_argument("--mask-area", type=finite_float, default=0.25,
                        help="fraction of the image area the black square covers (default: 0.25)")
    parser.add_argument("-n", type=positive_int, default=8, help="images in the figure (default: 8)")
    _add_data_options(parser)
    parser.add_argument("--figure", type=Path, default=None, help="figure path (default: RUN/denoise.png)")
    add_output_option(parser, "denoise.json", "JSON results")
    parser.set_defaults(func=cmd_denoise)


def register(commands) -> None:
    """Add ``evaluate``, ``embed``, ``anomaly`` and ``denoise`` to the ``vaekit`` command."""
    _register_evaluate(commands)
    _register_embed(commands)
    _register_anomaly(commands)
    _register_denoise(commands)
