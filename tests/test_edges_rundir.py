"""Tampered run directories and absurd settings: each ends in one clear line naming the file and field."""

import dataclasses
import io
import json
import math
import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

import vaekit
from vaekit.errors import ConfigError, RunDirError
from vaekit.models.pretrained import read_config
from vaekit.models.spec import MAX_PARAMETERS, check_spec
from vaekit.runs.run import Run, parse_metrics_row, read_metrics
from vaekit.training.checkpoint import (
    load_checkpoint,
    save_checkpoint,
    validate_checkpoint,
)
from vaekit.training.config import TrainConfig

TINY = vaekit.ArchSpec(
    name="tiny16", input_shape=(1, 16, 16), latent_dim=3,
    encoder_convs=(vaekit.ConvLayer(4, 3, 2),), encoder_dense=(8,), decoder_start=(4, 8, 8),
    decoder_convs=(vaekit.ConvLayer(1, 3, 2),),
)
N_TRAIN, BATCH = 10, 4


def _one_line(error: Exception, *needles: str) -> str:
    message = str(error)
    assert "\n" not in message and message, message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.fixture
def run_dir(tmp_path):
    torch.manual_seed(0)
    model = vaekit.build_model(spec=TINY)
    run = tmp_path / "run"
    run.mkdir()
    vaekit.models.save_model(model, run, {
        "train": TrainConfig(dataset="shapes", epochs=2, batch_size=BATCH).to_dict(),
        "dataset": {"name": "shapes", "class_names": ["a", "b"], "train_size": N_TRAIN, "test_size": 4},
        "data": {"name": "shapes", "path": None, "checksum": None},
        "status": "complete", "epochs_done": 2,
    })
    return run


def _edit_config(run, edit):
    config = json.loads((run / "config.json").read_text())
    edit(config)
    (run / "config.json").write_text(json.dumps(config))


def test_an_untouched_run_opens(run_dir):
    run = Run.open(run_dir, device="cpu", precision="fp32")
    assert run.model.latent_dim == 3 and run.class_names == ("a", "b")


# ---------------------------------------------------------------------- config.json


def _set(path, value):
    def edit(config):
        *parents, last = path
        target = config
        for key in parents:
            target = target[key]
        if value is _DELETE:
            del target[last]
        else:
            target[last] = value
    return edit


class _Delete:
    def __repr__(self):
        return "<delete>"


