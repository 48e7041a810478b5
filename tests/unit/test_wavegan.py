"""WaveGAN: the generator's output, phase shuffle, the gradient penalty, pitch conditioning, and
the training family on a collated NSynth-shaped batch."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wavefoundry.data.stored import DataSpec
from wavefoundry.errors import UserError
from wavefoundry.families.wavegan import WaveGANFamily
from wavefoundry.models.wavegan import (
    Discriminator,
    Generator,
    PhaseShuffle,
    WaveGANConfig,
    generate,
    gradient_penalty,
    sample_latents,
)
from wavefoundry.training.step import Stepper

TINY = WaveGANConfig(model_size=2, pitches=128, pitch_embedding_dim=4)


class LinearCritic(nn.Module):
    """D(x) = <w, x>: its gradient is w everywhere."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, audio: torch.Tensor, pitch: torch.Tensor | None = None) -> torch.Tensor:
        return audio @ self.weight


def test_config_defaults_are_the_papers():
    config = WaveGANConfig()
    assert (config.latent_dim, config.model_size, config.slice_length) == (100, 64, 16384)
    assert (config.kernel_size, config.stride, config.phase_shuffle) == (25, 4, 2)
    assert config.segment_length == 16384 and config.initial_length == 16
    with pytest.raises(ValueError, match="divisible"):
        WaveGANConfig(slice_length=16000)


def test_generator_makes_16384_samples_in_range():
    torch.manual_seed(0)
    audio = Generator(TINY)(sample_latents(3, TINY), torch.tensor([40, 60, 80]))
    assert audio.shape == (3, 16384)
    assert audio.abs().max() <= 1 and audio.std() > 0


def test_discriminator_scores_each_example():
    torch.manual_seed(0)
    scores = Discriminator(TINY)(torch.rand(3, 16384) * 2 - 1, torch.tensor([40, 60, 80]))
    assert scores.shape == (3,) and torch.isfinite(scores).all()


def test_phase_shuffle_shifts_each_example_within_n_and_is_identity_in_eval():
    torch.manual_seed(0)
    n, length = 2, 32
    x = torch.arange(64 * 3 * length, dtype=torch.float).view(64, 3, length)
    shuffle = PhaseShuffle(n)
    out = shuffle(x)
    shifts = []
    for b in range(len(x)):
        matches = [
            k
            for k in range(-n, n + 1)
            if torch.equal(out[b, :, n : length - n], x[b, :, n - k : length - n - k])
        ]
        assert len(matches) == 1, f"example {b} is not x shifted by at most {n}"
        shifts.append(matches[0])
        assert set(out[b].flatten().tolist()) <= set(x[b].flatten().tolist())  # reflected edges
    assert set(shifts) == set(range(-n, n + 1))  # every shift occurs, per example
    shuffle.eval()
    assert torch.equal(shuffle(x), x)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic_and_not_otherwise():
    torch.manual_seed(0)
    real, fake = torch.randn(4, 64), torch.randn(4, 64)
    direction = torch.randn(64)
    unit = LinearCritic(direction / direction.norm())
    assert gradient_penalty(unit, real, fake).item() == pytest.approx(0, abs=1e-10)
    steep = LinearCritic(3 * direction / direction.norm())
    assert gradient_penalty(steep, real, fake).item() == pytest.approx(4, rel=1e-5)


def test_gradient_penalty_on_the_discriminator_is_positive_and_trains_it():
    torch.manual_seed(0)
    discriminator = Discriminator(TINY)
    real, fake = torch.rand(2, 16384) * 2 - 1, torch.rand(2, 16384) * 2 - 1
    penalty = gradient_penalty(discriminator, real, fake, torch.tensor([50, 70]))
    assert math.isfinite(penalty.item()) and penalty.item() > 0
    penalty.backward()
    # Biases only move the LeakyReLU kinks, so the input gradient's norm depends on the weights.
    grads = [layer.weight.grad for layer in discriminator.downsample]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_pitch_changes_what_the_generator_makes():
    torch.manual_seed(0)
    generator = Generator(TINY)
    low = generate(generator, torch.tensor([40]), seed=3)
    high = generate(generator, torch.tensor([80]), seed=3)
    assert not torch.allclose(low, high)
    assert torch.equal(low, generate(generator, torch.tensor([40]), seed=3))


def nsynth_batch(size: int = 2) -> dict:
    """What the default collate makes of NSynth SegmentDataset items."""
    return {
        "audio": torch.rand(size, 16384) * 1.6 - 0.8,
        "clip_id": [f"note-{i}" for i in range(size)],
        "pitch": torch.tensor([40, 52, 64, 76][:size]),
        "velocity": torch.full((size,), 100),
        "instrument_family": torch.zeros(size, dtype=torch.long),
        "instrument_family_str": ["bass"] * size,
    }


def test_family_trains_and_makes_notes():
    torch.manual_seed(0)
    config = WaveGANConfig(model_size=2, pitch_embedding_dim=4, critic_updates=2)
    family = WaveGANFamily(config, DataSpec("nsynth", 16000))
    assert family.config.pitches == 128 and family.segment_length == 16384
    nets = family.build()
    step = Stepper(family.optimizers(nets), torch.device("cpu"))
    batch = family.prepare(nsynth_batch(), torch.device("cpu"))
    assert batch["pitch"].dtype == torch.long

    generator_changed = []
    for _ in range(3):
        before = [p.detach().clone() for p in nets["generator"].parameters()]
        losses = family.train_step(nets, batch, step)
        step.finish()
        after = list(nets["generator"].parameters())
        generator_changed.append(
            any(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
        )
        expected = {"loss", "loss_discriminator", "wasserstein_distance", "gradient_penalty"}
        assert expected | {"loss_generator"} <= losses.keys()
        assert all(math.isfinite(v) for v in losses.values())
    assert generator_changed == [True, False, True]  # one generator update per 2 critic updates

    for net in nets.values():
        net.eval()
    assert all(math.isfinite(v) for v in family.evaluate(nets, batch).values())
    reference, generated = family.sample(nets, batch)
    assert torch.equal(reference, batch["audio"])
    assert generated.shape == (2, 16384) and generated.abs().max() <= 1

    rng_state = torch.get_rng_state()
    note = family.synthesize(nets["generator"], None, {"pitch": 60, "seed": 1})
    assert torch.equal(torch.get_rng_state(), rng_state)  # seeded without the global RNG
    assert note.shape == (16384,) and note.abs().max() <= 1
    assert torch.equal(note, family.synthesize(nets["generator"], None, {"pitch": 60, "seed": 1}))
    assert not torch.equal(note, family.synthesize(nets["generator"], None, {"seed": 2}))
    with pytest.raises(UserError, match="MIDI"):
        family.synthesize(nets["generator"], None, {"pitch": 128})
