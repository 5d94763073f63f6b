"""Speed settings chosen by measurement (vaekit.training.tuning)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vaekit.errors import ConfigError
from vaekit.models.vae import build_model, to_channels_last
from vaekit.training import tuning
from vaekit.training.tuning import Candidate, SpeedChoice, choose_speed, compile_options, fused_options, \
    measure_rates, precision_options

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def model():
    return build_model("fashion28")


def test_explicit_settings_are_used_as_given_without_measuring(model, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "measure_rates", lambda *a, **k: pytest.fail("measured"))
    choice = choose_speed(model, CPU, "bf16", "off", 32, 10**6, fused="on", cache_dir=tmp_path)
    assert (choice.precision, choice.compile, choice.fused, choice.how) == ("bf16", "off", True, "given")


def test_a_run_too_short_to_measure_takes_the_rule(model, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "measure_rates", lambda *a, **k: pytest.fail("measured"))
    choice = choose_speed(model, CPU, "auto", "auto", 32, total_steps=5, cache_dir=tmp_path)
    assert (choice.precision, choice.compile, choice.fused, choice.how) == ("fp32", "off", False, "rule")


def test_fp16_on_a_cpu_is_refused_before_any_work(model, tmp_path):
    with pytest.raises(ConfigError) as error:
        choose_speed(model, CPU, "fp16", "auto", 32, 10**6, cache_dir=tmp_path)
    assert error.value.param == "precision"


def test_cuda_graphs_on_a_cpu_are_refused_before_any_work(model, tmp_path, fashion_mnist_dir, capsys):
    with pytest.raises(ConfigError) as error:
        choose_speed(model, CPU, "fp32", "cudagraphs", 32, 10**6, cache_dir=tmp_path)
    assert error.value.param == "compile" and "needs a CUDA GPU" in str(error.value)
    from vaekit.cli import main

    code = main(["train", "--device", "cpu", "--compile", "cudagraphs", "--data-dir", str(fashion_mnist_dir),
                 "--epochs", "1", "--train-limit", "64", "--out", str(tmp_path / "run")])
    assert code not in (0, None)
    assert not (tmp_path / "run").exists()  # refused before anything was written
    assert capsys.readouterr().err.strip().splitlines() == [
        "vaekit: error: --compile cudagraphs needs a CUDA GPU, not cpu; use on or off"]


def test_measurement_times_real_steps_keeps_the_fastest_and_caches_it(model, tmp_path, monkeypatch):
    calls = []
    real = tuning.measure_rates

    def spy(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **{**kwargs, "rounds": 1, "steps": 1, "warmup": 1})

    monkeypatch.setattr(tuning, "measure_rates", spy)
    before = [p.detach().clone() for p in model.parameters()]
    rng = torch.get_rng_state()
    first = choose_speed(model, CPU, "auto", "auto", 8, total_steps=100, cache_dir=tmp_path, measure=True)
    best = max(("fp32", "bf16"), key=first.images_per_s.get)
    # Both precisions eager and unfused, then the fused optimizer with the faster precision.
    assert first.how == "measured" and calls == [[Candidate("fp32"), Candidate("bf16")], [Candidate(best, fused=True)]]
    assert set(first.images_per_s) == {"fp32", "bf16", f"{best}+fused"}
    assert all(v > 0 for v in first.images_per_s.values())
    # The reported rates are rounded to 0.1 images/s: the choice is one of the fastest (a tie can go either way).
    chosen = Candidate(first.precision, first.compile, first.fused).name
    assert first.images_per_s[chosen] == max(first.images_per_s.values()) and first.compile == "off"
    # The model and the global RNG are untouched: measurement runs on copies.
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert torch.equal(rng, torch.get_rng_state())
    # The cache answers next time, even for a short run, with the same choice.
    again = choose_speed(model, CPU, "auto", "auto", 8, total_steps=5, cache_dir=tmp_path)
    assert again.how == "cached" and (again.precision, again.fused) == (first.precision, first.fused)
    assert len(calls) == 2
    saved = json.loads((tmp_path / tuning.CACHE_FILE).read_text())
    assert first.key in saved and "torch " + torch.__version__ in first.key
    # Another batch size is another key, measured again.
    assert choose_speed(model, CPU, "auto", "auto", 4, 100, cache_dir=tmp_path, measure=True).how == "measured"


def test_a_damaged_cache_only_costs_a_measurement(model, tmp_path, monkeypatch):
    (tmp_path / tuning.CACHE_FILE).write_text("{not json")
    monkeypatch.setattr(tuning, "measure_rates", lambda m, d, b, runs, *a, **k: ({"fp32": 10.0, "bf16": 20.0}, 0.0))
    choice = choose_speed(model, CPU, "auto", "off", 8, 10**4, fused="off", cache_dir=tmp_path, measure=True)
    assert (choice.precision, choice.how) == ("bf16", "measured")
    assert json.loads((tmp_path / tuning.CACHE_FILE).read_text())[choice.key]["images_per_s"]["bf16"] == 20.0


@pytest.mark.parametrize("entry", ["fast", {"images_per_s": {"fp32": "fast"}}, {"images_per_s": {"fp32": 0}},
                                   {"images_per_s": {"fp32": 10.0}, "compile_seconds": -1}])
def test_a_damaged_cache_entry_only_costs_a_measurement(model, tmp_path, monkeypatch, entry):
    monkeypatch.setattr(tuning, "measure_rates", lambda m, d, b, runs, *a, **k: ({"fp32": 10.0, "bf16": 20.0}, 0.0))
    key = tuning.speed_key(model, CPU, 8, True)
    (tmp_path / tuning.CACHE_FILE).write_text(json.dumps({key: entry}))
    choice = choose_speed(model, CPU, "auto", "off", 8, 10**4, fused="off", cache_dir=tmp_path)
    assert choice.key == key and (choice.precision, choice.how) == ("bf16", "measured")
    assert json.loads((tmp_path / tuning.CACHE_FILE).read_text())[key]["images_per_s"] == {"fp32": 10.0, "bf16": 20.0}


@pytest.mark.parametrize("compiled_rate, expected", [(400.0, "on"), (110.0, "off")])
def test_compile_is_chosen_only_when_its_gain_over_the_run_pays_for_compiling(
        model, tmp_path, monkeypatch, compiled_rate, expected):
    """100 img/s eager; compiling takes 60 s: worth it at 400 img/s over a long run, not at 110."""
    def fake(m, d, b, runs, *a, **k):
        rates = {"fp32": 100.0, "bf16": 50.0, "fp32+fused": 90.0, "fp32+on": compiled_rate}
        return {r.name: rates[r.name] for r in runs}, (60.0 if any(r.compile != "off" for r in runs) else 0.0)

    monkeypatch.setattr(tuning, "measure_rates", fake)
    steps = 2000  # 2000 x 10 images at 100 img/s: 200 s eager, longer than MIN_SECONDS_TO_COMPILE below
    monkeypatch.setattr(tuning, "MIN_SECONDS_TO_COMPILE", 100.0)
    choice = choose_speed(model, CPU, "auto", "auto", 10, steps, cache_dir=tmp_path, measure=True)
    assert (choice.precision, choice.fused, choice.compile) == ("fp32", False, expected)
    # Compile is tried with the fastest eager candidate only (fp32, unfused: 100 > 90 img/s).
    assert set(choice.images_per_s) == {"fp32", "bf16", "fp32+fused", "fp32+on"}
    assert choice.compile_seconds == 60.0


def test_a_short_run_never_pays_for_measuring_compile(model, tmp_path, monkeypatch):
    def fake(m, d, b, runs, *a, **k):
        assert all(r.compile == "off" for r in runs), "compile measured for a short run"
        return {r.name: 100.0 for r in runs}, 0.0

    monkeypatch.setattr(tuning, "measure_rates", fake)
    assert choose_speed(model, CPU, "auto", "auto", 10, 500, cache_dir=tmp_path, measure=True).compile == "off"


def test_candidates_per_device():
    assert precision_options("auto", CPU) == ["fp32", "bf16"] and precision_options("bf16", CPU) == ["bf16"]
    assert precision_options("auto", torch.device("mps")) == ["fp32"]
    assert compile_options("auto", CPU) == ["on"] and compile_options("off", CPU) == []
    assert compile_options("cudagraphs", CPU) == ["cudagraphs"]
    assert compile_options("auto", torch.device("cuda")) == ["on", "cudagraphs"]
    assert fused_options("auto", CPU) == [False, True] and fused_options("on", CPU) == [True]
    assert Candidate("bf16", "on", True).name == "bf16+on+fused" and Candidate("fp32").name == "fp32"


def test_compiled_candidates_really_compile_and_train(tmp_path):
    """The compile path (the default on GPUs when it measures faster) runs here on the CPU too."""
    small = build_model("fashion28")
    rates, seconds = measure_rates(small, CPU, 4, [Candidate("fp32", "on", True)], rounds=1, steps=1, warmup=1)
    assert rates["fp32+on+fused"] > 0 and seconds > 0


def test_single_channel_convolutions_stay_nchw_the_rest_goes_channels_last():
    model = to_channels_last(build_model("fashion28"))
    first, second = model.encoder[0], model.encoder[2]
    assert first.in_channels == 1 and first.weight.is_contiguous()
    assert second.weight.is_contiguous(memory_format=torch.channels_last) and not second.weight.is_contiguous()


def test_training_records_the_choice_in_config_json(tmp_path, fashion_mnist_dir):
    import vaekit

    result = vaekit.train(out=tmp_path / "run", data_dir=str(fashion_mnist_dir), epochs=1, train_limit=64,
                          test_limit=32, batch_size=32, progress=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    speed = config["resolved"]["speed"]
    assert SpeedChoice(**speed).how in ("rule", "cached", "measured")
    assert config["resolved"]["precision"] == speed["precision"] and config["resolved"]["compile"] == speed["compile"]
    assert isinstance(speed["fused"], bool)


def test_cpus_with_one_model_name_are_told_apart_by_their_bf16_instructions():
    # Sessions land on "Intel(R) Xeon(R) Processor"s with and without AMX: bf16 is 3x faster on one and slower
    # on the other, so a speed measurement must not be reused across them.
    def cpuinfo(flags: str) -> str:
        return "".join(f"processor\t: {n}\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu {flags}\n\n"
                       for n in range(2))

    assert tuning.cpu_name(cpuinfo("avx512f amx_bf16 amx_tile avx512_bf16")) == \
        "Intel(R) Xeon(R) Processor (AMX, AVX512-BF16)"
    assert tuning.cpu_name(cpuinfo("avx512f avx512_bf16")) == "Intel(R) Xeon(R) Processor (AVX512-BF16)"
    assert tuning.cpu_name(cpuinfo("avx2")) == "Intel(R) Xeon(R) Processor"
    assert tuning.cpu_name("") != ""  # no /proc/cpuinfo: the platform's processor name


def test_the_suite_never_writes_the_users_speed_cache():
    # conftest points the caches at a temporary folder, so measurements taken under the suite's load stay there.
    assert not str(tuning.cache_root()).startswith(str(Path.home() / ".cache"))
    assert "vaekit-tests-cache-" in str(tuning.cache_root())
