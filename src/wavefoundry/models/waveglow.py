"""WaveGlow: A Flow-based Generative Network for Speech Synthesis.

Prenger, Valle and Catanzaro, ICASSP 2019 (arXiv 1811.00002, 2018). A normalising flow maps
audio x to a spherical Gaussian z, conditioned on the mel spectrogram; inverting it turns
Gaussian noise into speech in one parallel pass. The audio is squeezed into groups of
`n_group` = 8 samples (vectors of 8 channels at 1/8 of the sample rate); then `n_flows` = 12
flow steps, each an invertible 1x1 convolution (a learned rotation of the 8 channels) followed
by an affine coupling layer: the first half of the channels, with the upsampled mel, go
through a WaveNet-like network WN whose outputs (log s, t) scale and shift the second half.
Every `n_early_every` = 4 flows, `n_early_size` = 2 channels leave early as part of z.

The log-likelihood is exact (change of variables):
    log p(x) = -z^2 / (2 sigma^2) + sum_j log s_j + sum_k log |det W_k| (+ a constant),
and the loss is its negative per sample (section 2.2). At inference z is drawn with a
smaller sigma (0.6) than in training (1.0), which the paper found to sound best.

Module names follow the authors' glow.py (github.com/NVIDIA/waveglow: `WN`, `start`,
`in_layers`, `res_skip_layers`, `cond_layer`, `end`, `Invertible1x1Conv`, `upsample`); the
reference only runs on CUDA, this one runs wherever its tensors are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm


@dataclass(frozen=True)
class WaveGlowConfig:
    # Flow (section 2; the authors' config.json)
    n_flows: int = 12
    n_group: int = 8  # samples squeezed into one vector
    n_early_every: int = 4  # flows between early outputs
    n_early_size: int = 2  # channels output early each time
    # WN, the coupling network (a non-causal WaveNet without a dilation reset)
    n_layers: int = 8
    n_channels: int = 256  # 512 in the paper's larger model
    kernel_size: int = 3
    # Mel spectrogram (the conditioning), as wavefoundry.audio.MelConfig; the upsampling is
    # ConvTranspose1d(n_mels, n_mels, upsample_kernel_size, stride=hop_length)
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    f_min: float = 0.0
    f_max: float | None = 8000.0
    upsample_kernel_size: int = 1024
    # Likelihood: sigma of the Gaussian in training and when sampling
    sigma: float = 1.0
    sigma_infer: float = 0.6
    # Optimisation (Adam at 1e-4, segments of 16,000 samples)
    learning_rate: float = 1e-4
    segment_length: int = 16000

    def __post_init__(self) -> None:
        if self.n_group % 2 or self.n_group < 2:
            raise ValueError(f"n_group must be even and at least 2, got {self.n_group}")
        if self.n_early_size % 2 or self.n_early_every < 1:
            raise ValueError("n_early_size must be even and n_early_every at least 1")
        if self.remaining_channels < 2:
            raise ValueError(
                f"n_flows {self.n_flows} with an early output of {self.n_early_size} channels "
                f"every {self.n_early_every} flows leaves fewer than 2 of n_group "
                f"{self.n_group} channels for the last flows"
            )
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {self.kernel_size}")
        if self.hop_length % self.n_group:
            raise ValueError(
                f"hop_length {self.hop_length} must be a multiple of n_group {self.n_group}"
            )
        if self.upsample_kernel_size < self.hop_length or (
            (self.upsample_kernel_size - self.hop_length) % 2
        ):
            raise ValueError(
                f"upsample_kernel_size {self.upsample_kernel_size} must be at least hop_length "
                f"{self.hop_length}, and differ from it by an even number"
            )
        if self.segment_length < self.hop_length:
            raise ValueError(
                f"segment_length {self.segment_length} is shorter than one mel frame "
                f"({self.hop_length} samples)"
            )

    @property
    def remaining_channels(self) -> int:
        """Channels that go through the last flow (8 - 2 * 2 = 4 in the paper)."""
        return self.n_group - self.n_early_size * ((self.n_flows - 1) // self.n_early_every)


class WaveGlowOutput(NamedTuple):
    z: torch.Tensor  # (B, n_group, T / n_group): the early outputs, then the last flow's
    log_det: torch.Tensor  # (B,) log |det dz/dx| = sum log s + sum log det W


# --------------------------------------------------------------------------------------------
# Invertible 1x1 convolution (section 2.1)
# --------------------------------------------------------------------------------------------


class Invertible1x1Conv(nn.Module):
    """z' = W z on every time step, W a c x c matrix initialised to a random rotation
    (orthonormal, determinant +1), so it starts volume-preserving and stays invertible while
    the determinant does not cross 0. log |det| of the map on (B, c, L) is L * log |det W|."""

    def __init__(self, channels: int):
        super().__init__()
        weight, _ = torch.linalg.qr(torch.randn(channels, channels))
        if torch.det(weight) < 0:
            weight[:, 0] = -weight[:, 0]
        self.weight = nn.Parameter(weight)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, c, L) -> ((B, c, L), log |det| scalar for one item)."""
        log_det = z.shape[2] * torch.linalg.slogdet(self.weight)[1]
        return F.conv1d(z, self.weight.to(z.dtype).unsqueeze(-1)), log_det

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        # The 8 x 8 inverse in float64: cheap, and the round trip stays exact to float32.
        inverse = torch.linalg.inv(self.weight.double()).to(z.dtype)
        return F.conv1d(z, inverse.unsqueeze(-1))


