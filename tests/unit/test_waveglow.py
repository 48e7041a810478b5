"""WaveGlow (Prenger et al. 2018): the flow inverts exactly, the log-determinant it reports is
the true one, the recipe has the published size, and training lowers the likelihood loss."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from wavefoundry.config import load_config, model_config
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.waveglow import WaveGlowFamily
from wavefoundry.models.waveglow import WaveGlow, WaveGlowConfig, waveglow_loss
from wavefoundry.training.step import Stepper

REPO = Path(__file__).resolve().parents[2]

# The paper's structure (early outputs, 1x1 convolutions, WN couplings), tiny sizes.
TINY = WaveGlowConfig(
    n_flows=6,
    n_early_every=2,
    n_layers=3,
    n_channels=16,
    n_mels=8,
    n_fft=256,
    hop_length=64,
    win_length=256,
    upsample_kernel_size=256,
    segment_length=1024,
    learning_rate=1e-3,
)


def trained_looking(config: WaveGlowConfig, seed: int = 0) -> WaveGlow:
    """A WaveGlow whose couplings are not the identity: WN's zero-initialised output layer
    gets random weights, so log s and t depend on the input."""
    torch.manual_seed(seed)
    model = WaveGlow(config)
    for wn in model.WN:
        torch.nn.init.normal_(wn.end.weight, std=0.05)
        torch.nn.init.normal_(wn.end.bias, std=0.05)
    return model


def test_inverse_of_forward_reproduces_random_audio_and_mel() -> None:
    model = trained_looking(TINY).eval()
    generator = torch.Generator().manual_seed(1)
    frames = 12
    audio = 0.5 * torch.randn(3, frames * TINY.hop_length, generator=generator)
    mel = torch.randn(3, TINY.n_mels, frames, generator=generator)
    with torch.no_grad():
        output = model(audio, mel)
        assert output.z.shape == (3, TINY.n_group, frames * TINY.hop_length // TINY.n_group)
        assert output.log_det.abs().min() > 0  # the couplings really scale
        back = model.inverse(output.z, mel)
    assert back.shape == audio.shape
    assert (back - audio).abs().max().item() < 1e-4


def test_reported_log_determinant_equals_slogdet_of_the_full_jacobian() -> None:
    config = dataclasses.replace(
        TINY, n_flows=4, n_layers=2, n_channels=8, n_mels=4, hop_length=16, n_fft=64,
        win_length=64, upsample_kernel_size=64, segment_length=64,
    )  # fmt: skip
    model = trained_looking(config, seed=2).double()
    audio = 0.3 * torch.randn(1, 3 * config.hop_length, dtype=torch.float64)
    mel = torch.randn(1, config.n_mels, 3, dtype=torch.float64)

    def flow(x: torch.Tensor) -> torch.Tensor:
        return model(x.view(1, -1), mel).z.reshape(-1)

    jacobian = torch.autograd.functional.jacobian(flow, audio.view(-1))
    assert jacobian.shape == (48, 48)
    sign, log_abs_det = torch.linalg.slogdet(jacobian)
    reported = model(audio, mel).log_det
    assert sign.item() != 0
    assert abs(reported.item() - log_abs_det.item()) < 1e-8
    assert abs(log_abs_det.item()) > 0.1  # a map that really changes volume


def test_a_fresh_waveglow_is_volume_preserving_and_its_couplings_are_the_identity() -> None:
    # Orthonormal 1x1 convolutions with det +1 and zero-initialised WN outputs (section 2.1).
    torch.manual_seed(0)
    model = WaveGlow(TINY)
    for conv in model.convinv:
        assert torch.linalg.det(conv.weight).item() == pytest.approx(1.0, abs=1e-5)
        identity = torch.eye(conv.weight.shape[0])
        assert torch.allclose(conv.weight @ conv.weight.T, identity, atol=1e-5)
    audio = 0.1 * torch.randn(2, 8 * TINY.hop_length)
    output = model(audio, torch.randn(2, TINY.n_mels, 8))
    assert output.log_det.abs().max().item() < 1e-4
    # Rotations keep the energy, so the loss is sum x^2 / 2 per sample.
    expected = (audio**2).sum() / 2 / audio.numel()
    assert waveglow_loss(output).item() == pytest.approx(expected.item(), rel=1e-4)


def test_the_recipe_has_the_published_parameter_count() -> None:
    # NVIDIA/waveglow's config.json (12 flows, WN 8 x 256, kernel 3, n_group 8, early 2 every
    # 4, 80 mels): 87.88 M parameters with weight norm, as the paper's "88 M".
    cfg = load_config(REPO / "params.yaml", REPO / "configs" / "ljspeech-waveglow.yaml")
    config = model_config(cfg, "waveglow", WaveGlowConfig)
    assert config == WaveGlowConfig()  # the recipe says what the dataclass's defaults say
    model = WaveGlow(config)
    assert sum(p.numel() for p in model.parameters()) == 87_879_272
    assert config.remaining_channels == 4
    assert model.upsample.kernel_size == (1024,) and model.upsample.stride == (256,)


def test_infer_makes_audio_of_the_mels_length_and_the_seed_fixes_it() -> None:
    model = trained_looking(TINY).eval()
    mel = torch.randn(2, TINY.n_mels, 5)
    a = model.infer(mel, generator=torch.Generator().manual_seed(3))
    b = model.infer(mel, generator=torch.Generator().manual_seed(3))
    quiet = model.infer(mel, sigma=0.0)
    assert a.shape == (2, 5 * TINY.hop_length) and torch.equal(a, b)
    assert a.abs().sum() > quiet.abs().sum()  # sigma scales the noise that becomes audio


def test_vocode_mel_speaks_an_acoustic_model_s_frames_as_synthesize_speaks_a_clip_s() -> None:
    """A voice's frames through a WaveGlow champion (evaluation/voice.py takes any vocoder
    with `vocode_mel`; without one a TTS was voiced by Griffin-Lim): one hop of audio per
    frame, the same samples as resynthesizing the clip those frames came from."""
    from wavefoundry.audio import log_mel
    from wavefoundry.families.base import whole_frames

    family = WaveGlowFamily(TINY, DataSpec(dataset="ljspeech", sample_rate=22050))
    net = trained_looking(TINY).eval()
    clip = 0.3 * torch.sin(2 * torch.pi * 220 * torch.arange(1000) / 22050)
    mel = log_mel(whole_frames(clip, family.mel), family.mel)
    spoken = family.vocode_mel(net, mel)
    assert spoken.shape == (mel.shape[-1] * TINY.hop_length,) and spoken.abs().max() <= 1.0
    assert torch.equal(spoken[: len(clip)], family.synthesize(net, clip, {}))


def test_folding_weight_norm_keeps_the_outputs() -> None:
    model = trained_looking(TINY).eval()
    audio, mel = 0.2 * torch.randn(1, 4 * TINY.hop_length), torch.randn(1, TINY.n_mels, 4)
    with torch.no_grad():
        before = model(audio, mel).z
        model.remove_weight_norm()
        after = model(audio, mel).z
    assert not any("parametrizations" in name for name, _ in model.named_parameters())
    assert torch.allclose(before, after, atol=1e-5)


def test_training_steps_lower_the_negative_log_likelihood() -> None:
    torch.manual_seed(0)
    family = WaveGlowFamily(TINY, DataSpec("ljspeech", 16000))
    nets = family.build()
    step = Stepper(family.optimizers(nets), torch.device("cpu"))
    t = torch.arange(TINY.segment_length) / 16000
    audio = torch.stack([0.3 * torch.sin(2 * torch.pi * f * t) for f in (150.0, 220.0)])
    batch = family.prepare({"audio": audio + 0.01 * torch.randn_like(audio)}, torch.device("cpu"))
    losses = []
    for _ in range(15):
        losses.append(family.train_step(nets, batch, step)["loss"])
        step.finish()
    assert losses[-1] < losses[0] - 0.5, losses
    generated = family.synthesize(family.for_inference(nets["waveglow"]), audio[0, :1000], {})
    assert generated.shape == (1000,) and torch.isfinite(generated).all()
