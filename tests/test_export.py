"""ONNX export: files, dynamic batch, onnxruntime against PyTorch on real images, the CLI and its refusals."""

from __future__ import annotations

import hashlib
import shutil
import sys

import pytest
import torch

import vaekit
from vaekit.cli import main
from vaekit.export.onnx import ExportMismatchError

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TOLERANCE = 1e-4


def _session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _max_diff(ours, theirs) -> float:
    return (torch.from_numpy(ours) - theirs).abs().max().item()


def _check_against_pytorch(model, report, images) -> dict[str, float]:
    """Run both ONNX files on batches of 1 and 7 real images; every output within 1e-4 of PyTorch."""
    model = model.to(memory_format=torch.contiguous_format).eval()
    encoder, decoder = _session(report.encoder_path), _session(report.decoder_path)
    assert [i.name for i in encoder.get_inputs()] == ["images"]
    assert [o.name for o in encoder.get_outputs()] == ["z_mean", "z_log_var"]
    assert [i.name for i in decoder.get_inputs()] == ["z"] and [o.name for o in decoder.get_outputs()] == ["images"]
    worst = {"z_mean": 0.0, "z_log_var": 0.0, "images": 0.0}
    for n in (1, 7):
        batch = images[:n].contiguous()
        z_mean, z_log_var = encoder.run(None, {"images": batch.numpy()})
        decoded, = decoder.run(None, {"z": z_mean})
        with torch.no_grad():
            want_mean, want_log_var = model.encode(batch)
            want_images = model.decode(torch.from_numpy(z_mean))
        assert z_mean.shape == (n, model.latent_dim) and decoded.shape == (n, *model.image_shape)
        assert 0 <= decoded.min() and decoded.max() <= 1
        for name, ours, theirs in (("z_mean", z_mean, want_mean), ("z_log_var", z_log_var, want_log_var),
                                   ("images", decoded, want_images)):
            worst[name] = max(worst[name], _max_diff(ours, theirs))
    assert max(worst.values()) <= TOLERANCE, worst
    return worst


def _tree_digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def test_fashion_run_exports_and_matches_pytorch_on_real_images(fashion_run, tmp_path):
    run = vaekit.Run.open(fashion_run, device="cpu", precision="fp32")
    report = vaekit.export_onnx(run, tmp_path / "onnx")
    assert report.encoder_path.is_file() and report.decoder_path.is_file()
    assert report.images_source.startswith("dataset fashion") and report.n_images == 16
    assert {1, 7, 16} <= set(report.batch_sizes)
    assert report.encoder_max_abs_diff <= TOLERANCE and report.decoder_max_abs_diff <= TOLERANCE
    images = run.dataset("test", limit=7).images.float() / 255
    worst = _check_against_pytorch(run.model, report, images)
    print(f"fashion28: export report {report.details}, independent check {worst}")
    # Exporting again replaces vaekit's own ONNX files.
    assert vaekit.export_onnx(fashion_run, tmp_path / "onnx", n_check=4).n_images == 4


def test_nn3_128_exports_and_matches_pytorch_on_real_images(fashion_mnist_dir, tmp_path):
    torch.manual_seed(0)
    model = vaekit.build_model("nn3-128").eval()
    model_dir = tmp_path / "nn3"
    model.save_pretrained(model_dir)
    # Real Fashion-MNIST test images, upscaled to 128x128 and repeated over 3 channels.
    test = vaekit.load_dataset("fashion-mnist", "test", data_dir=str(fashion_mnist_dir))
    small = test.images[:7].float() / 255
    images = torch.nn.functional.interpolate(small, size=(128, 128), mode="bilinear").repeat(1, 3, 1, 1).clamp(0, 1)
    report = vaekit.export_onnx(model_dir, tmp_path / "onnx", check_images=images)
    assert report.images_source == "given images" and report.n_images == 7
    assert report.max_abs_diff <= TOLERANCE
    worst = _check_against_pytorch(vaekit.load(model_dir), report, images)
    print(f"nn3-128: export report {report.details}, independent check {worst}")


def test_dynamo_exporter_also_matches(tmp_path):
    torch.manual_seed(1)
    model = vaekit.build_model("fashion28", latent_dim=2)
    report = vaekit.export_onnx(model, tmp_path, exporter="dynamo", n_check=7)
    assert report.exporter == "dynamo" and report.images_source == "random"
    assert report.max_abs_diff <= TOLERANCE
    _check_against_pytorch(model, report, torch.rand(7, 1, 28, 28))


def test_a_mismatch_keeps_no_file(tmp_path):
    model = vaekit.build_model("fashion28", latent_dim=2)
    with pytest.raises(ExportMismatchError, match="differs from PyTorch"):
        vaekit.export_onnx(model, tmp_path, n_check=2, tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_the_differences(fashion_run, tmp_path, capsys):
    out = tmp_path / "exported"
    assert main(["export", str(fashion_run), "-o", str(out), "--limit", "8"]) == 0
    printed = capsys.readouterr().out
    assert "encoder max abs diff" in printed and "decoder max abs diff" in printed, printed
    assert "8 images from dataset fashion" in printed, printed
    assert str(out / "encoder.onnx") in printed.split() and str(out / "decoder.onnx") in printed.split()
    for line in printed.splitlines():
        if "max abs diff:" in line:
            assert float(line.split("max abs diff:")[1].split()[0]) <= TOLERANCE, line


def test_cli_bad_run_is_one_line(tmp_path, capsys):
    assert main(["export", str(tmp_path / "no-such-run"), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error: "), err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_run_directory_as_output(fashion_run, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(fashion_run, copy)
    before = _tree_digest(copy)
    assert main(["export", str(fashion_run), "-o", str(copy)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a run's files" in err[0], err
    assert _tree_digest(copy) == before and not (copy / "encoder.onnx").exists()


@pytest.mark.parametrize("opset", ["6", "99"])
def test_cli_an_opset_torch_cannot_write_is_one_line(fashion_run, tmp_path, capsys, opset):
    assert main(["export", str(fashion_run), "-o", str(tmp_path / "out"), "--opset", opset]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"vaekit: error: --opset must be 7 to 20 (what torch's exporters write), got {opset}"], err
    assert not (tmp_path / "out").exists()


def test_cli_refuses_to_overwrite_a_foreign_onnx_file(fashion_run, tmp_path, capsys):
    (tmp_path / "encoder.onnx").write_bytes(b"not ours")
    assert main(["export", str(fashion_run), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an ONNX file vaekit wrote" in err[0], err
    assert (tmp_path / "encoder.onnx").read_bytes() == b"not ours"


def test_missing_onnx_is_one_line_with_the_install_hint(fashion_run, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    assert main(["export", str(fashion_run), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'vaekit[onnx]'" in err[0], err
