"""Outputs that land on what must be kept, concurrent writers, and the command line's own errors.

Every case ends in one ``vaekit: error:`` line, exit status 2, and nothing lost.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import vaekit
from vaekit.cli import main
from vaekit.guard import LOCK_FILE, writer_lock

QUICK = ["--dataset", "shapes", "--epochs", "1", "--train-limit", "128", "--test-limit", "32", "--batch-size", "64",
         "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("edges") / "run"
    assert main(["train", *QUICK, "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != LOCK_FILE}


def _refused(capsys, argv, *expected) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("vaekit: error: ") and "\n" not in err and "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


# ----------------------------------------------------------------------------
# Outputs that land on what must be kept


@pytest.mark.parametrize("command,option,name", [
    (["evaluate", "--iw-samples", "1", "--iw-images", "1"], "-o", "config.json"),
    (["evaluate", "--iw-samples", "1", "--iw-images", "1"], "-o", "model.safetensors"),
    (["denoise", "--limit", "4"], "-o", "checkpoint.pt"),
    (["anomaly", "--images", "shapes:test", "--limit", "4", "--iw-samples", "1"], "-o", "metrics.csv"),
    (["anomaly", "--images", "shapes:test", "--limit", "4", "--iw-samples", "1"], "--figure", "metrics.csv"),
    (["sample"], "-o", "config.json"),
    (["latent-map", "--limit", "20"], "-o", "model.safetensors"),
    (["report", "--limit", "20"], "-o", "metrics.csv"),
])
def test_no_output_option_replaces_a_file_of_the_run(run, capsys, command, option, name):
    before = _snapshot(run)
    _refused(capsys, [command[0], run, *command[1:], option, run / name], name)
    assert _snapshot(run) == before


def test_outputs_are_refused_before_any_work(run, tmp_path, capsys, monkeypatch):
    import vaekit.analysis.bounds
    import vaekit.analysis.denoise
    import vaekit.analysis.embedding

    def work(*args, **kwargs):
        raise AssertionError("the work started before the output was checked")

    for module, name in ((vaekit.analysis.bounds, "evaluate_run"), (vaekit.analysis.denoise, "denoise_benchmark"),
                         (vaekit.analysis.embedding, "embed_dataset")):
        monkeypatch.setattr(module, name, work)
    _refused(capsys, ["evaluate", run, "--iw-samples", "1000", "-o", run / "metrics.csv"], "metrics.csv")
    _refused(capsys, ["denoise", run, "--figure", run / "model.safetensors"], "model.safetensors")
    # embed writes two files: the second (the probes' JSON) is checked before the first is written.
    notes = tmp_path / "e_quality.json"
    notes.write_text('["mine"]')  # not a JSON object: not a vaekit output
    _refused(capsys, ["embed", run, "--limit", "4", "-o", tmp_path / "e.npz"], "e_quality.json")
    assert not (tmp_path / "e.npz").exists() and notes.read_text() == '["mine"]'


def test_files_vaekit_did_not_write_are_never_overwritten(run, tmp_path, capsys):
    photo, notes, data = tmp_path / "photo.png", tmp_path / "notes.csv", tmp_path / "data.json"
    Image.new("RGB", (8, 8), (200, 10, 10)).save(photo)
    notes.write_text("name,phone\nada,123\n")
    shutil.copy(run / "config.json", data)  # a run's config under another name is still not an output
    originals = {p: p.read_bytes() for p in (photo, notes, data)}
    _refused(capsys, ["sample", run, "-o", photo], "photo.png", "not a PNG that vaekit wrote")
    _refused(capsys, ["embed", run, "--no-probe", "--limit", "4", "-o", notes], "notes.csv")
    _refused(capsys, ["evaluate", run, "--iw-samples", "1", "--iw-images", "1", "-o", data], "data.json")
    _refused(capsys, ["sample", run, "-o", tmp_path / "figure.jpg"], "figure.jpg")
    assert {p: p.read_bytes() for p in originals} == originals


def test_directories_and_paths_under_a_file_are_refused(run, tmp_path, capsys):
    (tmp_path / "folder.png").mkdir()
    plain = tmp_path / "plain.txt"
    plain.write_text("keep me")
    _refused(capsys, ["sample", run, "-o", tmp_path / "folder.png"], "folder.png")
    _refused(capsys, ["sample", run, "-o", plain / "x.png"], "plain.txt", "is a file")
    _refused(capsys, ["evaluate", run, "--iw-samples", "1", "-o", plain / "sub" / "e.json"], "plain.txt")
    _refused(capsys, ["train", *QUICK, "--out", plain / "run"], "plain.txt")
    assert plain.read_text() == "keep me"


def test_vaekit_may_replace_its_own_outputs(run, tmp_path, capsys):
    for _ in range(2):  # the second time replaces what the first wrote
        assert main(["sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png")]) == 0
        assert main(["evaluate", str(run), "--iw-samples", "1", "--iw-images", "2", "-o",
                     str(tmp_path / "e.json")]) == 0
        assert main(["embed", str(run), "--no-probe", "--limit", "8", "-o", str(tmp_path / "z.csv")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["n_images"] > 0


def test_a_json_object_without_vaekits_mark_is_not_an_output(run, tmp_path, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text('{"theme": "dark"}')  # anyone's JSON object: not replaceable
    _refused(capsys, ["evaluate", run, "--iw-samples", "1", "--iw-images", "1", "-o", settings], "settings.json",
             "not a JSON that vaekit wrote")
    assert settings.read_text() == '{"theme": "dark"}'
    assert main(["evaluate", str(run), "--iw-samples", "1", "--iw-images", "2", "-o", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())["generator"] == "vaekit"


def test_a_killed_write_leaves_nothing_that_blocks_the_next_run(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".config.json.x1y2.tmp").write_text("{")  # what a write killed by SIGKILL leaves
    (out / LOCK_FILE).write_text("")                  # and a lock nobody holds
    assert main(["train", *QUICK, "--out", str(out)]) == 0
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    (out / "notes.txt").write_text("mine")
    _refused(capsys, ["train", *QUICK, "--out", out / ".." / "run"], "already holds a run")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    _refused(capsys, ["train", *QUICK, "--out", other], "not empty")
    assert (other / "notes.txt").read_text() == "mine"


def test_rerunning_a_family_never_deletes_a_member_it_finds(tmp_path, capsys):
    family = tmp_path / "family"
    argv = ["train-family", *QUICK, "--betas", "1", "2", "--out", str(family)]
    assert main(argv) == 0
    member = family / "vae_model_fashion28_w2"
    # An unfinished member without its checkpoint (copied, or killed early): it used to be deleted and retrained.
    config = json.loads((member / "config.json").read_text())
    (member / "config.json").write_text(json.dumps({**config, "status": "interrupted"}))
    (member / "checkpoint.pt").unlink()
    before = _snapshot(member)
    capsys.readouterr()
    _refused(capsys, argv, "vae_model_fashion28_w2", "nothing was deleted")
    assert _snapshot(member) == before


# ----------------------------------------------------------------------------
# Concurrent writers


def test_a_second_writer_of_a_run_is_refused_while_the_first_holds_it(run, tmp_path, capsys):
    before = _snapshot(run)
    with writer_lock(run):  # as a training process holds it
        _refused(capsys, ["train", "--resume", run, "--epochs", "2", "--quiet"], "another vaekit process")
        with pytest.raises(vaekit.RunDirError, match="another vaekit process"):
            vaekit.train(out=run, resume=True, epochs=2, progress=False)
    assert _snapshot(run) == before
    assert main(["train", "--resume", str(run), "--epochs", "2", "--quiet"]) == 0  # free again


def test_two_trainings_into_one_new_directory_do_not_both_write(tmp_path, capsys):
    out = tmp_path / "shared"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from vaekit.guard import writer_lock\n"
        f"with writer_lock({str(out)!r}):\n    print('held', flush=True); time.sleep(30)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        _refused(capsys, ["train", *QUICK, "--out", out], "another vaekit process")
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()
    assert main(["train", *QUICK, "--out", str(out)]) == 0  # the lock died with its process


def test_a_family_being_written_is_refused_to_a_second_process(tmp_path, capsys):
    family = tmp_path / "family"
    with writer_lock(family, what="family"):
        _refused(capsys, ["train-family", *QUICK, "--betas", "1", "--out", family], "another vaekit process",
                 "family")


# ----------------------------------------------------------------------------
# The command line's own errors


@pytest.mark.parametrize("argv,expected", [
    (["nope"], "invalid choice: 'nope'"),
    (["train", "--epochs", "abc"], "--epochs"),
    (["evaluate"], "required"),
    (["sample", "RUN", "--precision", "fp8"], "invalid choice: 'fp8'"),
    (["sample", "RUN", "-n", "0"], "-n"),
    (["train", "--no-such-option"], "unrecognized arguments"),
    (["traverse", "RUN", "--span", "nan"], "--span: must be a finite number"),
    (["arithmetic", "RUN", "--from", "a", "--to", "b", "--strength", "inf"], "--strength: must be a finite number"),
    (["denoise", "RUN", "--mask-area", "-inf"], "--mask-area"),
    (["attribute", "RUN", "--attr", "x", "--strengths", "1", "nan"], "--strengths"),
])
def test_parser_errors_are_one_line(capsys, argv, expected):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and err.startswith("vaekit: error: ") and "\n" not in err and expected in err