# --------------------------------------------------------------------------------------------
# WN: the affine coupling layer's network
# --------------------------------------------------------------------------------------------


class WN(nn.Module):
    """WaveNet-like network of the affine coupling: (B, n_in, L) half of the audio channels and
    (B, n_cond, L) squeezed mel -> (B, 2 n_in, L), the shift t and log-scale log s.

    `start` (1x1) lifts the input to n_channels; each of n_layers layers is a dilated
    convolution (dilation 2^i, no reset) plus the mel's projection, a gated tanh . sigmoid
    unit, and a 1x1 `res_skip` convolution to the residual and skip paths (the last layer has
    skip only). `end` (1x1) is zero-initialised, so every coupling starts as the identity.
    Weight normalisation on every convolution but `end`, as in the reference.
    """

    def __init__(
        self, n_in_channels: int, n_cond_channels: int, n_layers: int, n_channels: int, kernel: int
    ):
        super().__init__()
        self.n_layers, self.n_channels = n_layers, n_channels
        self.start = weight_norm(nn.Conv1d(n_in_channels, n_channels, 1))
        self.cond_layer = weight_norm(nn.Conv1d(n_cond_channels, 2 * n_channels * n_layers, 1))
        self.in_layers = nn.ModuleList()
        self.res_skip_layers = nn.ModuleList()
        for i in range(n_layers):
            dilation = 2**i
            self.in_layers.append(
                weight_norm(
                    nn.Conv1d(
                        n_channels,
                        2 * n_channels,
                        kernel,
                        dilation=dilation,
                        padding=dilation * (kernel - 1) // 2,
                    )
                )
            )
            res_skip_channels = 2 * n_channels if i < n_layers - 1 else n_channels
            self.res_skip_layers.append(weight_norm(nn.Conv1d(n_channels, res_skip_channels, 1)))
        self.end = nn.Conv1d(n_channels, 2 * n_in_channels, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, audio: torch.Tensor, spect: torch.Tensor) -> torch.Tensor:
        audio = self.start(audio)
        output = torch.zeros_like(audio)
        spect = self.cond_layer(spect)
        for i, (in_layer, res_skip_layer) in enumerate(
            zip(self.in_layers, self.res_skip_layers, strict=True)
        ):
            offset = 2 * self.n_channels * i
            h = in_layer(audio) + spect[:, offset : offset + 2 * self.n_channels]
            filter_, gate = h.chunk(2, dim=1)
            acts = res_skip_layer(torch.tanh(filter_) * torch.sigmoid(gate))
            if i < self.n_layers - 1:
                audio = audio + acts[:, : self.n_channels]
                output = output + acts[:, self.n_channels :]
            else:
                output = output + acts
        return self.end(output)


# --------------------------------------------------------------------------------------------
# The loss
# --------------------------------------------------------------------------------------------


def waveglow_loss(output: WaveGlowOutput, sigma: float = 1.0) -> torch.Tensor:
    """The negative log-likelihood per audio sample, as the paper writes it (the Gaussian's
    constant 0.5 log(2 pi sigma^2) left out): (sum z^2 / (2 sigma^2) - sum log s -
    sum log det W) / (B * T). Scalar, nats."""
    z = output.z.float()
    return ((z * z).sum() / (2 * sigma * sigma) - output.log_det.sum()) / z.numel()


# --------------------------------------------------------------------------------------------
# WaveGlow
# --------------------------------------------------------------------------------------------


