"""HiFi-GAN: the paper's generator sizes, shapes, weight-norm removal, losses, and the family."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from wavefoundry.data.stored import DataSpec
from wavefoundry.families.hifigan import HiFiGANFamily
from wavefoundry.models.channels_last import ChannelsLastConv1d, ChannelsLastConvTranspose1d
from wavefoundry.models.hifigan import (
    LRELU_SLOPE,
    Discriminator,
    Generator,
    HiFiGANConfig,
    ResBlock1,
    discriminator_loss,
    feature_loss,
    generator_loss,
)
from wavefoundry.training.step import Stepper

TINY = {"upsample_initial_channel": 32, "discriminator_channel_scale": 1 / 16}


def parametrized_modules(net: nn.Module) -> list[str]:
    return [name for name, m in net.named_modules() if parametrize.is_parametrized(m)]


@pytest.mark.parametrize(("preset", "published"), [("v1", 13.92e6), ("v2", 0.92e6), ("v3", 1.46e6)])
def test_generator_parameter_count_matches_the_paper(preset, published):
    # The paper's counts are of the inference generator, weight norm folded away: V1 has
    # 13,926,017 plain weights (13.92 M truncated) but 13,936,130 with weight norm's g and v.
    generator = Generator(HiFiGANConfig(preset=preset))
    generator.remove_weight_norm()
    count = sum(p.numel() for p in generator.parameters())
    assert abs(count - published) / published < 0.01
    assert math.floor(count / 1e4) / 100 == published / 1e6


@pytest.mark.parametrize("preset", ["v1", "v3"])
def test_generator_makes_hop_samples_per_frame_in_range(preset):
    config = HiFiGANConfig(preset=preset, upsample_initial_channel=32)
    mel = torch.randn(2, 80, 7)
    audio = Generator(config)(mel)
    assert audio.shape == (2, 1, 7 * 256)
    assert audio.abs().max() <= 1.0


def test_removing_weight_norm_keeps_the_output_and_drops_the_parametrizations():
    torch.manual_seed(0)
    generator = Generator(HiFiGANConfig(preset="v3", upsample_initial_channel=32)).eval()
    mel = torch.randn(1, 80, 10)
    with torch.no_grad():
        before = generator(mel)
        generator.remove_weight_norm()
        after = generator(mel)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert parametrized_modules(generator) == []
    assert not any("parametrizations" in key for key in generator.state_dict())


def test_channels_last_convolutions_compute_what_torch_convolutions_do():
    torch.manual_seed(0)
    conv = ChannelsLastConv1d(8, 16, 5, stride=2, padding=4, dilation=2, groups=4)
    reference = nn.Conv1d(8, 16, 5, stride=2, padding=4, dilation=2, groups=4)
    reference.load_state_dict(conv.state_dict())
    up = ChannelsLastConvTranspose1d(8, 4, 16, 8, padding=4)
    up_reference = nn.ConvTranspose1d(8, 4, 16, 8, padding=4)
    up_reference.load_state_dict(up.state_dict())
    x = torch.randn(2, 8, 33)
    torch.testing.assert_close(conv(x), reference(x))
    torch.testing.assert_close(up(x), up_reference(x))


def plain_conv1d_forward(generator: Generator, mel: torch.Tensor) -> torch.Tensor:
    """The generator's forward pass as jik876/hifi-gan writes it, through plain F.conv1d and
    F.conv_transpose1d (channels-first, out of place) on the same weights: what the speed work
    (channels-last convolutions, in-place activations and sums) must leave unchanged."""

    def conv(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(
            x, module.weight, module.bias, module.stride, module.padding, module.dilation
        )

    x = conv(generator.conv_pre, mel)
    for i, up in enumerate(generator.ups):
        x = F.leaky_relu(x, LRELU_SLOPE)
        x = F.conv_transpose1d(x, up.weight, up.bias, up.stride, up.padding)
        xs = None
        for block in generator.resblocks[
            i * generator.num_kernels : (i + 1) * generator.num_kernels
        ]:
            h = x
            if isinstance(block, ResBlock1):
                for c1, c2 in zip(block.convs1, block.convs2, strict=True):
                    t = conv(c1, F.leaky_relu(h, LRELU_SLOPE))
                    h = conv(c2, F.leaky_relu(t, LRELU_SLOPE)) + h
            else:
                for c in block.convs:
                    h = conv(c, F.leaky_relu(h, LRELU_SLOPE)) + h
            xs = h if xs is None else xs + h
        x = xs / generator.num_kernels
    return torch.tanh(conv(generator.conv_post, F.leaky_relu(x)))


@pytest.mark.parametrize("preset", ["v1", "v2", "v3"])
def test_the_generator_computes_what_plain_conv1d_layers_compute(preset):
    torch.manual_seed(0)
    # V1's layout and kernels at a quarter of its width (V2's and V3's at their own).
    width = {"v1": 128}.get(preset)
    generator = Generator(HiFiGANConfig(preset=preset, upsample_initial_channel=width)).eval()
    generator.remove_weight_norm()
    mel = torch.randn(2, 80, 24) - 4.0
    with torch.inference_mode():
        fast = generator(mel)
        plain = plain_conv1d_forward(generator, mel)
    assert fast.shape == plain.shape == (2, 1, 24 * 256)
    torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-6)


def test_config_resolves_presets_with_overrides_and_rejects_a_wrong_hop():
    v3 = HiFiGANConfig(preset="v3", upsample_initial_channel=64).generator_settings()
    assert v3.upsample_rates == (8, 8, 4)
    assert v3.resblock == "2"
    assert v3.resblock_dilation_sizes == ((1, 2), (2, 6), (3, 12))
    assert v3.upsample_initial_channel == 64
    with pytest.raises(ValueError, match="hop_length"):
        HiFiGANConfig(preset="v3", hop_length=200)
    with pytest.raises(ValueError, match="segment_length"):
        HiFiGANConfig(segment_length=1000)
    with pytest.raises(ValueError, match="preset"):
        HiFiGANConfig(preset="v4")


def test_discriminators_score_every_period_and_scale():
    torch.manual_seed(0)
    config = HiFiGANConfig(**TINY)
    discriminator = Discriminator(config)
    real, fake = torch.randn(2, 1, 1000), torch.randn(2, 1, 1000)  # 1000 % 3, 7, 11 != 0
    real_scores, fake_scores, real_fmaps, fake_fmaps = discriminator(real, fake)
    assert len(real_scores) == len(fake_scores) == 5 + 3
    assert [len(f) for f in real_fmaps] == [6] * 5 + [8] * 3
    assert all(s.shape[0] == 2 and s.dim() == 2 for s in real_scores + fake_scores)
    # The first scale has spectral norm, the others weight norm.
    assert hasattr(discriminator.msd.discriminators[0].convs[0].parametrizations.weight[0], "_u")
    # Widths shrink by the channel scale: MPD 1024 -> 64; MSD 128 -> 16, kept a multiple of
    # its 16 groups.
    assert discriminator.mpd.discriminators[0].convs[-1].out_channels == 64
    assert [c.out_channels for c in discriminator.msd.discriminators[1].convs] == [
        16,
        16,
        16,
        32,
        64,
        64,
        64,
    ]


def test_losses_are_zero_at_their_targets_and_positive_elsewhere():
    ones, zeros = [torch.ones(2, 5)], [torch.zeros(2, 5)]
    assert discriminator_loss(ones, zeros).item() == 0
    assert discriminator_loss(zeros, ones).item() == pytest.approx(2.0)
    assert generator_loss(ones).item() == 0
    assert generator_loss(zeros).item() == pytest.approx(1.0)
    fmaps = [[torch.randn(2, 3, 4), torch.randn(2, 5)]]
    assert feature_loss(fmaps, fmaps).item() == 0
    assert feature_loss(fmaps, [[f + 1 for f in fmaps[0]]]).item() == pytest.approx(2.0)


def test_weights_round_trip_through_safetensors(tmp_path):
    config = HiFiGANConfig(**TINY)
    for net in (Generator(config), Discriminator(config)):
        save_file(net.state_dict(), tmp_path / "net.safetensors")
        net.load_state_dict(load_file(tmp_path / "net.safetensors"))


def test_family_trains_samples_and_synthesizes():
    torch.manual_seed(0)
    config = HiFiGANConfig(
        **TINY,
        resblock_kernel_sizes=(3, 7),
        resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)),
        periods=(2, 3),
        discriminator_scales=2,
        segment_length=1024,
        learning_rate=1e-3,
    )
    family = HiFiGANFamily(config, DataSpec(dataset="ljspeech", sample_rate=22050))
    nets = family.build()
    assert set(nets) == {"generator", "discriminator"}
    step = Stepper(family.optimizers(nets), torch.device("cpu"))
    t = torch.arange(family.segment_length) / 22050
    audio = 0.5 * torch.sin(2 * math.pi * torch.tensor([[110.0], [220.0], [330.0]]) * t)
    collated = {"audio": audio, "clip_id": ["a", "b", "c"], "text": ["x", "y", "z"]}
    batch = family.prepare(collated, torch.device("cpu"))
    assert batch["mel"].shape == (3, 80, 1024 // 256)

    for _ in range(2):
        losses = family.train_step(nets, batch, step)
        step.finish()
        assert set(losses) >= {
            "loss",
            "loss_mel",
            "loss_generator",
            "loss_adversarial",
            "loss_feature_matching",
            "loss_discriminator",
        }
        assert all(math.isfinite(v) for v in losses.values())
        assert losses["loss"] == losses["loss_mel"]

    evaluation = family.evaluate(nets, batch)
    assert math.isfinite(evaluation["loss"]) and evaluation["loss"] > 0

    reference, generated = family.sample(nets, batch)
    assert reference.shape == generated.shape == (2, 1024)
    assert generated.abs().max() <= 1.0

    generator = nets[family.inference_net]
    for length in (1000, 256, 50):  # not a multiple of hop; one frame; under the mel padding
        out = family.synthesize(generator, torch.randn(length).clamp(-1, 1), {})
        assert out.shape == (length,)
        assert out.abs().max() <= 1.0
    with pytest.raises(ValueError, match="audio"):
        family.synthesize(generator, None, {})