_DELETE = _Delete()
CONFIG_CASES = [
    (("spec", "latent_dim"), _DELETE, "spec.latent_dim is missing"),
    (("spec", "latent_dim"), "3", "spec.latent_dim must be a positive integer"),
    (("spec", "latent_dim"), 3.0, "spec.latent_dim must be a positive integer"),
    (("spec", "latent_dim"), True, "spec.latent_dim must be a positive integer"),
    (("spec", "latent_dim"), -3, "spec.latent_dim must be a positive integer, got int -3"),
    (("spec", "latent_dim"), 0, "spec.latent_dim must be a positive integer"),
    (("spec", "latent_dim"), 2**20, "spec.latent_dim must be at most"),
    (("spec", "input_shape"), [1, 16], "spec.input_shape must have 3 entries"),
    (("spec", "input_shape"), "1x16x16", "spec.input_shape must be a list"),
    (("spec", "input_shape"), [1, 2**20, 2**20], "spec.input_shape would produce"),
    (("spec", "encoder_dense"), "8", "spec.encoder_dense must be a list"),
    (("spec", "encoder_dense"), [2**23], "parameters"),
    (("spec", "encoder_convs", 0, "kernel"), 0, "spec.encoder_convs[0].kernel must be a positive integer"),
    (("spec", "encoder_convs", 0), {"channels": 4, "kernel": 40, "stride": 2, "padding": "valid"},
     "spec.encoder_convs[0]: kernel 40 is larger than its input"),
    (("spec", "encoder_convs", 0, "channels"), _DELETE, "spec.encoder_convs[0].channels is missing"),
    (("spec", "encoder_convs", 0, "padding"), "full", "spec.encoder_convs[0].padding must be one of same, valid"),
    (("spec", "encoder_convs", 0, "groups"), 2, "spec.encoder_convs[0] has unknown field(s) groups"),
    (("spec", "encoder_convs", 0), 7, "spec.encoder_convs[0] must be an object"),
    (("spec", "decoder_start"), [4, 4, 4], "decoder produces (1, 8, 8), input is (1, 16, 16)"),
    (("spec", "decoder_convs", 0), {"channels": 1, "kernel": 4}, "'same' padding needs an odd kernel or a stride above 1"),
    (("spec", "decoder_convs", 0, "stride"), 1, "decoder produces"),
    (("spec", "name"), "", "spec.name must be a non-empty string"),
    (("spec", "frobnicate"), 1, "spec has unknown field(s) frobnicate"),
    (("spec",), "tiny16", "spec must be an object"),
    (("format_version",), 99, "format_version 99 is newer than this vaekit reads (1)"),
    (("format_version",), "1", "format_version must be a positive integer"),
    (("class_name",), 5, "class_name must be a non-empty string"),
    (("arch",), "", "arch must be a non-empty string"),
    (("latent_dim",), -1, "latent_dim must be an integer from 1"),
    (("latent_dim",), "3", "latent_dim must be an integer from 1"),
    (("image_shape",), [1, 16], "image_shape must be a list of 3 positive integers"),
    (("image_shape",), [3, 16, 16], "image_shape is [3, 16, 16] but spec.input_shape is [1, 16, 16]"),
    (("epochs_done",), -2, "epochs_done must be a non-negative integer"),
    (("dataset",), "shapes", "dataset must be an object"),
    (("dataset", "name"), "", "dataset.name must be a non-empty string"),
    (("dataset", "name"), 12, "dataset.name must be a non-empty string"),
    (("dataset", "class_names"), [1, 2], "dataset.class_names must be a list of strings"),
    (("dataset", "class_names"), "ab", "dataset.class_names must be a list of strings"),
    (("dataset", "train_size"), -1, "dataset.train_size must be a non-negative integer"),
    (("train",), [], "train must be an object"),
    (("train", "lr"), "fast", "train.lr must be a number, got str 'fast'"),
    (("train", "epochs"), 2.5, "train.epochs must be an integer"),
    (("train", "epochs"), True, "train.epochs must be an integer"),
    (("train", "batch_size"), -1, "train.batch_size must be at least 1"),
    (("train", "beta"), float("nan"), "train.beta must be a finite number"),
    (("train", "exclude_classes"), "a", "train.exclude_classes must be a list of strings"),
    (("train", "compile"), "yes", "train.compile must be one of auto, off, on, cudagraphs, got 'yes'"),
    (("train", "data_placement"), "disk", "train.data_placement must be one of auto, resident, stream"),
    (("train", "recon"), "poisson", "train.recon must be one of"),
    (("data",), "somewhere", "data must be an object or null"),
    (("data", "path"), 5, "data.path must be a string or null"),
    (("data", "checksum"), ["x"], "data.checksum must be a string or null"),
]


@pytest.mark.parametrize("path,value,needle", CONFIG_CASES, ids=[f"{'.'.join(map(str, p))}={v!r}"[:40]
                                                                  for p, v, _ in CONFIG_CASES])
def test_a_tampered_config_is_one_line_naming_file_and_field(run_dir, path, value, needle):
    _edit_config(run_dir, _set(path, value))
    for opener in (read_config, lambda p: vaekit.load(p), lambda p: Run.open(p, device="cpu", precision="fp32")):
        with pytest.raises(RunDirError) as error:
            opener(run_dir)
        _one_line(error.value, "config.json: ", needle)


