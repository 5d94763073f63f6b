"""Options generated from config dataclasses, and library errors shown with the CLI's flags."""

from __future__ import annotations

import argparse
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import torch

import vaekit.cli
from vaekit.cli import build_parser, main
from vaekit.cli.options import (
    add_dataclass_options,
    add_runtime_options,
    command_parser,
    config_from_args,
    explicit_overrides,
    positive_int,
    translate_error,
)
from vaekit.errors import ConfigError, DataError, VaekitError
from vaekit.training.config import (
    TrainConfig,
    ema_and_clip_text,
    option_flag,
    options_since,
)

# A value other than the default for every TrainConfig field.
NON_DEFAULT = {
    "dataset": "shapes", "arch": "nn3-128", "latent_dim": 8, "beta": 2.5, "epochs": 3, "batch_size": 32, "lr": 0.01,
    "seed": 7, "kl_warmup_epochs": 2.0, "recon": "gaussian", "gaussian_sigma": 0.2, "init": "keras",
    "grad_clip": 1.5, "exclude_classes": ["Bag", "Shirt"], "train_limit": 100, "test_limit": 50,
    "data_dir": "/data", "device": "cpu", "precision": "bf16", "channels_last": False, "compile": "on",
    "fused_optimizer": "on", "data_placement": "stream", "memory_budget_gb": 2.0, "eval_batch_size": 64,
    "log": "tensorboard", "lr_schedule": "cosine", "ema_decay": 0.99,
}

# Every flag `vaekit train` had before the options were generated, with its dest.
TRAIN_FLAGS = {
    "--dataset": "dataset", "--arch": "arch", "--latent-dim": "latent_dim", "--beta": "beta", "--epochs": "epochs",
    "--batch-size": "batch_size", "--lr": "lr", "--seed": "seed", "--kl-warmup": "kl_warmup_epochs",
    "--recon": "recon", "--init": "init", "--grad-clip": "grad_clip", "--exclude-classes": "exclude_classes",
    "--train-limit": "train_limit", "--test-limit": "test_limit", "--data-dir": "data_dir", "--device": "device",
    "--precision": "precision", "--no-channels-last": "channels_last", "--compile": "compile",
    "--gaussian-sigma": "gaussian_sigma", "--eval-batch-size": "eval_batch_size",
    "--fused-optimizer": "fused_optimizer", "--data-placement": "data_placement",
    "--memory-budget-gb": "memory_budget_gb",
}


def _argv(values: dict) -> list[str]:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    argv = []
    for name, value in values.items():
        flag = option_flag(fields[name])
        if isinstance(value, bool):
            argv.append(flag)
        elif isinstance(value, list):
            argv += [flag, *value]
        else:
            argv += [flag, str(value)]
    return argv


def _parse(command: str, *argv: str) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = build_parser()
    args = parser.parse_args([command, *argv])
    return args, command_parser(parser, args)


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error: "), err
    return err[0].removeprefix("vaekit: error: ")


# ----------------------------------------------------------------------------
# TrainConfig <-> vaekit train


def test_every_field_differs_from_its_default_here():
    # A new TrainConfig field gets an option without more code; add it to NON_DEFAULT to test it here.
    assert set(NON_DEFAULT) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert all(getattr(TrainConfig(), name) != value for name, value in NON_DEFAULT.items())


@pytest.mark.parametrize("command", ["train", "train-family"])
def test_each_field_is_accepted_by_its_flag_and_round_trips(command):
    args, _ = _parse(command, *_argv(NON_DEFAULT), "--out", "somewhere")
    assert config_from_args(TrainConfig, args) == TrainConfig(**NON_DEFAULT)
    assert explicit_overrides(TrainConfig, args) == NON_DEFAULT


def test_without_options_the_config_is_the_default_one():
    args, _ = _parse("train")
    assert config_from_args(TrainConfig, args) == TrainConfig()
    assert explicit_overrides(TrainConfig, args) == {}


