"""A convolutional waveform VAE (Kingma & Welling 2014, "Auto-Encoding Variational Bayes"),
shaped like RAVE's first stage (Caillon & Esling 2021, "RAVE: A variational autoencoder for
fast and high-quality neural audio synthesis").

The encoder compresses the waveform by the product of `ratios` (4 * 4 * 4 * 2 = 128x, RAVE's)
with strided convolutions whose channels double at each step, and ends in the mean and
standard deviation of a diagonal Gaussian posterior q(z | x) over `latent_size` channels per
latent frame. Training samples z by the reparameterisation z = mu + sigma * eps, eps ~ N(0, I);
inference uses mu. The decoder mirrors the encoder with transposed convolutions, each followed
by a residual stack of dilated convolutions (dilations 1, 3, 9), and is conditioned on a
speaker embedding at every scale, so that decoding one utterance's latents with another
speaker converts the voice (as the VQ-VAE does with its codes).

Loss (the evidence lower bound with a weighted KL, a beta-VAE, Higgins et al. 2017):
    multi-resolution STFT distance (spectral convergence + log magnitude, RAVE's
    reconstruction term) + waveform_loss_weight * L1 + beta_t * KL(q(z|x) || N(0, I)),
with beta_t warmed up linearly from 0 to `beta` (RAVE: 0.1) over `kl_warmup_steps`, so the
latent first learns to carry the signal and is only then pulled towards the prior (Bowman
et al. 2016). The waveform L1 is not RAVE's: it keeps the phase, which makes reconstruction
SNR a meaningful score on a codec's held-out set; 0 gives RAVE's purely spectral loss.
RAVE's second, adversarial stage is left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.models.losses import multi_resolution_stft_loss


@dataclass(frozen=True)
class VAEConfig:
    # Encoder / decoder (RAVE's: ratios 4, 4, 4, 2, capacity 64, latent size 128)
    ratios: tuple[int, ...] = (4, 4, 4, 2)  # downsampling per stage; the hop is their product
    capacity: int = 64  # channels after the first convolution, doubled at each stage
    latent_size: int = 128
    dilations: tuple[int, ...] = (1, 3, 9)  # of each decoder stage's residual stack
    # Speakers (0 = an unconditional decoder; the family fills it from the data)
    speakers: int = 0
    speaker_embedding_dim: int = 64
    # Loss
    beta: float = 0.1  # weight of the KL term once warmed up (RAVE)
    kl_warmup_steps: int = 10000  # beta grows linearly from 0 over these steps
    waveform_loss_weight: float = 1.0  # on the waveform L1; 0 for RAVE's spectral loss alone
    # Optimisation (RAVE: Adam at 1e-4, beta1 0.5, beta2 0.9; segments of 65,536 samples)
    learning_rate: float = 1e-4
    adam_betas: tuple[float, float] = (0.5, 0.9)
    segment_length: int = 65536

    def __post_init__(self) -> None:
        if not self.ratios or min(self.ratios) < 2:
            raise ValueError(f"ratios must be one or more integers >= 2, got {self.ratios}")
        if self.segment_length % self.hop_length:
            raise ValueError(
                f"segment_length {self.segment_length} is not a multiple of the product of "
                f"ratios {self.ratios} = {self.hop_length}"
            )
        if self.beta < 0 or self.kl_warmup_steps < 0:
            raise ValueError("beta and kl_warmup_steps must not be negative")

    @property
    def hop_length(self) -> int:
        """Samples per latent frame."""
        return math.prod(self.ratios)

    def beta_at(self, step: int) -> float:
        """The KL weight at training step `step` (from 0): beta * min(1, step / warm-up)."""
        if self.kl_warmup_steps == 0:
            return self.beta
        return self.beta * min(1.0, step / self.kl_warmup_steps)


class VAEOutput(NamedTuple):
    reconstruction: torch.Tensor  # (B, T) in (-1, 1)
    mean: torch.Tensor  # (B, latent_size, T / hop): mu of q(z | x)
    std: torch.Tensor  # (B, latent_size, T / hop): sigma of q(z | x)


class VAELoss(NamedTuple):
    total: torch.Tensor
    stft: torch.Tensor  # spectral convergence + log STFT magnitude
    waveform_l1: torch.Tensor
    kl: torch.Tensor  # nats per latent frame, summed over the latent channels


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


def _channels(config: VAEConfig) -> list[int]:
    """Channels at each scale, from the waveform's side: capacity * 2^i."""
    return [config.capacity * 2**i for i in range(len(config.ratios) + 1)]