def test_configs_that_are_not_objects_or_have_no_model_are_refused(run_dir):
    (run_dir / "config.json").write_text("[1, 2, 3]")
    with pytest.raises(RunDirError, match="not a vaekit config"):
        read_config(run_dir)
    (run_dir / "config.json").write_text("{}")
    with pytest.raises(RunDirError, match="no model architecture"):
        read_config(run_dir)
    (run_dir / "config.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(RunDirError, match="not valid JSON"):
        read_config(run_dir)


def test_absurd_specs_are_refused_by_arithmetic_before_anything_is_built(monkeypatch):
    huge = TINY.to_dict() | {"encoder_dense": [2**40]}
    monkeypatch.setattr(torch.nn.Linear, "__init__", lambda *a, **k: pytest.fail("a module was built"))
    with pytest.raises(ConfigError, match=f"more than {MAX_PARAMETERS} parameters"):
        vaekit.ArchSpec.from_dict(huge)
    with pytest.raises(ConfigError, match="spec.decoder_start"):
        vaekit.ArchSpec.from_dict(TINY.to_dict() | {"decoder_start": [2**14, 2**10, 2**10]})
    with pytest.raises(ConfigError, match="parameters"):
        vaekit.VAE(vaekit.ArchSpec(**(TINY.__dict__ | {"encoder_dense": (2**40,)})))


def test_the_arithmetic_agrees_with_the_built_modules():
    for spec in (TINY, *vaekit.ARCHITECTURES.values()):
        assert check_spec(spec) == vaekit.models.count_parameters(vaekit.VAE(spec))
        assert vaekit.ArchSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_tampered_config_is_one_cli_error_line(run_dir, capsys):
    from vaekit.cli import main

    _edit_config(run_dir, _set(("spec", "latent_dim"), -3))
    assert main(["sample", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error: "), err
    assert "config.json: spec.latent_dim must be a positive integer, got int -3" in err[0]


# ---------------------------------------------------------------------- model.safetensors


def _edit_weights(run, edit):
    state = load_file(run / "model.safetensors")
    edit(state)
    save_file(state, run / "model.safetensors")


WEIGHT_CASES = [
    (lambda s: s.update({"z_mean.weight": torch.zeros(5, 8)}), "z_mean.weight has shape (5, 8), expected (3, 8)"),
    (lambda s: s.pop("z_log_var.bias"), "missing z_log_var.bias"),
    (lambda s: s.update({"extra.weight": torch.zeros(2)}), "unexpected extra.weight"),
    (lambda s: s["z_mean.bias"].__setitem__(0, math.nan), "z_mean.bias holds NaN or infinite values"),
    (lambda s: s["decoder.0.weight"].__setitem__((0, 0), math.inf), "decoder.0.weight holds NaN or infinite"),
    (lambda s: s.update({"z_mean.bias": torch.zeros(3, dtype=torch.int32)}), "z_mean.bias has dtype torch.int32"),
    (lambda s: s.update({"z_mean.bias": torch.zeros(3, dtype=torch.bool)}), "z_mean.bias has dtype torch.bool"),
]


@pytest.mark.parametrize("edit,needle", WEIGHT_CASES)
def test_tampered_weights_are_one_line(run_dir, edit, needle):
    _edit_weights(run_dir, edit)
    with pytest.raises(RunDirError) as error:
        Run.open(run_dir, device="cpu", precision="fp32")
    _one_line(error.value, "model.safetensors: ", needle)


def test_half_precision_weights_still_load_and_garbage_does_not(run_dir):
    _edit_weights(run_dir, lambda s: s.update({k: v.half() for k, v in s.items()}))
    assert vaekit.load(run_dir).z_mean.weight.dtype == torch.float32
    (run_dir / "model.safetensors").write_bytes(b"\x00" * 7 + b"garbage")
    with pytest.raises(RunDirError) as error:
        vaekit.load(run_dir)
    _one_line(error.value, "model.safetensors: unreadable weights")


# ---------------------------------------------------------------------- checkpoint.pt


def _payload(mid_epoch=True):
    torch.manual_seed(0)
    model = vaekit.build_model(spec=TINY)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.rand(2, 1, 16, 16)).logits.sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(N_TRAIN, generator=generator)
    return model, {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(), "scaler": {}, "order_rng": generator.get_state(),
        "rng": {"cpu": torch.get_rng_state()}, "epoch": 1,
        "epoch_state": {"order": order, "step": 2, "sums": torch.zeros(3, dtype=torch.float64), "seconds": 1.5}
        if mid_epoch else None,
    }


def _check(run_dir, payload, model):
    save_checkpoint(run_dir, payload)
    return load_checkpoint(run_dir, model=model, n_train=N_TRAIN, steps_per_epoch=math.ceil(N_TRAIN / BATCH))


def test_a_sound_checkpoint_round_trips(run_dir):
    assert load_checkpoint(run_dir) is None
    for mid_epoch in (True, False):
        model, payload = _payload(mid_epoch)
        loaded = _check(run_dir, payload, model)
        assert loaded["epoch"] == 1 and torch.equal(loaded["model"]["z_mean.weight"], payload["model"]["z_mean.weight"])
        assert load_checkpoint(run_dir)["epoch"] == 1  # structure only


class _Code:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content", [b"", b"random bytes \x00\x01\x02" * 10, pickle.dumps({"model": {}}),
                                     pickle.dumps(_Code()), "torch-code"])
