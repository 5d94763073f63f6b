"""benchmarks/pythae_reference.py: the vaekit side on real data, variants, and the table it prints.

pythae itself lives in its own virtualenv (an optional benchmark dependency, like Keras), so here
its interpreter is missing on purpose and the output must say that its rows were left out.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import load_script

from vaekit.training.config import TrainConfig

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "pythae_reference.py"


@pytest.fixture(scope="module")
def reference():
    return load_script("benchmarks/pythae_reference.py")


def test_variants_become_typed_train_config_overrides(reference):
    assert reference.parse_variant("default") == {}
    assert reference.parse_variant("init=pytorch,precision=fp32,lr=0.002,kl-warmup-epochs=1") == {
        "init": "pytorch", "precision": "fp32", "lr": 0.002, "kl_warmup_epochs": 1.0}
    # Optional numbers (default None) parse by the field's declared type.
    assert reference.parse_variant("ema_decay=0.999,grad_clip=2,batch_size=64") == {
        "ema_decay": 0.999, "grad_clip": 2.0, "batch_size": 64}
    # 'none' switches an optional setting off, and only an optional one.
    assert reference.parse_variant("ema_decay=none,init=vaekit") == {"ema_decay": None, "init": "vaekit"}
    with pytest.raises(SystemExit, match=r"'batch_size=none': batch_size takes a number \(int\)"):
        reference.parse_variant("batch_size=none")
    with pytest.raises(SystemExit, match="'colour=red' is not NAME=VALUE"):
        reference.parse_variant("colour=red")
    with pytest.raises(SystemExit, match=r"'lr=fast': lr takes a number \(float\)"):
        reference.parse_variant("lr=fast")


def test_vaekit_rows_summary_and_missing_pythae(reference, fashion_mnist_dir, tmp_path, capsys):
    out = tmp_path / "reference.json"
    result = reference.main(["--epochs", "1", "--seeds", "0", "1", "--train-limit", "256", "--test-limit", "200",
                             "--variants", "default", "--data-dir", str(fashion_mnist_dir),
                             "--pythae-python", str(tmp_path / "no-such-python"), "--json", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert out.with_suffix(".md").read_text() == reference.markdown(result)
    assert [(row["trainer"], row["seed"]) for row in result["rows"]] == [("vaekit default", 0), ("vaekit default", 1)]
    elbos = [row["test_elbo"] for row in result["rows"]]
    assert all(200 < elbo < 800 for elbo in elbos) and elbos[0] != elbos[1]
    assert result["rows"][0]["test_images"] == 200 and result["meta"]["train_images"] == 256
    (summary,) = result["summary"]
    assert summary["test_elbo_mean"] == pytest.approx(sum(elbos) / 2, abs=0.01) and summary["test_elbo_sd"] > 0
    assert "no-such-python not found" in result["notes"][0]
    printed = capsys.readouterr().out
    # The precision is whatever `auto` picks on this CPU; the rest of the row is fixed.
    defaults = TrainConfig()
    averaging = f", EMA {defaults.ema_decay:g}" if defaults.ema_decay else ""
    clipping = f", clip {defaults.effective_grad_clip:g}" if defaults.effective_grad_clip else ""
    assert re.search(rf"\| vaekit default \| precision \w+, init {defaults.effective_init}{averaging}{clipping} \| 2 \| "
                     rf"{summary['test_elbo_mean']:.2f} ±", printed)
    assert "pythae rows left out" in printed


def test_a_second_call_keeps_earlier_rows_and_adds_only_new_variants(reference, fashion_mnist_dir, tmp_path):
    out = tmp_path / "reference.json"
    shared = ["--epochs", "1", "--seeds", "0", "--train-limit", "128", "--test-limit", "100",
              "--data-dir", str(fashion_mnist_dir), "--pythae-python", str(tmp_path / "none"), "--json", str(out)]
    first = reference.main([*shared, "--variants", "default"])
    second = reference.main([*shared, "--variants", "default", "lr_schedule=cosine"])
    assert second["rows"][0] == first["rows"][0]  # kept as measured, timing included
    assert [row["trainer"] for row in second["rows"]] == ["vaekit default", "vaekit lr_schedule=cosine"]
    assert second["meta"]["reused_rows"] == 1 and "1 of 2 rows were kept" in reference.markdown(second)
    with pytest.raises(SystemExit, match="holds results with other epochs"):
        reference.main([*shared, "--variants", "default"][:1] + ["2", *shared[2:], "--variants", "default"])


def test_a_json_that_is_not_its_results_is_one_line(reference, tmp_path):
    out = tmp_path / "other.json"
    out.write_text('{"rows": []}')
    with pytest.raises(SystemExit, match="other.json: not a results file of this script"):
        reference.main(["--epochs", "1", "--seeds", "0", "--variants", "default", "--json", str(out)])
