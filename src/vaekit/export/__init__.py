"""Exporting trained models to other runtimes: ONNX (:func:`export_onnx`)."""

from vaekit.export.onnx import (
    DECODER_FILE,
    ENCODER_FILE,
    TOLERANCE,
    ExportReport,
    export_onnx,
)

__all__ = ["DECODER_FILE", "ENCODER_FILE", "TOLERANCE", "ExportReport", "export_onnx"]