def test_files_that_are_not_checkpoints_are_one_line_without_unsafe_advice(run_dir, content, capsys, recwarn):
    if content == "torch-code":
        buffer = io.BytesIO()
        torch.save({"model": _Code()}, buffer)
        content = buffer.getvalue()
    (run_dir / "checkpoint.pt").write_bytes(content)
    with pytest.raises(RunDirError) as error:
        load_checkpoint(run_dir)
    message = _one_line(error.value, "checkpoint.pt: not a vaekit checkpoint")
    assert "weights_only" not in message and "trust" not in message.lower()
    assert not [w for w in recwarn if "pickle" in str(w.message)]
    captured = capsys.readouterr()
    assert "this must never run" not in captured.out and not captured.err


def _mutate(path, value):
    def edit(payload):
        target = payload
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return edit


CHECKPOINT_CASES = [
    *[((key,), _DELETE, f"missing {key}") for key in ("model", "optimizer", "order_rng", "rng", "epoch", "epoch_state")],
    (("epoch",), -1, "epoch must be an integer from 0"),
    (("epoch",), "3", "epoch must be an integer from 0"),
    (("epoch",), True, "epoch must be an integer from 0"),
    (("epoch",), 10**9, "epoch must be an integer from 0"),
    (("model",), [1, 2], "model must be a mapping of tensor names to tensors"),
    (("model", "z_mean.weight"), torch.zeros(4, 8), "model: z_mean.weight has shape (4, 8), expected (3, 8)"),
    (("model", "z_mean.bias"), torch.full((3,), math.nan), "z_mean.bias holds NaN or infinite values"),
    (("model", "surplus"), torch.zeros(1), "model: unexpected surplus"),
    (("optimizer",), {"state": {}}, "optimizer must be a mapping with 'state' and 'param_groups'"),
    (("optimizer", "state", 0, "exp_avg"), torch.zeros(1), "optimizer.state[0].exp_avg has shape (1,)"),
    (("optimizer", "state", 0, "exp_avg_sq"), torch.full((4, 1, 3, 3), math.inf), "NaN or infinite"),
    (("optimizer", "state", 99), {}, "optimizer.state has an entry 99 for no parameter"),
    (("scaler",), "on", "scaler must be a mapping"),
    (("order_rng",), torch.zeros(10, dtype=torch.uint8), "order_rng must be a generator state"),
    (("order_rng",), [1, 2, 3], "order_rng must be a generator state"),
    (("rng",), {}, "rng must be a mapping with a 'cpu' state"),
    (("rng", "cpu"), torch.zeros(5056, dtype=torch.float32), "rng.cpu must be a generator state"),
    (("rng", "cuda"), "x", "rng.cuda must be a 1-D uint8 tensor"),
    (("epoch_state",), {"order": torch.arange(N_TRAIN)}, "epoch_state must be null or a mapping with order"),
    (("epoch_state", "order"), torch.arange(N_TRAIN).float(), "epoch_state.order must be a non-empty 1-D int64"),
    (("epoch_state", "order"), torch.arange(N_TRAIN - 1), "covers 9 images, the training set has 10"),
    (("epoch_state", "order"), torch.zeros(N_TRAIN, dtype=torch.int64), "epoch_state.order is not a permutation"),
    (("epoch_state", "order"), torch.arange(N_TRAIN) + 5, "epoch_state.order is not a permutation"),
    (("epoch_state", "step"), 4, "epoch_state.step must be an integer from 0 to 3, got 4"),
    (("epoch_state", "step"), -1, "epoch_state.step must be an integer from 0"),
    (("epoch_state", "step"), 1.0, "epoch_state.step must be an integer from 0"),
    (("epoch_state", "sums"), torch.tensor([0.0, math.nan, 0.0]), "epoch_state.sums must be 3 finite"),
    (("epoch_state", "sums"), torch.zeros(2), "epoch_state.sums must be 3 finite"),
    (("epoch_state", "seconds"), -1.0, "epoch_state.seconds must be a finite non-negative number"),
    (("epoch_state", "seconds"), math.inf, "epoch_state.seconds must be a finite non-negative number"),
]


