"""benchmarks/family_convergence.py: a family grown in rounds on the real Fashion-MNIST, and its numbers-only page."""

from __future__ import annotations

import json

import pytest
from conftest import load_script


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/family_convergence.py")


def tiny(data_dir, out, results, max_epochs):
    return ["--dataset", "fashion-mnist", "--arch", "fashion28", "--betas", "1", "4", "--data-dir", str(data_dir),
            "--train-limit", "256", "--test-limit", "256", "--round-epochs", "1", "--max-epochs", str(max_epochs),
            "--patience", "1", "--device", "cpu", "--train-settings", "init=pytorch,ema_decay=0.9",
            "--out", str(out), "--results", str(results)]


@pytest.fixture(scope="module")
def grown(script, fashion_mnist_dir, tmp_path_factory):
    """Two members grown to 1 epoch, then a second call extends them to 2."""
    tmp = tmp_path_factory.mktemp("family-convergence")
    results = tmp / "family.json"
    assert script.main(tiny(fashion_mnist_dir, tmp / "family", results, 1)) == 0
    first = json.loads(results.read_text())
    assert script.main(tiny(fashion_mnist_dir, tmp / "family", results, 2)) == 0
    return tmp, first, json.loads(results.read_text())


def test_rounds_extend_every_member_and_keep_its_history(grown):
    _, first, record = grown
    assert [(m["name"], m["epochs"]) for m in first["members"]] == [("vae_model_fashion28_w1", 1),
                                                                  ("vae_model_fashion28_w4", 1)]
    for member in record["members"]:
        assert member["epochs"] == 2
        assert [h["epoch"] for h in member["history"]] == [1, 2]
        best = min(member["history"], key=lambda h: h["elbo"])
        assert member["best_epoch"] == best["epoch"] and member["best"]["elbo"] == best["elbo"]
        assert member["converged"] == (2 - best["epoch"] >= 1)
        final = member["history"][-1]
        assert member["final"]["elbo"] == pytest.approx(final["recon"] + final["kl"], abs=0.01)
    # No rate ordering is asserted: after these 8 steps the members' test KLs differ by noise (measured: 0.24
    # and 0.29 nats at beta 1 and 4 with these settings); test_family checks that a larger beta buys a lower rate.


def test_meta_names_the_command_machine_and_accumulates_wall_time(grown):
    _, first, record = grown
    meta = record["meta"]
    assert "--max-epochs 2" in meta["command"] and "--train-limit 256" in meta["command"]
    assert meta["train_images"] == 256 and meta["test_images"] == 256 and meta["latent_dim"] == 2
    assert meta["settings"]["batch_size"] == 64 and meta["machine"] and meta["torch"]
    # --train-settings reach every member, the command that continues the family, and the page.
    assert (meta["settings"]["init"], meta["settings"]["ema_decay"]) == ("pytorch", 0.9)
    assert "--train-settings init=pytorch,ema_decay=0.9" in meta["command"]
    assert meta["wall_seconds"] > first["meta"]["wall_seconds"]
    assert meta["train_seconds"] == pytest.approx(sum(m["train_seconds"] for m in record["members"]), abs=0.2)


def test_the_page_is_rendered_from_the_json_alone(script, grown):
    tmp, _, record = grown
    page = (tmp / "family.md").read_text()
    assert "| 4 | `vae_model_fashion28_w4` | 2 |" in page
    assert "init pytorch, ema decay 0.9, grad clip 1000.0, seed 0" in page  # auto, as fashion28 resolves it
    assert "from `family.json`" in page and "CelebA" not in page  # the licence note is for CelebA only
    assert f"{record['members'][0]['final']['elbo']:.1f}" in page
    (tmp / "family.md").unlink()
    assert script.main(["--render-only", "--results", str(tmp / "family.json")]) == 0
    assert (tmp / "family.md").read_text() == page
    # A record written before ema_decay existed: its runs trained without averaging, and the page says so.
    del record["meta"]["settings"]["ema_decay"]
    assert "init pytorch, grad clip 1000.0, seed 0, ema decay none;" in script.render_markdown(record)


def test_bad_options_are_one_line_errors(script, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        script.main(["--round-epochs", "0", "--out", str(tmp_path / "f")])
    assert stop.value.code == 2 and "--round-epochs: must be at least 1" in capsys.readouterr().err
    code = script.main(["--data-dir", str(tmp_path / "missing"), "--out", str(tmp_path / "f"),
                        "--results", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and str(tmp_path / "missing") in err[0], err
    assert not (tmp_path / "r.json").exists()
    with pytest.raises(SystemExit, match="^family_convergence: error: --train-settings: .*ema_decay.*between 0 and 1"):
        script.main(["--train-settings", "ema_decay=2", "--out", str(tmp_path / "g"), "--results",
                     str(tmp_path / "r.json")])
    assert not (tmp_path / "g").exists() and not (tmp_path / "r.json").exists()


def test_members_at_different_epochs_are_compared_at_a_shared_epoch(script, grown):
    _, _, record = grown
    behind = record["members"][1]
    behind["history"] = behind["history"][:1]
    behind["epochs"] = 1
    page = script.render_markdown(record)
    assert "at epoch 1, which every member has reached" in page
    first_at_1 = record["members"][0]["history"][0]
    assert f"| 1 | {first_at_1['elbo']:,.1f} | {first_at_1['recon']:,.1f} | {first_at_1['kl']:,.1f} |" in page
    assert "**Rate against beta** (epoch 1)" in page


def test_the_continue_command_pins_settings_whose_default_changed_since(script):
    """A family trained without averaging continues only with --train-settings ema_decay=none once 0.999 is the default."""
    base = "python benchmarks/family_convergence.py --arch nn3-128 --batch-size 64 --out build/f"
    trained = {"lr_schedule": "constant", "recon": "bernoulli", "init": "vaekit", "ema_decay": None}
    assert script.continuation_command(base, "nn3-128", trained) == base + " --train-settings ema_decay=none"
    # Settings the command already pins are kept; a setting that is still the default adds nothing.
    given = base + " --train-settings lr_schedule=cosine"
    assert script.continuation_command(given, "nn3-128", {**trained, "lr_schedule": "cosine"}) == \
        base + " --train-settings lr_schedule=cosine,ema_decay=none"
    assert script.continuation_command(base, "nn3-128", {**trained, "ema_decay": 0.999}) == base
    # On fashion28 "auto" is PyTorch's init: a family trained with vaekit's must say so.
    assert script.continuation_command(base, "fashion28", {**trained, "ema_decay": 0.999}) == \
        base + " --train-settings init=vaekit"
