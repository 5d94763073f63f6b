"""``vaekit export RUN -o DIR``: the run's encoder and decoder as ONNX files, checked in onnxruntime."""

from __future__ import annotations

import argparse
from pathlib import Path

from vaekit.cli.options import add_data_options, positive_int


def cmd_export(args: argparse.Namespace) -> int:
    from vaekit.export.onnx import TOLERANCE, check_export_dir, export_onnx
    from vaekit.runs import Run

    out_dir = check_export_dir(args.output, option="output")  # refused before the model is loaded
    run = Run.open(args.run, device="cpu", precision="fp32", data_dir=args.data_dir)
    report = export_onnx(run, out_dir, opset=args.opset, exporter=args.exporter, n_check=args.limit,
                         tolerance=TOLERANCE)
    print(f"checked in onnxruntime against PyTorch (fp32) on {report.n_images} images from {report.images_source}, "
          f"batch sizes {', '.join(map(str, report.batch_sizes))}:")
    print(f"  encoder max abs diff: {report.encoder_max_abs_diff:.3g} (z_mean {report.details['encoder.z_mean']:.3g}, "
          f"z_log_var {report.details['encoder.z_log_var']:.3g})")
    print(f"  decoder max abs diff: {report.decoder_max_abs_diff:.3g} (images)")
    print(report.encoder_path)
    print(report.decoder_path)
    return 0


def register(commands) -> None:
    """Add ``export`` to the ``vaekit`` command."""
    parser = commands.add_parser("export", help="write the run's encoder.onnx and decoder.onnx (needs vaekit[onnx])")
    parser.add_argument("run", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="DIR",
                        help="folder for encoder.onnx and decoder.onnx (not a run directory)")
    add_data_options(parser, split=False, dataset=False, limit_default=16,
                     limit="test images to check the export on (default: 16; random images if the data is missing)")
    parser.add_argument("--opset", type=positive_int, default=18, help="ONNX opset version (default: 18)")
    parser.add_argument("--exporter", choices=("auto", "torchscript", "dynamo"), default="auto",
                        help="torch.onnx exporter: auto (TorchScript, else dynamo), torchscript or dynamo "
                             "(default: auto)")
    parser.set_defaults(func=cmd_export)