class Encoder(nn.Module):
    """(B, T) waveform -> mean and standard deviation of q(z | x), each (B, latent, T / hop).
    Each stage: LeakyReLU(0.2), then a convolution of window 2r + 1 and stride r."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = _channels(config)
        self.input_conv = nn.Conv1d(1, channels[0], 7, padding=3)
        self.downsampling = nn.ModuleList(
            nn.Conv1d(channels[i], channels[i + 1], 2 * r + 1, stride=r, padding=r)
            for i, r in enumerate(config.ratios)
        )
        self.output_conv = nn.Conv1d(channels[-1], 2 * config.latent_size, 5, padding=2)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.input_conv(audio.unsqueeze(1))
        for conv in self.downsampling:
            x = conv(F.leaky_relu(x, 0.2))
        mean, scale = self.output_conv(F.leaky_relu(x, 0.2)).chunk(2, dim=1)
        return mean, F.softplus(scale) + 1e-4  # RAVE's parameterisation of sigma


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------


class ResidualStack(nn.Module):
    """Dilated residual convolutions (kernel 3, dilations 1, 3, 9) with the speaker's
    embedding added to each block's input: x + conv(LeakyReLU(conv_d(LeakyReLU(x + s))))."""

    def __init__(self, channels: int, dilations: tuple[int, ...], speaker_dim: int):
        super().__init__()
        self.speaker_projection = nn.Linear(speaker_dim, channels) if speaker_dim else None
        self.blocks = nn.ModuleList(
            nn.Sequential(
                nn.LeakyReLU(0.2),
                nn.Conv1d(channels, channels, 3, dilation=d, padding=d),
                nn.LeakyReLU(0.2),
                nn.Conv1d(channels, channels, 1),
            )
            for d in dilations
        )

    def forward(self, x: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        if self.speaker_projection is not None and speaker is not None:
            x = x + self.speaker_projection(speaker).unsqueeze(-1)
        for block in self.blocks:
            x = x + block(x)
        return x


class Decoder(nn.Module):
    """(B, latent, L) latents and a (B, speaker_dim) speaker embedding -> (B, L * hop)
    waveform in (-1, 1). Each stage: LeakyReLU(0.2), a transposed convolution of window 2r
    and stride r (exactly r times longer), a residual stack."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        channels = _channels(config)[::-1]
        speaker_dim = config.speaker_embedding_dim if config.speakers else 0
        self.input_conv = nn.Conv1d(config.latent_size, channels[0], 7, padding=3)
        self.upsampling = nn.ModuleList()
        self.residual_stacks = nn.ModuleList()
        for i, r in enumerate(reversed(config.ratios)):
            self.upsampling.append(
                nn.ConvTranspose1d(
                    channels[i],
                    channels[i + 1],
                    2 * r,
                    stride=r,
                    padding=r // 2 + r % 2,
                    output_padding=r % 2,
                )
            )
            self.residual_stacks.append(
                ResidualStack(channels[i + 1], config.dilations, speaker_dim)
            )
        self.output_conv = nn.Conv1d(channels[-1], 1, 7, padding=3)

    def forward(self, z: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        x = self.input_conv(z)
        for upsample, stack in zip(self.upsampling, self.residual_stacks, strict=True):
            x = stack(upsample(F.leaky_relu(x, 0.2)), speaker)
        return torch.tanh(self.output_conv(F.leaky_relu(x, 0.2))).squeeze(1)


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def kl_divergence(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(0, 1)) in nats, in closed form (Kingma & Welling 2014,
    appendix B): 0.5 * (mean^2 + std^2 - 1 - log std^2), summed over the latent channels (dim
    1) and averaged over the batch and latent frames. (B, latent, L) each -> scalar."""
    variance = std.float().pow(2)
    terms = mean.float().pow(2) + variance - 1 - torch.log(variance)
    return 0.5 * terms.sum(dim=1).mean()


def vae_loss(
    output: VAEOutput, audio: torch.Tensor, beta: float, waveform_loss_weight: float
) -> VAELoss:
    """MR-STFT + waveform_loss_weight * L1 + beta * KL, for the (B, T) reference `audio`."""
    reconstruction = output.reconstruction.float()
    spectral_convergence, log_magnitude = multi_resolution_stft_loss(reconstruction, audio)
    stft = spectral_convergence + log_magnitude
    waveform_l1 = F.l1_loss(reconstruction, audio.float())
    kl = kl_divergence(output.mean, output.std)
    total = stft + waveform_loss_weight * waveform_l1 + beta * kl
    return VAELoss(total, stft, waveform_l1, kl)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class VAE(nn.Module):
    """Encoder -> Gaussian latent -> speaker-conditioned decoder; `encode`, `decode` and
    `convert` (voice conversion) for inference."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.speaker_embedding = (
            nn.Embedding(config.speakers, config.speaker_embedding_dim) if config.speakers else None
        )
        self.decoder = Decoder(config)
        # He initialisation (as in models/vqvae.py): with PyTorch's defaults each layer shrinks
        # the signal, the output hardly depends on the latent at first, and training sits at
        # the all-zero reconstruction while the KL term closes the latent.
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
                nn.init.kaiming_normal_(module.weight, a=0.2, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        # ... except the last convolution, kept small so that the first reconstructions are
        # quiet rather than tanh-saturated noise.
        self.decoder.output_conv.weight.data.mul_(0.1)
        if self.speaker_embedding is not None:
            nn.init.normal_(self.speaker_embedding.weight, std=0.1)

    def forward(self, audio: torch.Tensor, speaker: torch.Tensor | None = None) -> VAEOutput:
        """(B, T) audio and (B,) speaker indices (None: speaker 0) -> VAEOutput. In training
        mode the latent is a sample of q(z | x) (reparameterised); in eval mode its mean. T is
        padded to a whole latent frame inside and the reconstruction trimmed back to T."""
        mean, std = self.encoder(self._pad(audio))
        z = mean + std * torch.randn_like(std) if self.training else mean
        reconstruction = self.decoder(z, self._speaker(speaker, audio))
        return VAEOutput(reconstruction[:, : audio.shape[1]], mean, std)

    def _pad(self, audio: torch.Tensor) -> torch.Tensor:
        return F.pad(audio, (0, -audio.shape[1] % self.config.hop_length))

    def _speaker(self, speaker: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        if self.speaker_embedding is None:
            return None
        if speaker is None:
            speaker = torch.zeros(like.shape[0], dtype=torch.long, device=like.device)
        return self.speaker_embedding(speaker)

    # ----------------------------------------------------------------------------------------
    # Inference: latents, audio from latents, voice conversion
    # ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def posterior(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T) audio -> mean and standard deviation of q(z | x), each (B, latent_size,
        ceil(T / hop)) (the audio zero-padded to a whole latent frame)."""
        return self.encoder(self._pad(audio))

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) audio -> (B, latent_size, ceil(T / hop)) posterior means."""
        return self.posterior(audio)[0]

    @torch.no_grad()
    def decode(self, z: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """(B, latent_size, L) latents and (B,) speaker indices -> (B, L * hop) audio."""
        return self.decoder(z, self._speaker(speaker, z))

    @torch.no_grad()
    def convert(self, audio: torch.Tensor, target_speaker: torch.Tensor) -> torch.Tensor:
        """Voice conversion: (B, T) audio said again by (B,) `target_speaker`, (B, T)."""
        return self.decode(self.encode(audio), target_speaker)[:, : audio.shape[1]]
