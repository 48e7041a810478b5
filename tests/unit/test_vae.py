"""The waveform VAE: its KL term is the closed form, its latent has the right shape and
rate, training improves reconstructions, and a conversion keeps the input's length."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from wavefoundry.data.stored import DataSpec
from wavefoundry.families.vae import VAEFamily
from wavefoundry.models.vae import VAE, VAEConfig, VAEOutput, kl_divergence, vae_loss
from wavefoundry.training.step import Stepper

TINY = VAEConfig(
    ratios=(4, 2),
    capacity=8,
    latent_size=8,
    speaker_embedding_dim=8,
    kl_warmup_steps=10,
    learning_rate=3e-3,
    adam_betas=(0.9, 0.999),
    segment_length=2048,
)
SPEAKERS = ("p225", "p226", "p227")


def test_kl_is_zero_for_a_posterior_equal_to_the_prior() -> None:
    mean, std = torch.zeros(2, 4, 7), torch.ones(2, 4, 7)
    assert kl_divergence(mean, std).item() == 0.0


def test_kl_matches_the_closed_form_on_a_known_gaussian() -> None:
    # KL(N(1, 2^2) || N(0, 1)) = log(1/2) + (4 + 1) / 2 - 1/2 = 2 - log 2 per latent channel.
    per_channel = 2.0 - math.log(2.0)
    mean, std = torch.ones(3, 5, 4), torch.full((3, 5, 4), 2.0)
    assert kl_divergence(mean, std).item() == pytest.approx(5 * per_channel, rel=1e-6)
    # And torch's own Normal-Normal KL on a mixed posterior, summed over channels.
    mean, std = torch.randn(2, 6, 3), torch.rand(2, 6, 3) + 0.1
    reference = torch.distributions.kl_divergence(
        torch.distributions.Normal(mean, std), torch.distributions.Normal(0.0, 1.0)
    )
    assert kl_divergence(mean, std).item() == pytest.approx(reference.sum(1).mean().item())


def test_beta_warms_up_linearly_then_stays() -> None:
    config = VAEConfig(beta=0.1, kl_warmup_steps=100)
    assert [config.beta_at(s) for s in (0, 50, 100, 1000)] == pytest.approx([0, 0.05, 0.1, 0.1])
    loss = vae_loss(
        VAEOutput(torch.zeros(1, 2048), torch.ones(1, 2, 4), torch.ones(1, 2, 4)),
        torch.zeros(1, 2048),
        beta=0.5,
        waveform_loss_weight=1.0,
    )
    assert loss.kl.item() == pytest.approx(1.0)  # 0.5 * 1 per channel, two channels
    assert loss.total.item() == pytest.approx(loss.stft.item() + 0.5)


def test_shapes_reparameterisation_and_eval_uses_the_mean() -> None:
    torch.manual_seed(0)
    model = VAE(dataclasses.replace(TINY, speakers=3))
    audio = 0.1 * torch.randn(2, 1000)  # not a whole number of latent frames
    model.train()
    a, b = model(audio), model(audio)
    assert a.reconstruction.shape == (2, 1000)
    assert a.mean.shape == (2, TINY.latent_size, math.ceil(1000 / TINY.hop_length))
    assert (a.std > 0).all()
    assert not torch.equal(a.reconstruction, b.reconstruction)  # z is sampled in training
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(audio).reconstruction, model(audio).reconstruction)


def speech_like(items: int, length: int, sample_rate: int = 16000, seed: int = 0) -> torch.Tensor:
    """Harmonic tones with a syllable-rate envelope, (items, length) in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / sample_rate
    f0 = 100 + 150 * torch.rand(items, 1, generator=generator)
    envelope = 0.5 + 0.5 * torch.sin(
        2 * math.pi * 4 * t + torch.rand(items, 1, generator=generator)
    )
    audio = sum(torch.sin(2 * math.pi * k * f0 * t) / k for k in range(1, 6))
    return 0.3 * envelope * audio


def test_training_improves_reconstruction_snr_and_convert_keeps_the_length() -> None:
    torch.manual_seed(0)
    family = VAEFamily(TINY, DataSpec("vctk", 16000, SPEAKERS))
    assert family.config.speakers == 3
    nets = family.build()
    step = Stepper(family.optimizers(nets), torch.device("cpu"))
    audio = speech_like(4, TINY.segment_length)
    batch = family.prepare(
        {"audio": audio, "speaker": ["p225", "p226", "p227", "p225"]}, torch.device("cpu")
    )
    history = []
    for _ in range(30):
        history.append(family.train_step(nets, batch, step))
        step.finish()
    assert history[0]["beta"] == 0.0 and history[-1]["beta"] == pytest.approx(TINY.beta)
    assert history[-1]["snr_db"] > history[0]["snr_db"] + 3, [h["snr_db"] for h in history]
    assert history[-1]["loss_stft"] < history[0]["loss_stft"]

    net = nets["vae"].eval()
    clip = speech_like(1, 3001, seed=5)[0]  # any length, not a whole latent frame
    same = family.synthesize(net, clip, {"speaker": "p225"})
    other = family.synthesize(net, clip, {"speaker": "p227"})
    assert same.shape == other.shape == clip.shape
    assert not torch.equal(same, other)  # the decoder listens to the speaker
    with pytest.raises(ValueError, match="unknown speaker 'p999'"):
        family.synthesize(net, clip, {"speaker": "p999"})
    (kbps,) = family.clip_metrics(net, clip, {}).values()
    assert kbps > 0
