"""WaveGAN (Donahue, McAuley and Puckette, "Adversarial Audio Synthesis", 2018).

DCGAN flattened to one dimension: a dense layer and five transposed convolutions (stride 4,
kernel 25) turn a 100-d latent into 16,384 samples; the discriminator mirrors it with strided
convolutions and shuffles the phase of its feature maps so it cannot reject generated audio by
the periodic artifacts of upsampling alone. Trained with the WGAN-GP loss.

For NSynth the model is conditioned on the MIDI pitch: the generator concatenates a pitch
embedding to its latent, and the discriminator adds a projection term <embed(pitch), features>
to its score (Miyato and Koyama, "cGANs with Projection Discriminator", 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class WaveGANConfig:
    latent_dim: int = 100
    model_size: int = 64  # d: the last generator layer has d channels, the first 16d
    slice_length: int = 16384  # samples the generator makes: 16 * stride**5 in the paper
    kernel_size: int = 25
    stride: int = 4
    phase_shuffle: int = 2  # n: feature maps shift by up to n samples either way
    leaky_relu_slope: float = 0.2
    gradient_penalty_weight: float = 10.0  # lambda of WGAN-GP
    critic_updates: int = 5  # discriminator updates per generator update
    pitches: int = 0  # 0: unconditional; 128 MIDI pitches for NSynth (filled from the data)
    pitch_embedding_dim: int = 32
    learning_rate: float = 1e-4
    adam_betas: tuple[float, float] = (0.5, 0.9)

    def __post_init__(self) -> None:
        if self.slice_length % self.stride**5:
            raise ValueError(
                f"slice_length {self.slice_length} must be divisible by stride**5 = "
                f"{self.stride**5}: five layers each change the length by the stride"
            )

    @property
    def initial_length(self) -> int:
        """Length of the generator's first feature map (16 in the paper)."""
        return self.slice_length // self.stride**5

    @property
    def segment_length(self) -> int:
        """Training examples are exactly one slice."""
        return self.slice_length


def sample_latents(
    batch: int, config: WaveGANConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z ~ Uniform(-1, 1)^latent_dim, as in the paper; on the CPU so a seed means the same
    latents on every device."""
    return torch.rand(batch, config.latent_dim, generator=generator) * 2 - 1


class Generator(nn.Module):
    def __init__(self, config: WaveGANConfig):
        super().__init__()
        self.config = config
        d, k, s = config.model_size, config.kernel_size, config.stride
        self.pitch_embedding = (
            nn.Embedding(config.pitches, config.pitch_embedding_dim) if config.pitches else None
        )
        inputs = config.latent_dim + (config.pitch_embedding_dim if config.pitches else 0)
        self.dense = nn.Linear(inputs, config.initial_length * 16 * d)
        # Padding and output padding chosen so each layer multiplies the length by exactly s.
        padding = (k - s + 1) // 2
        output_padding = 2 * padding - (k - s)
        channels = [16 * d, 8 * d, 4 * d, 2 * d, d, 1]
        self.upsample = nn.ModuleList(
            nn.ConvTranspose1d(c_in, c_out, k, s, padding, output_padding)
            for c_in, c_out in pairwise(channels)
        )

    def forward(self, latents: torch.Tensor, pitch: torch.Tensor | None = None) -> torch.Tensor:
        """(B, latent_dim) latents and (B,) MIDI pitches -> (B, slice_length) audio in [-1, 1]."""
        if self.pitch_embedding is not None:
            if pitch is None:
                raise ValueError("this generator is conditioned on pitch: pass `pitch`")
            latents = torch.cat([latents, self.pitch_embedding(pitch)], dim=1)
        x = self.dense(latents).view(latents.shape[0], -1, self.config.initial_length)
        x = F.relu(x)
        for i, layer in enumerate(self.upsample):
            x = layer(x)
            x = torch.tanh(x) if i == len(self.upsample) - 1 else F.relu(x)
        return x.squeeze(1)


class PhaseShuffle(nn.Module):
    """Shift each example's feature maps by a random k in [-n, n], filling the edge by
    reflection. Only while training: in eval mode it is the identity."""

    def __init__(self, shift: int):
        super().__init__()
        self.shift = shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.shift == 0:
            return x
        n = self.shift
        batch, channels, length = x.shape
        k = torch.randint(-n, n + 1, (batch, 1, 1), device=x.device)
        # output[t] = x[t - k], read from x reflect-padded by n on both sides
        index = torch.arange(length, device=x.device) + n - k
        padded = F.pad(x, (n, n), mode="reflect")
        return padded.gather(2, index.expand(batch, channels, length))


class Discriminator(nn.Module):
    """The critic: a real-valued score per example, higher for audio it takes to be real."""

    def __init__(self, config: WaveGANConfig):
        super().__init__()
        d, k, s = config.model_size, config.kernel_size, config.stride
        channels = [1, d, 2 * d, 4 * d, 8 * d, 16 * d]
        self.downsample = nn.ModuleList(
            nn.Conv1d(c_in, c_out, k, s, padding=k // 2) for c_in, c_out in pairwise(channels)
        )
        self.phase_shuffle = PhaseShuffle(config.phase_shuffle)
        self.slope = config.leaky_relu_slope
        features = config.initial_length * 16 * d
        self.dense = nn.Linear(features, 1)
        self.pitch_projection = None
        if config.pitches:
            self.pitch_projection = nn.Embedding(config.pitches, features)
            nn.init.xavier_uniform_(self.pitch_projection.weight)

    def forward(self, audio: torch.Tensor, pitch: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T) audio and (B,) MIDI pitches -> (B,) scores."""
        x = audio.unsqueeze(1)
        for i, layer in enumerate(self.downsample):
            x = F.leaky_relu(layer(x), self.slope)
            if i < len(self.downsample) - 1:
                x = self.phase_shuffle(x)
        features = x.flatten(1)
        score = self.dense(features).squeeze(1)
        if self.pitch_projection is not None:
            if pitch is None:
                raise ValueError("this discriminator is conditioned on pitch: pass `pitch`")
            score = score + (self.pitch_projection(pitch) * features).sum(1)
        return score


def gradient_penalty(
    discriminator: nn.Module,
    real: torch.Tensor,
    fake: torch.Tensor,
    pitch: torch.Tensor | None = None,
) -> torch.Tensor:
    """WGAN-GP: E[(||grad D(x_hat)||_2 - 1)^2] at random points x_hat between real and fake
    examples, which keeps the critic close to 1-Lipschitz."""
    alpha = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device)
    between = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    scores = discriminator(between, pitch)
    (grad,) = torch.autograd.grad(scores.sum(), between, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The critic minimises D(fake) - D(real), i.e. maximises the Wasserstein estimate."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    return -fake_scores.mean()


@torch.no_grad()
def generate(
    generator: Generator, pitch: torch.Tensor | None = None, seed: int = 0, batch: int = 1
) -> torch.Tensor:
    """`batch` clips of slice_length samples from latents drawn with `seed` (no global RNG);
    `pitch` is (batch,) MIDI pitches for a conditioned generator."""
    device = next(generator.parameters()).device
    latents = sample_latents(batch, generator.config, torch.Generator().manual_seed(seed))
    if pitch is not None:
        pitch = pitch.to(device)
    return generator(latents.to(device), pitch)