def test_the_flags_keep_their_spelling_and_dests():
    _, parser = _parse("train")
    dests = {option: action.dest for action in parser._actions for option in action.option_strings}
    assert {flag: dests.get(flag) for flag in TRAIN_FLAGS} == TRAIN_FLAGS
    exclude = next(a for a in parser._actions if a.dest == "exclude_classes")
    assert exclude.nargs == "*" and exclude.metavar == "CLASS"


def test_no_channels_last_and_kl_warmup():
    args, _ = _parse("train", "--no-channels-last", "--kl-warmup", "2")
    config = config_from_args(TrainConfig, args)
    assert config.channels_last is False and config.kl_warmup_epochs == 2.0
    assert config_from_args(TrainConfig, _parse("train")[0]).channels_last is True


def test_none_switches_an_optional_number_off_and_other_text_is_refused(capsys):
    args, _ = _parse("train", "--ema", "None", "--grad-clip", "none", "--memory-budget-gb", "1.5")
    config = config_from_args(TrainConfig, args)
    assert (config.ema_decay, config.grad_clip, config.memory_budget_gb) == (None, None, 1.5)
    assert explicit_overrides(TrainConfig, args) == {"ema_decay": None, "grad_clip": None, "memory_budget_gb": 1.5}
    with pytest.raises(SystemExit) as exit_info:
        _parse("train", "--ema", "off")
    assert exit_info.value.code == 2 and "--ema: invalid float value: 'off'" in capsys.readouterr().err


def test_exclude_classes_takes_several_values_and_never_shares_the_default_list():
    args, _ = _parse("train", "--exclude-classes", "Bag", "Sneaker")
    assert config_from_args(TrainConfig, args).exclude_classes == ["Bag", "Sneaker"]
    first = config_from_args(TrainConfig, _parse("train")[0])
    first.exclude_classes.append("Bag")
    assert config_from_args(TrainConfig, _parse("train")[0]).exclude_classes == []


def test_choices_are_checked_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        _parse("train", "--recon", "l1")
    assert exit_info.value.code == 2 and "--recon" in capsys.readouterr().err


def test_an_option_given_with_its_default_value_still_counts_as_given():
    # `train --resume RUN --epochs 10` must extend a 3-epoch run to 10, although 10 is the default.
    args, _ = _parse("train", "--resume", "run", "--epochs", "10", "--quiet")
    assert explicit_overrides(TrainConfig, args) == {"epochs": 10}


def test_explicit_overrides_of_a_hand_made_namespace_compare_with_the_defaults():
    args = argparse.Namespace(**{**TrainConfig().to_dict(), "epochs": 4})
    assert explicit_overrides(TrainConfig, args) == {"epochs": 4}


def test_help_lists_each_option_once_with_help_and_default(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    raw = capsys.readouterr().out
    for flag in TRAIN_FLAGS:
        assert len(re.findall(rf"\[{re.escape(flag)}[ \]]", raw)) == 1, flag  # once in the usage
        assert len(re.findall(rf"^  {re.escape(flag)}(?=[ \n])", raw, re.MULTILINE)) == 1, flag  # once below
    out = " ".join(raw.split())
    assert "--epochs N training epochs (default: 10)" in out
    assert "--lr LR Adam learning rate (default: 0.001)" in out


def test_demo_exposes_a_subset_with_its_own_defaults():
    args, parser = _parse("demo")
    assert args.epochs == 3 and args.seed == 0 and args.data_dir is None
    assert not any("--beta" in action.option_strings for action in parser._actions)
    config = vaekit.cli.train_config_from_args(args, latent_dim=2)
    assert config.epochs == 3 and config.latent_dim == 2 and config.dataset == "fashion-mnist"


def test_train_family_hides_beta_and_refuses_it(tmp_path, capsys):
    _, parser = _parse("train-family", "--out", "x")
    assert next(a for a in parser._actions if a.dest == "beta").help == argparse.SUPPRESS
    assert main(["train-family", "--beta", "1", "--out", str(tmp_path / "f"), "--quiet"]) == 2
    assert _error_line(capsys).startswith("--beta: use --betas")


# ----------------------------------------------------------------------------
# Any dataclass


@dataclass
class Toy:
    name: str  # no default: a required option
    size: int = 3
    ratio: float | None = None
    colour: str = field(default="red", metadata={"help": "the colour", "choices": ("red", "blue")})
    tags: list[str] = field(default_factory=list)
    mode: Literal["fast", "slow"] = "fast"
    where: Path = field(default=Path("."), metadata={"flag": "--dir", "metavar": "DIR", "help": "100% here"})
    verbose: bool = False
    cache: bool = True


def _toy_parser(cls=Toy, **kwargs) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="toy", exit_on_error=False)
    add_dataclass_options(parser, cls, **kwargs)
    return parser