class WaveGlow(nn.Module):
    """x (B, T) audio, mel (B, n_mels, T / hop) -> z and log |det dz/dx| (`forward`); back with
    `inverse`; audio from a mel alone with `infer`. T is a whole number of mel frames."""

    def __init__(self, config: WaveGlowConfig):
        super().__init__()
        self.config = config
        c = config
        self.upsample = nn.ConvTranspose1d(
            c.n_mels, c.n_mels, c.upsample_kernel_size, stride=c.hop_length
        )
        self.convinv = nn.ModuleList()
        self.WN = nn.ModuleList()
        remaining = c.n_group
        for k in range(c.n_flows):
            if self._early_output(k):
                remaining -= c.n_early_size
            self.convinv.append(Invertible1x1Conv(remaining))
            self.WN.append(
                WN(remaining // 2, c.n_mels * c.n_group, c.n_layers, c.n_channels, c.kernel_size)
            )

    def _early_output(self, k: int) -> bool:
        return k > 0 and k % self.config.n_early_every == 0

    def squeezed_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) -> (B, n_mels * n_group, frames * hop / n_group): upsampled to
        the sample rate and squeezed like the audio. The transposed convolution overhangs by
        (kernel - hop) samples; half is cut from each end, which centres each frame's
        contribution on the samples that frame was computed from (audio.log_mel's framing)."""
        c = self.config
        frames = mel.shape[2]
        trim = (c.upsample_kernel_size - c.hop_length) // 2
        spect = self.upsample(mel)[:, :, trim : trim + frames * c.hop_length]
        batch, channels, length = spect.shape
        spect = spect.view(batch, channels, length // c.n_group, c.n_group)
        return spect.permute(0, 1, 3, 2).reshape(batch, channels * c.n_group, -1)

    def squeeze(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) -> (B, n_group, T / n_group): each column is n_group consecutive samples."""
        return audio.view(audio.shape[0], -1, self.config.n_group).transpose(1, 2)

    def forward(self, audio: torch.Tensor, mel: torch.Tensor) -> WaveGlowOutput:
        """x -> z: (B, T) audio and (B, n_mels, T / hop) mel -> WaveGlowOutput."""
        c = self.config
        if audio.shape[1] != mel.shape[2] * c.hop_length:
            raise ValueError(
                f"audio of {audio.shape[1]} samples for {mel.shape[2]} mel frames: expected "
                f"{mel.shape[2] * c.hop_length} (hop_length {c.hop_length})"
            )
        spect = self.squeezed_mel(mel)
        x = self.squeeze(audio)
        log_det = x.new_zeros(x.shape[0], dtype=torch.promote_types(x.dtype, torch.float32))
        early: list[torch.Tensor] = []
        for k in range(c.n_flows):
            if self._early_output(k):
                early.append(x[:, : c.n_early_size])
                x = x[:, c.n_early_size :]
            x, log_det_w = self.convinv[k](x)
            log_det = log_det + log_det_w
            x, log_s = self.affine_coupling(k, x, spect)
            log_det = log_det + log_s.to(log_det.dtype).sum(dim=(1, 2))
        return WaveGlowOutput(torch.cat([*early, x], dim=1), log_det)

    def affine_coupling(
        self, k: int, x: torch.Tensor, spect: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x_a, x_b = split(x); (log s, t) = WN(x_a, mel); x_b' = s * x_b + t.
        Returns (x_a ++ x_b', log s)."""
        x_a, x_b = x.chunk(2, dim=1)
        t, log_s = self.WN[k](x_a, spect).chunk(2, dim=1)
        return torch.cat([x_a, torch.exp(log_s) * x_b + t], dim=1), log_s

    def inverse(self, z: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """z -> x: (B, n_group, frames * hop / n_group) in `forward`'s layout and the mel ->
        (B, frames * hop) audio."""
        c = self.config
        spect = self.squeezed_mel(mel)
        n_early = (c.n_flows - 1) // c.n_early_every
        early = list(z[:, : n_early * c.n_early_size].split(c.n_early_size, dim=1))
        x = z[:, n_early * c.n_early_size :]
        for k in reversed(range(c.n_flows)):
            x_a, x_b = x.chunk(2, dim=1)
            t, log_s = self.WN[k](x_a, spect).chunk(2, dim=1)
            x = self.convinv[k].inverse(torch.cat([x_a, (x_b - t) * torch.exp(-log_s)], dim=1))
            if self._early_output(k):
                x = torch.cat([early.pop(), x], dim=1)
        return x.transpose(1, 2).reshape(z.shape[0], -1)

    def remove_weight_norm(self) -> None:
        """Fold weight normalisation into plain weights, for inference (outputs unchanged)."""
        for module in self.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)

    @torch.no_grad()
    def infer(
        self,
        mel: torch.Tensor,
        sigma: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Audio from a mel: z ~ N(0, sigma^2) through the inverse flow. (B, n_mels, frames) ->
        (B, frames * hop). sigma defaults to `sigma_infer` (0.6); `generator` (on mel's
        device) fixes the noise."""
        c = self.config
        sigma = c.sigma_infer if sigma is None else sigma
        shape = (mel.shape[0], c.n_group, mel.shape[2] * c.hop_length // c.n_group)
        z = torch.randn(shape, generator=generator, device=mel.device, dtype=mel.dtype)
        return self.inverse(sigma * z, mel)
