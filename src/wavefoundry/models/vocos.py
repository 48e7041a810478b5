"""Vocos: Closing the gap between time-domain and Fourier-based neural vocoders for high-quality
audio synthesis.

Siuzdak, ICLR 2024 (arXiv 2306.00814, 2023). Instead of upsampling a mel spectrogram to a
waveform through transposed convolutions, Vocos stays at the frame rate: a ConvNeXt backbone
(section 3.2) turns the mel frames into features, and an iSTFT head (section 3.3) predicts
each frame's complex STFT coefficients, magnitude as exp(m) and phase as the angle of
(cos p, sin p), which one inverse STFT turns into audio. Every layer runs at the mel's frame
rate, so it is fast on a CPU (about 169x real time in the paper's table 3).

The paper trains it as a GAN (multi-period and multi-resolution discriminators, hinge loss,
feature matching, mel L1 weighted 45). This file holds the generator and its config; how it is
trained is in families/vocos.py. Module names follow the paper: `embed`, `ConvNeXtBlock`
(depthwise conv, LayerNorm, pointwise up, GELU, pointwise down, layer scale), `ISTFTHead`,
`ISTFT` with "same" padding so that N mel frames give exactly N * hop_length samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VocosConfig:
    # Mel spectrogram (the input and the mel loss), as wavefoundry.audio.MelConfig. The paper's
    # release uses 100 bins at 24 kHz; on LJ Speech (22,050 Hz) the project's 80-band mel.
    n_mels: int = 80
    n_fft: int = 1024  # the head's STFT: n_fft // 2 + 1 bins per frame
    hop_length: int = 256
    win_length: int = 1024
    f_min: float = 0.0
    f_max: float | None = 8000.0
    # Backbone (section 3.2): 8 ConvNeXt blocks of dimension 512, 1536 inside: 13.5 M parameters.
    dim: int = 512
    intermediate_dim: int = 1536
    num_layers: int = 8
    kernel_size: int = 7  # the depthwise convolution's and the embedding's
    layer_scale_init_value: float | None = None  # None: 1 / num_layers, as the paper's code
    max_magnitude: float = 1e2  # exp(m) clipped here (the paper's head)
    # "direct": the head's p is each frame's phase (the paper). "instantaneous_frequency": p is
    # how far each bin's phase advance departs from its centre frequency's, 2 pi k hop / n_fft,
    # summed over frames (as GANSynth's IF); at p = 0 every bin is a coherent sinusoid.
    phase: str = "direct"
    # Loss weights. The paper: adversarial + 2 * feature matching + 45 * mel L1. The family
    # adds a multi-resolution STFT loss (models/losses.py) that the paper does not use: 0 off.
    mel_weight: float = 45.0
    mrstft_weight: float = 0.0
    # Optimisation (section 4): AdamW, beta 0.8/0.9, lr 2e-4 with cosine decay, batches of 16
    # clips of 16,384 samples.
    learning_rate: float = 2e-4
    adam_betas: tuple[float, float] = (0.8, 0.9)
    weight_decay: float = 0.01
    segment_length: int = 16384

    def __post_init__(self) -> None:
        if self.win_length > self.n_fft:
            raise ValueError(
                f"win_length {self.win_length} is longer than n_fft {self.n_fft}: the window "
                "must fit the FFT"
            )
        if (self.win_length - self.hop_length) % 2:
            raise ValueError(
                f"win_length - hop_length ({self.win_length} - {self.hop_length}) must be even "
                "for 'same' padding"
            )
        if self.segment_length % self.hop_length:
            raise ValueError(
                f"segment_length {self.segment_length} must be a multiple of hop_length "
                f"{self.hop_length}"
            )
        for name in ("dim", "intermediate_dim", "num_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.phase not in ("direct", "instantaneous_frequency"):
            raise ValueError(
                f"phase must be 'direct' or 'instantaneous_frequency', got {self.phase!r}"
            )


class ConvNeXtBlock(nn.Module):
    """One ConvNeXt block (Liu et al. 2022) on (B, dim, frames): depthwise conv, LayerNorm over
    channels, pointwise to intermediate_dim, GELU, pointwise back, layer scale, residual."""

    def __init__(self, dim: int, intermediate_dim: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, intermediate_dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(intermediate_dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x
        x = self.dwconv(x).transpose(1, 2)  # (B, frames, dim)
        x = self.pwconv2(self.act(self.pwconv1(self.norm(x))))
        return residual + (self.gamma * x).transpose(1, 2)


class Backbone(nn.Module):
    """Mel frames (B, n_mels, frames) to features (B, frames, dim): a convolutional embedding,
    LayerNorm, the ConvNeXt blocks and a final LayerNorm."""

    def __init__(self, config: VocosConfig):
        super().__init__()
        c = config
        scale = c.layer_scale_init_value or 1.0 / c.num_layers
        self.embed = nn.Conv1d(c.n_mels, c.dim, c.kernel_size, padding=c.kernel_size // 2)
        self.norm = nn.LayerNorm(c.dim, eps=1e-6)
        self.convnext = nn.ModuleList(
            ConvNeXtBlock(c.dim, c.intermediate_dim, c.kernel_size, scale)
            for _ in range(c.num_layers)
        )
        self.final_layer_norm = nn.LayerNorm(c.dim, eps=1e-6)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.convnext:
            x = block(x)
        return self.final_layer_norm(x.transpose(1, 2))


class ISTFT(nn.Module):
    """Inverse STFT with "same" padding: frame t is centred on sample t * hop + hop / 2, as the
    mel frames of wavefoundry.audio.log_mel are, so N frames give exactly N * hop samples.
    Inverse real FFT, Hann window, overlap-add, divided by the summed squared window."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        """(B, n_fft // 2 + 1, frames) complex to (B, frames * hop_length) real."""
        frames = spectrum.shape[-1]
        pad = (self.win_length - self.hop_length) // 2
        segments = torch.fft.irfft(spectrum, self.n_fft, dim=1, norm="backward")
        segments = segments[:, : self.win_length] * self.window[None, :, None]
        length = (frames - 1) * self.hop_length + self.win_length
        fold = dict(output_size=(1, length), kernel_size=(1, self.win_length))
        fold["stride"] = (1, self.hop_length)
        audio = F.fold(segments, **fold)[:, 0, 0]
        envelope = self.window.square()[None, :, None].expand(1, -1, frames)
        envelope = F.fold(envelope, **fold)[:, 0, 0]
        audio, envelope = audio[:, pad : length - pad], envelope[:, pad : length - pad]
        return audio / envelope.clamp(min=1e-11)


class ISTFTHead(nn.Module):
    """Features (B, frames, dim) to audio (B, frames * hop): a linear layer gives n_fft + 2
    numbers per frame, magnitude exp(m) (clipped) and phase p, S = exp(m) (cos p + i sin p)."""

    def __init__(self, config: VocosConfig):
        super().__init__()
        self.max_magnitude = config.max_magnitude
        self.phase = config.phase
        self.out = nn.Linear(config.dim, config.n_fft + 2)
        self.istft = ISTFT(config.n_fft, config.hop_length, config.win_length)
        bins = torch.arange(config.n_fft // 2 + 1, dtype=torch.float64)
        advance = (2 * math.pi * bins * config.hop_length / config.n_fft) % (2 * math.pi)
        self.register_buffer("advance", advance.float()[:, None], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, p = self.out(x).transpose(1, 2).float().chunk(2, dim=1)
        magnitude = torch.exp(m).clamp(max=self.max_magnitude)
        if self.phase == "instantaneous_frequency":
            p = torch.cumsum(p + self.advance, dim=-1)
        spectrum = torch.complex(magnitude * torch.cos(p), magnitude * torch.sin(p))
        return self.istft(spectrum)


class Vocos(nn.Module):
    """The generator: mel (B, n_mels, frames) to audio (B, frames * hop_length)."""

    def __init__(self, config: VocosConfig):
        super().__init__()
        self.config = config
        self.backbone = Backbone(config)
        self.head = ISTFTHead(config)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        """Truncated normal (std 0.02) weights and zero biases, as the paper's code."""
        if isinstance(module, nn.Conv1d | nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(mel))

    @torch.no_grad()
    def infer(self, mel: torch.Tensor) -> torch.Tensor:
        """Audio in [-1, 1] from mel frames: (n_mels, frames) -> (frames * hop_length,), or
        batched (B, n_mels, frames) -> (B, frames * hop_length)."""
        single = mel.dim() == 2
        audio = self.forward(mel.unsqueeze(0) if single else mel).clamp(-1.0, 1.0)
        return audio[0] if single else audio