def test_a_toy_dataclass_becomes_options():
    args = _toy_parser().parse_args(["--name", "n", "--size", "5", "--ratio", "0.5", "--colour", "blue", "--tags",
                                     "a", "b", "--mode", "slow", "--dir", "/tmp", "--verbose", "--no-cache"])
    assert config_from_args(Toy, args) == Toy("n", 5, 0.5, "blue", ["a", "b"], "slow", Path("/tmp"), True, False)
    assert config_from_args(Toy, _toy_parser().parse_args(["--name", "n"])) == Toy("n")


def test_a_new_field_is_an_option_without_other_code():
    Bigger = dataclasses.make_dataclass("Bigger", [("extra", int, field(default=5))], bases=(Toy,))
    args = _toy_parser(Bigger).parse_args(["--name", "n", "--extra", "7"])
    assert config_from_args(Bigger, args).extra == 7
    assert explicit_overrides(Bigger, args) == {"name": "n", "extra": 7}


def test_toy_help_types_and_required(capsys):
    parser = _toy_parser()
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parser.parse_args(["--name", "n", "--mode", "medium"])
    with pytest.raises((argparse.ArgumentError, SystemExit)):  # --name is required
        parser.parse_args([])
    parser.print_help()
    out = " ".join(capsys.readouterr().out.split())
    assert "--size SIZE (default: 3)" in out and "the colour (default: red)" in out
    assert "--dir DIR 100% here (default: .)" in out and "--no-cache" in out


def test_defaults_include_and_exclude():
    parser = _toy_parser(defaults={"size": 9}, exclude=("tags",))
    args = parser.parse_args(["--name", "n"])
    assert args.size == 9 and not hasattr(args, "tags")
    only = _toy_parser(include=("size", "verbose")).parse_args([])
    assert set(vars(only)) >= {"size", "verbose"} and not hasattr(only, "name")
    assert config_from_args(TrainConfig, argparse.Namespace(epochs=2)) == TrainConfig(epochs=2)
    with pytest.raises(ValueError, match="no field"):
        _toy_parser(exclude=("colur",))


def test_runtime_options():
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_runtime_options(parser)
    args = parser.parse_args([])
    assert (args.device, args.precision) == ("auto", "auto")
    assert parser.parse_args(["--device", "cuda:1", "--precision", "bf16"]).precision == "bf16"
    with pytest.raises((argparse.ArgumentError, SystemExit)):
        parser.parse_args(["--precision", "fp8"])


def test_the_shared_helpers_stay_importable_from_vaekit_cli():
    from vaekit.cli import add_output_option, options, output_path, positive_int

    assert (add_output_option, output_path, positive_int) == (options.add_output_option, options.output_path,
                                                              options.positive_int)


# ----------------------------------------------------------------------------
# Errors: parameters in the library, flags in the CLI


def _parser_with(*flags_and_dests) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    for flag, dest in flags_and_dests:
        parser.add_argument(flag, dest=dest)
    return parser