@pytest.mark.parametrize("path,value,needle", CHECKPOINT_CASES,
                         ids=[f"{'.'.join(map(str, p))}"[:40] for p, _, _ in CHECKPOINT_CASES])
def test_a_tampered_checkpoint_is_one_line_naming_the_field(run_dir, path, value, needle):
    model, payload = _payload()
    _mutate(path, value)(payload)
    with pytest.raises(RunDirError) as error:
        _check(run_dir, payload, model)
    _one_line(error.value, "checkpoint.pt: ", needle)


def test_validate_checkpoint_refuses_non_mappings_and_other_models(tmp_path):
    model, payload = _payload()
    with pytest.raises(RunDirError, match="a mapping expected, got list"):
        validate_checkpoint([payload], tmp_path / "checkpoint.pt")
    other = vaekit.build_model(spec=vaekit.ArchSpec(**(TINY.__dict__ | {"latent_dim": 5})))
    with pytest.raises(RunDirError, match="z_mean.weight has shape"):
        validate_checkpoint(payload, tmp_path / "checkpoint.pt", model=other)
    assert validate_checkpoint(payload, tmp_path / "checkpoint.pt") is payload


# ---------------------------------------------------------------------- metrics.csv

HEADER = "epoch,beta,test_elbo,test_recon,test_kl,active_units"
GOOD = [HEADER, "1,1.0,300.5,280.0,20.5,2", "2,1.0,290.0,271.0,19.0,3"]


def test_sound_metrics_parse(run_dir):
    (run_dir / "metrics.csv").write_text("\n".join(GOOD) + "\n")
    rows = read_metrics(run_dir)
    assert [parse_metrics_row(r) for r in rows][1] == {"epoch": 2, "beta": 1.0, "test_elbo": 290.0,
                                                       "test_recon": 271.0, "test_kl": 19.0, "active_units": 3}
    assert Run.open(run_dir, device="cpu", precision="fp32").metrics[0]["test_kl"] == 20.5
    # An optional column may have empty cells (added when a newer vaekit resumed the run); required ones not.
    (run_dir / "metrics.csv").write_text("\n".join([HEADER, "1,1.0,300.5,280.0,20.5,", GOOD[2]]) + "\n")
    assert Run.open(run_dir, device="cpu", precision="fp32").metrics[0]["active_units"] is None
    (run_dir / "metrics.csv").write_text("")
    assert read_metrics(run_dir) == []


METRICS_CASES = [
    ([HEADER, "1,1.0,abc,280.0,20.5,2"], "row 1, column test_elbo: not a number ('abc')"),
    ([HEADER, "1,1.0,300,280.0,,2"], "row 1, column test_kl: not a number"),
    (["epoch,beta,test_elbo,test_recon,active_units", "1,1.0,300,280.0,2"], "missing column(s) test_kl"),
    (["beta,test_elbo,test_recon,test_kl", "1.0,300,280.0,2"], "missing column(s) epoch"),
    ([HEADER, "1,1.0,nan,280.0,20.5,2"], "row 1, column test_elbo: not a finite number"),
    ([HEADER, GOOD[1], "2,1.0,300,inf,20.5,2"], "row 2, column test_recon: not a finite number"),
    ([HEADER, "-1,1.0,300,280.0,20.5,2"], "row 1, column epoch: must be a positive integer"),
    ([HEADER, "1.5,1.0,300,280.0,20.5,2"], "row 1, column epoch: must be a positive integer"),
    ([HEADER, "2,1.0,300,280.0,20.5,2"], "row 1, column epoch: expected epoch 1, got 2"),
    ([HEADER, GOOD[1], GOOD[1]], "row 2, column epoch: expected epoch 2"),
    ([HEADER], "a header but no rows"),
    ([HEADER, "1,1.0,300,280.0"], "row 1, column test_kl: missing cell"),
    ([HEADER, GOOD[1] + ",7,8"], "row 1 has more cells than the header has columns"),
    ([HEADER + ",epoch", GOOD[1] + ",1"], "blank or repeated column names"),
]


