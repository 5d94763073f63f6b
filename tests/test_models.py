import pytest
import torch

import vaekit
from vaekit.errors import ConfigError
from vaekit.models import ARCHITECTURES, build_model, count_parameters


def test_fashion28_has_the_keras_parameter_count():
    assert count_parameters(build_model("fashion28", latent_dim=2)) == 1_361_821


def test_fashion28_layer_shapes_follow_the_report():
    model = build_model("fashion28")
    x = torch.rand(3, 1, 28, 28)
    shapes = []
    for layer in model.encoder:
        x = layer(x)
        if not isinstance(layer, torch.nn.ReLU):
            shapes.append(tuple(x.shape[1:]))
    assert shapes == [(32, 15, 15), (64, 10, 10), (6400,), (168,), (16,)]


# The module docs' tables, converted from Keras (H, W, C) to PyTorch (C, H, W).
NN3_ENCODER_SHAPES = [(32, 64, 64), (64, 32, 32), (128, 16, 16), (256, 8, 8), (16384,)]
NN3_DECODER_SHAPES = [(16384,), (256, 8, 8), (256, 8, 8), (256, 16, 16), (128, 32, 32), (64, 64, 64),
                      (32, 128, 128), (3, 128, 128)]


def _layer_outputs(sequential, x, skip=(torch.nn.ReLU,)):
    shapes = []
    for layer in sequential:
        x = layer(x)
        if not isinstance(layer, skip):
            shapes.append(tuple(x.shape[1:]))
    return shapes


def test_nn3_128_shapes_match_the_module_docs():
    model = build_model("nn3-128")
    assert model.latent_dim == 256
    with torch.no_grad():
        assert _layer_outputs(model.encoder, torch.rand(2, 3, 128, 128)) == NN3_ENCODER_SHAPES
        decoder_shapes = _layer_outputs(model.decoder, torch.rand(2, 256))
    # The Unflatten layer repeats the 8x8x256 shape that the docs list once (Dense, then reshape).
    assert decoder_shapes == NN3_DECODER_SHAPES
    assert model.z_mean.out_features == model.z_log_var.out_features == 256


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_forward_returns_reconstruction_in_unit_interval_and_latent_stats(name):
    model = build_model(name, latent_dim=4)
    c, h, w = model.image_shape
    with torch.no_grad():
        out = model(torch.rand(2, c, h, w))
    assert out[0] is out.reconstruction
    assert out.reconstruction.shape == (2, c, h, w)
    assert 0.0 <= float(out.reconstruction.min()) and float(out.reconstruction.max()) <= 1.0
    assert out.z_mean.shape == out.z_log_var.shape == out.z.shape == (2, 4)
    assert torch.allclose(out.reconstruction, torch.sigmoid(out.logits))


def test_fixed_noise_makes_forward_deterministic():
    model = build_model("fashion28")
    x = torch.rand(2, 1, 28, 28)
    noise = torch.zeros(2, 2)
    out = model(x, noise=noise)
    assert torch.equal(out.z, out.z_mean)


def test_latent_dim_changes_only_the_latent_layers():
    small, large = build_model("fashion28", latent_dim=2), build_model("fashion28", latent_dim=8)
    assert count_parameters(large) - count_parameters(small) == 6 * (16 + 1) * 2 + 6 * 7 * 7 * 128


def test_unknown_architecture_and_bad_latent_are_config_errors():
    with pytest.raises(ConfigError, match="unknown architecture 'resnet'.*fashion28"):
        vaekit.build_model("resnet")
    with pytest.raises(ConfigError, match="latent_dim must be at least 1") as error:
        vaekit.build_model("fashion28", latent_dim=0)
    assert error.value.param == "latent_dim"


def test_spec_round_trips_through_plain_values():
    spec = ARCHITECTURES["nn3-128"]
    assert vaekit.ArchSpec.from_dict(spec.to_dict()) == spec


def test_a_custom_spec_builds_a_working_model():
    spec = vaekit.ArchSpec(
        name="tiny16", input_shape=(1, 16, 16), latent_dim=3,
        encoder_convs=(vaekit.ConvLayer(8, 3, 2),), encoder_dense=(32,), decoder_start=(8, 8, 8),
        decoder_convs=(vaekit.ConvLayer(1, 3, 2),),
    )
    model = vaekit.build_model(spec=spec)
    assert model(torch.rand(5, 1, 16, 16)).reconstruction.shape == (5, 1, 16, 16)


def test_a_spec_whose_decoder_cannot_reach_the_input_size_is_rejected():
    spec = vaekit.ArchSpec(
        name="broken", input_shape=(1, 16, 16), latent_dim=3,
        encoder_convs=(vaekit.ConvLayer(8, 3, 2),), encoder_dense=(), decoder_start=(8, 4, 4),
        decoder_convs=(vaekit.ConvLayer(1, 3, 2),),
    )
    with pytest.raises(ConfigError, match="decoder produces"):
        vaekit.build_model(spec=spec)


def test_the_latent_path_stays_float32_under_bf16_autocast():
    """A 2-D latent rounded to bf16 costs ELBO: the heads, the sample and the layer reading z run in float32."""
    model = build_model("fashion28")
    x = torch.rand(4, 1, 28, 28)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        first_decoder_output = model.decoder[0](out.z.float())
    assert out.z_mean.dtype == out.z_log_var.dtype == out.z.dtype == torch.float32
    assert out.logits.dtype == torch.bfloat16  # the convolutions still run in bf16
    reference = model.decoder[0](out.z)  # outside autocast: float32
    assert first_decoder_output.dtype == torch.bfloat16 and reference.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model.decode_logits(out.z)
    torch.testing.assert_close(logits.float(), model.decode_logits(out.z), atol=0.5, rtol=0.05)


def test_decode_is_the_sigmoid_of_decode_logits_for_any_float_dtype():
    """decode shares decode_logits' float32 handling: a float64 z decodes (it failed on a dtype mismatch)."""
    model = build_model("fashion28").eval()
    z = torch.randn(3, 2, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model.decode(z), torch.sigmoid(model.decode_logits(z.float())))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            images = model.decode(z)
    assert images.shape == (3, 1, 28, 28) and float(images.min()) >= 0 and float(images.max()) <= 1
