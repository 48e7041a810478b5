"""Vocos: the paper's sizes, the iSTFT head's framing, and a few steps of its family."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from wavefoundry.audio import MelConfig, log_mel, whole_frame_log_mel
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.vocos import VocosFamily
from wavefoundry.models.vocos import ISTFT, Vocos, VocosConfig
from wavefoundry.training.step import Stepper

TINY = dict(dim=32, intermediate_dim=64, num_layers=2, segment_length=2048, learning_rate=3e-3)


def test_the_defaults_build_the_papers_13_5_m_parameter_generator() -> None:
    generator = Vocos(VocosConfig())
    assert sum(p.numel() for p in generator.parameters()) == pytest.approx(13.5e6, rel=0.01)


def test_istft_inverts_an_stft_framed_like_the_mel_n_frames_to_n_hops() -> None:
    n_fft, hop = 1024, 256
    audio = torch.randn(2, 40 * hop)
    pad = (n_fft - hop) // 2  # wavefoundry.audio.log_mel's framing
    padded = F.pad(audio.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    window = torch.hann_window(n_fft)
    spectrum = torch.stft(padded, n_fft, hop, window=window, center=False, return_complex=True)
    assert spectrum.shape[-1] == 40
    rebuilt = ISTFT(n_fft, hop, n_fft)(spectrum)
    assert rebuilt.shape == audio.shape
    assert (rebuilt - audio).abs().max() < 1e-4


@pytest.mark.parametrize("phase", ["direct", "instantaneous_frequency"])
def test_the_generator_makes_one_hop_of_audio_per_mel_frame(phase: str) -> None:
    generator = Vocos(VocosConfig(**{**TINY, "phase": phase}))
    mel = log_mel(0.1 * torch.randn(3, 25 * 256), MelConfig())
    assert generator(mel).shape == (3, 25 * 256)
    audio = generator.infer(mel[0])
    assert audio.shape == (25 * 256,) and audio.abs().max() <= 1.0


def test_a_wrong_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="segment_length 1000 must be a multiple of hop_length"):
        VocosConfig(segment_length=1000)
    with pytest.raises(ValueError, match="phase must be"):
        VocosConfig(phase="random")


def test_a_few_steps_lower_the_losses_and_synthesize_keeps_the_length() -> None:
    torch.manual_seed(0)
    config = VocosConfig(**TINY, mel_weight=1.0, mrstft_weight=1.0)
    family = VocosFamily(config, DataSpec(dataset="ljspeech", sample_rate=22050))
    nets = family.build()
    step = Stepper(family.optimizers(nets), torch.device("cpu"))
    t = torch.arange(family.segment_length) / 22050
    audio = 0.5 * torch.sin(2 * math.pi * torch.tensor([[110.0], [220.0]]) * t)
    batch = family.prepare({"audio": audio, "clip_id": ["a", "b"]}, torch.device("cpu"))
    first = family.evaluate(nets, batch)["loss"]
    for _ in range(20):
        losses = family.train_step(nets, batch, step)
        step.finish()
        assert {"loss", "loss_mel", "loss_mrstft", "loss_generator"} <= set(losses)
        assert all(math.isfinite(v) for v in losses.values())
    assert family.evaluate(nets, batch)["loss"] < first
    clip = audio[0, :3000]
    made = family.synthesize(nets["generator"], clip, {})
    assert made.shape == clip.shape and made.abs().max() <= 1.0
    with pytest.raises(ValueError, match="vocoder"):
        family.synthesize(nets["generator"], None, {})


def test_vocode_mel_speaks_an_acoustic_model_s_frames_as_synthesize_speaks_a_clip_s() -> None:
    """A voice's frames through a Vocos champion: one hop of audio per frame, and the same
    samples as resynthesizing the clip those frames were taken from."""
    torch.manual_seed(0)
    family = VocosFamily(VocosConfig(**TINY), DataSpec(dataset="ljspeech", sample_rate=22050))
    generator = family.build()["generator"].eval()
    clip = 0.3 * torch.sin(2 * math.pi * 220 * torch.arange(5000) / 22050)
    mel = whole_frame_log_mel(clip, family.mel)
    spoken = family.vocode_mel(generator, mel)
    assert spoken.shape == (mel.shape[-1] * 256,) and spoken.abs().max() <= 1.0
    assert torch.equal(spoken[: len(clip)], family.synthesize(generator, clip, {}))