@pytest.mark.parametrize("lines,needle", METRICS_CASES)
def test_tampered_metrics_are_one_line_naming_row_and_column(run_dir, lines, needle):
    (run_dir / "metrics.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(RunDirError) as error:
        read_metrics(run_dir)
    _one_line(error.value, "metrics.csv: ", needle)
    with pytest.raises(RunDirError):
        Run.open(run_dir, device="cpu", precision="fp32").metrics


def test_metrics_that_are_not_utf8_are_one_line(run_dir):
    (run_dir / "metrics.csv").write_bytes(HEADER.encode() + b"\n1,\xff\xfe,3,4,5,6\n")
    with pytest.raises(RunDirError) as error:
        read_metrics(run_dir)
    _one_line(error.value, "metrics.csv: not a UTF-8 text file")


# ---------------------------------------------------------------------- settings


SETTING_CASES = [
    *[(name, value, f"{name} must be a finite number") for name in
      ("lr", "beta", "kl_warmup_epochs", "gaussian_sigma", "grad_clip") for value in (math.nan, math.inf)],
    ("lr", -math.inf, "lr must be a finite number"),
    ("epochs", 10**6 + 1, "epochs must be at most 1000000"),
    ("batch_size", 2**20 + 1, "batch_size must be at most 1048576"),
    ("latent_dim", 2**16 + 1, "latent_dim must be at most 65536"),
    ("eval_batch_size", 2**40, "eval_batch_size must be at most"),
    ("train_limit", -1, "train_limit must be at least 1"),
    ("test_limit", -5, "test_limit must be at least 1"),
    ("dataset", "", "dataset must not be empty"),
    ("dataset", "   ", "dataset must not be empty"),
    ("arch", "", "arch must not be empty"),
    ("exclude_classes", ["Bag", " "], "exclude_classes must not contain blank class names"),
    ("exclude_classes", [""], "exclude_classes must not contain blank class names"),
    ("device", "cu da", "device must be a device name without spaces"),
    ("device", "cuda\0", "device must be a device name without spaces or control characters"),
    ("device", "", "device must be a device name"),
    ("data_dir", "data\0", "data_dir must not contain a NUL character"),
    ("lr", "fast", "lr must be a number, got str 'fast'"),
    ("epochs", True, "epochs must be an integer"),
    ("epochs", 2.0, "epochs must be an integer"),
    ("channels_last", "no", "channels_last must be true or false"),
]


@pytest.mark.parametrize("name,value,needle", SETTING_CASES, ids=[f"{n}={v!r}"[:30] for n, v, _ in SETTING_CASES])
def test_absurd_settings_are_one_line_naming_the_field(name, value, needle):
    with pytest.raises(ConfigError) as error:
        TrainConfig(**{name: value}).validate()
    assert error.value.param == name
    assert _one_line(error.value, needle).startswith(f"{name} ")


def test_settings_saved_before_a_field_existed_read_as_the_behaviour_of_that_time():
    from vaekit.training.config import SETTINGS_BEFORE_THEY_EXISTED

    old = TrainConfig.from_dict({"epochs": 3})
    assert old.ema_decay is None and old.lr_schedule == "constant" and old.epochs == 3
    assert set(SETTINGS_BEFORE_THEY_EXISTED) <= {f.name for f in dataclasses.fields(TrainConfig)}
    assert TrainConfig.from_dict({"ema_decay": 0.99, "lr_schedule": "cosine"}).ema_decay == 0.99


def test_sound_settings_pass_and_from_dict_checks_types():
    TrainConfig(lr=0.5, beta=0.0, epochs=10**6, batch_size=2**20, latent_dim=2**16, grad_clip=1.0,
                exclude_classes=["Bag"], device="cuda:1", train_limit=1).validate()
    with pytest.raises(ConfigError, match="batch_size must be an integer") as error:
        TrainConfig.from_dict({"batch_size": "128"})
    assert error.value.param == "batch_size"
    with pytest.raises(ConfigError, match="latent_dim must be at most"):
        vaekit.models.get_arch("fashion28", latent_dim=2**20)


@pytest.mark.parametrize("argv,needle", [(["--lr", "nan"], "--lr must be a finite number"),
                                         (["--epochs", "10000000"], "--epochs must be at most"),
                                         (["--dataset", " "], "--dataset must not be empty")])
def test_absurd_options_are_one_cli_error_line(tmp_path, capsys, argv, needle):
    from vaekit.cli import main

    assert main(["train", "--dataset", "shapes", *argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("vaekit: error: ") and needle in err[0], err
    assert not (tmp_path / "run").exists()