@pytest.mark.parametrize("message,param,shown", [
    ("epochs must be at least 1, got 0", "epochs", "--epochs must be at least 1, got 0"),
    ("kl_warmup_epochs must be zero or positive, got -1", "kl_warmup_epochs", "--kl-warmup must be zero or positive"),
    ("run/x: epochs cannot shrink", "epochs", "run/x: --epochs cannot shrink"),
    ("device: unknown device 'gpu'", "device", "--device: unknown device 'gpu'"),
    ("the run has 3 epochs", "epochs", "the run has 3 epochs"),  # not at the start: unchanged
    ("epochsx is odd", "epochs", "epochsx is odd"),  # another word
    ("epochs must be at least 1", None, "epochs must be at least 1"),  # no param
    ("limit must be at least 1", "limit", "limit must be at least 1"),  # no such option
])
def test_translate_error(message, param, shown):
    parser = _parser_with(("--epochs", "epochs"), ("--kl-warmup", "kl_warmup_epochs"), ("--device", "device"))
    assert translate_error(ConfigError(message, param=param), parser).startswith(shown)


def test_errors_keep_their_param():
    error = DataError("dataset is missing", param="dataset")
    assert error.param == "dataset" and str(error) == "dataset is missing"
    assert VaekitError("x").param is None and isinstance(ConfigError("x", param="lr"), VaekitError)
    import pickle

    assert pickle.loads(pickle.dumps(error)).param == "dataset"


@pytest.mark.parametrize("field_name,value", [("epochs", 0), ("latent_dim", 0), ("kl_warmup_epochs", -1),
                                              ("gaussian_sigma", 0.0), ("eval_batch_size", 0), ("recon", "l1")])
def test_the_library_names_the_parameter(field_name, value):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**{field_name: value}).validate()
    assert error.value.param == field_name and str(error.value).startswith(f"{field_name} ")


@pytest.mark.parametrize("argv,shown", [
    (["--epochs", "0"], "--epochs must be at least 1, got 0"),
    (["--kl-warmup", "-1"], "--kl-warmup must be zero or positive, got -1.0"),
    (["--latent-dim", "0"], "--latent-dim must be at least 1, got 0"),
    (["--gaussian-sigma", "0"], "--gaussian-sigma must be positive, got 0.0"),
    (["--eval-batch-size", "0"], "--eval-batch-size must be at least 1, got 0"),
    (["--arch", "resnet"], "--arch: unknown architecture 'resnet'; choose one of: fashion28"),
])
def test_bad_values_are_one_line_errors_naming_the_flag(tmp_path, capsys, argv, shown):
    assert main(["train", "--dataset", "shapes", "--quiet", "--out", str(tmp_path / "run"), *argv]) == 2
    assert _error_line(capsys).startswith(shown)
    assert not (tmp_path / "run").exists()


def test_a_bad_device_names_the_device_flag(tmp_path, capsys):
    assert main(["train", "--dataset", "shapes", "--quiet", "--out", str(tmp_path / "run"), "--device", "gpu7"]) == 2
    assert _error_line(capsys).startswith("--device: unknown device 'gpu7'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="fp16 is refused on the CPU only")
def test_fp16_on_the_cpu_names_the_precision_flag(tmp_path, capsys):
    argv = ["train", "--dataset", "shapes", "--device", "cpu", "--precision", "fp16", "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    assert _error_line(capsys).startswith("--precision fp16 is for GPUs")


def test_a_library_error_with_a_param_is_shown_with_the_flag(monkeypatch, tmp_path, capsys):
    def failing(args):
        raise ConfigError("kl_warmup_epochs must not exceed epochs", param="kl_warmup_epochs")

    monkeypatch.setattr(vaekit.cli, "cmd_train", failing)
    assert main(["train", "--out", str(tmp_path / "run")]) == 2
    assert _error_line(capsys) == "--kl-warmup must not exceed epochs"


def test_runtime_options_of_figure_commands_translate_too(tmp_path, capsys):
    assert main(["sample", str(tmp_path), "--device", "gpu7"]) == 2
    assert _error_line(capsys).startswith("--device: unknown device 'gpu7'")


def test_grad_clip_is_auto_none_or_a_number_and_auto_resolves_per_architecture(capsys):
    assert config_from_args(TrainConfig, _parse("train")[0]).grad_clip == "auto"
    for text, value in (("auto", "auto"), ("AUTO", "auto"), ("none", None), ("250", 250.0)):
        assert config_from_args(TrainConfig, _parse("train", "--grad-clip", text)[0]).grad_clip == value
    assert TrainConfig().effective_grad_clip == 1000.0 and TrainConfig(arch="nn3-128").effective_grad_clip is None
    assert TrainConfig(grad_clip=None).effective_grad_clip is None and TrainConfig(grad_clip=5).effective_grad_clip == 5
    # auto compares equal to the limit it stands for, so a run saved with --grad-clip 1000 is today's default.
    assert TrainConfig(grad_clip=1000.0).comparable() == TrainConfig().comparable()
    assert TrainConfig(grad_clip=None).comparable() != TrainConfig().comparable()
    with pytest.raises(SystemExit) as exit_info:
        _parse("train", "--grad-clip", "often")
    assert exit_info.value.code == 2
    assert "--grad-clip: expected auto, none or a number, got 'often'" in capsys.readouterr().err
    for bad in ("always", -1.0, 0, True):
        with pytest.raises(ConfigError, match="grad_clip must be"):
            TrainConfig(grad_clip=bad).validate()


def test_options_since_names_what_a_recipe_of_older_defaults_needs_today():
    old = {"batch_size": 128, "lr": 1e-3, "lr_schedule": "constant", "init": "vaekit"}  # saved before ema_decay
    assert options_since(old, "fashion28") == ["--batch-size", "128", "--init", "vaekit", "--grad-clip", "none",
                                               "--ema", "none"]
    assert options_since({**TrainConfig().to_dict(), "init": "pytorch", "grad_clip": 1000}, "fashion28") == []
    assert options_since(TrainConfig().to_dict(), "nn3-128") == []
    # Unclipped is what auto means on nn3-128, so an old recipe there needs no --grad-clip.
    assert "--grad-clip" not in options_since({**old, "grad_clip": None}, "nn3-128")
    assert options_since({"init": "pytorch", "lr": 3e-4}, "nn3-128")[:4] == ["--lr", "0.0003", "--init", "pytorch"]


def test_every_results_page_words_averaging_and_clipping_one_way():
    today = TrainConfig(arch="fashion28").comparable()
    assert ema_and_clip_text(today) == (f"weights averaged (EMA {today['ema_decay']:g}), "
                                        f"gradient norm clipped at {today['grad_clip']:g}")
    # A recipe saved before either setting existed trained without them.
    assert ema_and_clip_text({"lr": 1e-3}) == "no weight averaging, no gradient clipping"
    assert ema_and_clip_text({"ema_decay": 0.99, "grad_clip": None}) == \
        "weights averaged (EMA 0.99), no gradient clipping"


def test_the_data_options_of_every_command_on_a_run_are_declared_once():
    """--split, --dataset, --data-dir, --limit's type and --seed read the same in every command that opens a run."""
    commands = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices
    helps: dict[str, set[str]] = {}
    on_runs = [p for p in commands.values() if any(a.dest == "run" for a in p._actions)]
    assert len(on_runs) >= 10
    for parser in on_runs:
        for action in parser._actions:
            flag = next((s for s in action.option_strings if s in ("--split", "--dataset", "--data-dir", "--seed")),
                        None)
            if flag:
                helps.setdefault(flag, set()).add(action.help)
                assert action.choices is None and (flag != "--split" or action.default == "test"), (parser.prog, flag)
            if "--limit" in action.option_strings:
                assert action.type is positive_int and action.metavar == "N", parser.prog
    assert set(helps) == {"--split", "--dataset", "--data-dir", "--seed"}
    assert all(len(texts) == 1 for texts in helps.values()), helps
