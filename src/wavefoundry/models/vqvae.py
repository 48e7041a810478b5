"""VQ-VAE for audio (van den Oord, Vinyals & Kavukcuoglu 2017, "Neural Discrete Representation
Learning", section 4.3).

An encoder of strided convolutions (stride 2, window 4) compresses the waveform 2^downsamplings
times (64x by default) to vectors z_e, each replaced by its nearest entry of a codebook of 512;
a decoder conditioned on the codes and on a speaker embedding makes the waveform again, so
swapping the speaker converts a voice. The codebook follows the encoder by exponential moving
averages (appendix A.1) instead of a codebook loss; only the commitment loss
beta * ||z_e - sg(e)||^2 (beta = 0.25) pulls the encoder towards it. Codes that stop being
chosen are restarted on encoder outputs of the current batch (as in Jukebox, Dhariwal et al.
2020), the standard fix for codebook collapse.

The paper's decoder is an autoregressive WaveNet; this one is non-autoregressive, so it trains
and runs in one pass: transposed convolutions upsample the codes back to the sample rate, then
WaveNet-style dilated residual layers with gated activations, globally conditioned on the
speaker, end in tanh. It learns from the waveform L1 plus a multi-resolution STFT loss.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from wavefoundry.models.losses import multi_resolution_stft_loss


@dataclass(frozen=True)
class VQVAEConfig:
    # encoder: `downsamplings` strided convolutions, stride 2, window 4
    downsamplings: int = 6  # 2^6 = 64x compression
    encoder_channels: int = 128
    # vector quantiser
    codebook_size: int = 512
    code_dim: int = 64
    commitment_cost: float = 0.25  # beta
    ema_decay: float = 0.99  # gamma of the codebook's moving averages
    dead_code_threshold: float = 1.0  # a code whose EMA count per batch falls below is restarted
    # speakers (0 = an unconditional decoder; the family fills it from the data)
    speakers: int = 0
    speaker_embedding_dim: int = 64
    # decoder: upsampling to the sample rate, then dilated residual layers
    decoder_channels: int = 128
    decoder_layers: int = 20
    dilation_cycle: int = 10  # dilations 1, 2, ..., 2^(cycle - 1), repeated
    kernel_size: int = 3
    # loss and optimisation
    stft_loss_weight: float = 1.0  # on spectral convergence + log STFT magnitude; L1 has 1
    learning_rate: float = 4e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    segment_length: int = 16384  # a multiple of 2^downsamplings

    def __post_init__(self) -> None:
        if self.downsamplings < 1 or self.decoder_layers < 1:
            raise ValueError("downsamplings and decoder_layers must be at least 1")
        if self.segment_length % self.hop_length:
            raise ValueError(
                f"segment_length {self.segment_length} is not a multiple of "
                f"2^downsamplings = {self.hop_length}"
            )

    @property
    def hop_length(self) -> int:
        """Samples per code."""
        return 2**self.downsamplings


class VQVAEOutput(NamedTuple):
    reconstruction: torch.Tensor  # (B, T) in (-1, 1)
    commitment_loss: torch.Tensor  # scalar, already times the commitment cost
    perplexity: torch.Tensor  # scalar, exp(entropy) of the batch's code distribution
    usage: torch.Tensor  # scalar, fraction of the codebook chosen at least once in the batch
    codes: torch.Tensor  # (B, T / hop_length) long


class VQVAELoss(NamedTuple):
    total: torch.Tensor
    waveform_l1: torch.Tensor
    stft: torch.Tensor  # spectral convergence + log STFT magnitude
    commitment: torch.Tensor


# --------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """(B, T) waveform -> (B, code_dim, T / 2^downsamplings) vectors z_e."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        channels = config.encoder_channels
        self.downsampling = nn.ModuleList(
            nn.Conv1d(1 if i == 0 else channels, channels, kernel_size=4, stride=2, padding=1)
            for i in range(config.downsamplings)
        )
        self.output = nn.Sequential(
            nn.Conv1d(channels, channels, kernel_size=3, padding=1),
            nn.ReLU(),
            nn.Conv1d(channels, config.code_dim, kernel_size=1),
        )
        # He initialisation keeps the spread of z_e near the input's. PyTorch's default shrinks
        # it about 6x per layer, leaving vectors closer together than one Adam step moves the
        # biases, and then the whole batch falls onto a few codes.
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        x = audio.unsqueeze(1)
        for conv in self.downsampling:
            x = F.relu(conv(x))
        return self.output(x)


# --------------------------------------------------------------------------------------------
# Vector quantiser with an EMA codebook
# --------------------------------------------------------------------------------------------


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class VectorQuantizerEMA(nn.Module):
    """Nearest-neighbour quantisation against a codebook learned by moving averages.

    The codebook is a buffer: e_i = m_i / N_i with N_i the EMA of how many vectors chose code i
    (Laplace-smoothed so that it never divides by zero) and m_i the EMA of their sum. On the
    first training batch the codebook is set to random encoder outputs, and after every update
    a code whose N_i is below `dead_code_threshold` is moved onto a random encoder output of
    the batch. Under torch.distributed the counts and sums are summed over ranks and the random
    outputs come from rank 0, so every replica keeps the same codebook.
    """

    def __init__(
        self,
        codebook_size: int,
        code_dim: int,
        commitment_cost: float,
        decay: float,
        dead_code_threshold: float,
        epsilon: float = 1e-5,
    ):
        super().__init__()
        self.codebook_size = codebook_size
        self.commitment_cost = commitment_cost
        self.decay = decay
        self.dead_code_threshold = dead_code_threshold
        self.epsilon = epsilon
        self.register_buffer("codebook", torch.randn(codebook_size, code_dim))
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("code_sum", self.codebook.clone())
        self.register_buffer("initialized", torch.tensor(False))

    def forward(
        self, z_e: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, L) z_e -> (z_q with straight-through gradients, codes (B, L), commitment loss,
        perplexity, usage). The codebook learns only in training passes (train mode with
        autograd on), so evaluation under no_grad leaves it alone."""
        batch, dim, length = z_e.shape
        flat = z_e.transpose(1, 2).reshape(-1, dim).float()
        learning = self.training and torch.is_grad_enabled()
        if learning and not bool(self.initialized):
            self._initialize(flat.detach())

        codes = self.nearest_codes(flat)
        counts = torch.bincount(codes, minlength=self.codebook_size).float()
        z_q = self.codebook[codes].view(batch, length, dim).transpose(1, 2).to(z_e.dtype)
        if learning:
            self._update(flat.detach(), codes, counts)

        commitment_loss = self.commitment_cost * F.mse_loss(z_e.float(), z_q.detach().float())
        probabilities = counts / counts.sum()
        perplexity = torch.exp(-(probabilities * torch.log(probabilities + 1e-10)).sum())
        usage = (counts > 0).float().mean()
        z_q = z_e + (z_q - z_e).detach()  # straight-through estimator
        return z_q, codes.view(batch, length), commitment_loss, perplexity, usage

    def nearest_codes(self, flat: torch.Tensor) -> torch.Tensor:
        """(N, D) vectors -> (N,) indices of their nearest codebook entries."""
        distances = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ self.codebook.t()
            + self.codebook.pow(2).sum(1)[None, :]
        )
        return distances.argmin(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, L) codes -> (B, D, L) codebook vectors."""
        return self.codebook[codes].transpose(1, 2)

    def _random_outputs(self, flat: torch.Tensor) -> torch.Tensor:
        """`codebook_size` vectors drawn from this batch's encoder outputs (rank 0's under DDP)."""
        if flat.shape[0] >= self.codebook_size:
            picks = torch.randperm(flat.shape[0], device=flat.device)[: self.codebook_size]
        else:
            picks = torch.randint(flat.shape[0], (self.codebook_size,), device=flat.device)
        candidates = flat[picks].contiguous()
        if _distributed():
            dist.broadcast(candidates, src=0)
        return candidates

    @torch.no_grad()
    def _initialize(self, flat: torch.Tensor) -> None:
        self.codebook.copy_(self._random_outputs(flat))
        self.code_sum.copy_(self.codebook)
        self.cluster_size.fill_(1.0)
        self.initialized.fill_(True)

    @torch.no_grad()
    def _update(self, flat: torch.Tensor, codes: torch.Tensor, counts: torch.Tensor) -> None:
        sums = torch.zeros_like(self.code_sum).index_add_(0, codes, flat)
        counts = counts.clone()
        if _distributed():
            dist.all_reduce(counts)
            dist.all_reduce(sums)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.code_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (
            (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        )
        self.codebook.copy_(self.code_sum / smoothed[:, None])

        dead = self.cluster_size < self.dead_code_threshold
        if bool(dead.any()):
            # A restarted code starts as if it had been chosen `threshold` times, at its new
            # place; if no vector picks it next batch it falls below again and moves on.
            restart = self._random_outputs(flat)[dead]
            self.codebook[dead] = restart
            self.cluster_size[dead] = self.dead_code_threshold
            self.code_sum[dead] = restart * self.dead_code_threshold


# --------------------------------------------------------------------------------------------
# Decoder
# --------------------------------------------------------------------------------------------


class ResidualLayer(nn.Module):
    """A non-causal WaveNet layer: dilated convolution, gated activation
    tanh(W_f * x + V_f s) . sigmoid(W_g * x + V_g s) with the speaker embedding s as global
    conditioning, then 1x1 convolutions to the residual and skip paths. The last layer has
    no residual path: nothing reads it, and DDP refuses parameters that get no gradient."""

    def __init__(
        self, channels: int, kernel_size: int, dilation: int, speaker_dim: int, last: bool
    ):
        super().__init__()
        self.dilated_conv = nn.Conv1d(
            channels,
            2 * channels,
            kernel_size,
            dilation=dilation,
            padding=dilation * (kernel_size - 1) // 2,
        )
        self.speaker_projection = (
            nn.Linear(speaker_dim, 2 * channels, bias=False) if speaker_dim else None
        )
        self.residual = None if last else nn.Conv1d(channels, channels, 1)
        self.skip = nn.Conv1d(channels, channels, 1)

    def forward(
        self, x: torch.Tensor, speaker: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        h = self.dilated_conv(x)
        if self.speaker_projection is not None and speaker is not None:
            h = h + self.speaker_projection(speaker).unsqueeze(-1)
        filter_, gate = h.chunk(2, dim=1)
        h = torch.tanh(filter_) * torch.sigmoid(gate)
        if self.residual is None:
            return None, self.skip(h)
        return (x + self.residual(h)) * math.sqrt(0.5), self.skip(h)


class Decoder(nn.Module):
    """(B, code_dim, L) quantised vectors and a speaker embedding -> (B, L * hop) waveform."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        channels = config.decoder_channels
        speaker_dim = config.speaker_embedding_dim if config.speakers else 0
        self.input_conv = nn.Conv1d(config.code_dim, channels, kernel_size=3, padding=1)
        self.speaker_input = nn.Linear(speaker_dim, channels) if speaker_dim else None
        self.upsampling = nn.ModuleList(
            nn.ConvTranspose1d(channels, channels, kernel_size=4, stride=2, padding=1)
            for _ in range(config.downsamplings)
        )
        self.layers = nn.ModuleList(
            ResidualLayer(
                channels,
                config.kernel_size,
                2 ** (i % config.dilation_cycle),
                speaker_dim,
                last=i == config.decoder_layers - 1,
            )
            for i in range(config.decoder_layers)
        )
        self.output = nn.Sequential(
            nn.LeakyReLU(0.1),
            nn.Conv1d(channels, channels, 1),
            nn.LeakyReLU(0.1),
            nn.Conv1d(channels, 1, 1),
        )
        # He initialisation, as in the encoder: with PyTorch's defaults the output hardly
        # depends on the codes at first, and training sits at the all-zero reconstruction.
        for module in self.modules():
            if isinstance(module, nn.Conv1d | nn.ConvTranspose1d):
                nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)

    def forward(self, z_q: torch.Tensor, speaker: torch.Tensor | None) -> torch.Tensor:
        x = self.input_conv(z_q)
        if self.speaker_input is not None and speaker is not None:
            x = x + self.speaker_input(speaker).unsqueeze(-1)
        for upsample in self.upsampling:
            x = F.leaky_relu(upsample(x), 0.1)
        skips = torch.zeros_like(x)
        for layer in self.layers:
            x, skip = layer(x, speaker)
            skips = skips + skip
        return torch.tanh(self.output(skips * math.sqrt(1.0 / len(self.layers)))).squeeze(1)


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class VQVAE(nn.Module):
    """Encoder -> vector quantiser -> speaker-conditioned decoder; `encode`, `decode` and
    `convert` (voice conversion) for inference."""

    def __init__(self, config: VQVAEConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.quantizer = VectorQuantizerEMA(
            config.codebook_size,
            config.code_dim,
            config.commitment_cost,
            config.ema_decay,
            config.dead_code_threshold,
        )
        self.speaker_embedding = (
            nn.Embedding(config.speakers, config.speaker_embedding_dim) if config.speakers else None
        )
        self.decoder = Decoder(config)
        if self.speaker_embedding is not None:
            # Small, so that at first the speaker does not drown what the codes say.
            nn.init.normal_(self.speaker_embedding.weight, std=0.1)

    def forward(self, audio: torch.Tensor, speaker: torch.Tensor | None = None) -> VQVAEOutput:
        """(B, T) audio and (B,) speaker indices (None: speaker 0) -> VQVAEOutput; T is padded
        to a multiple of the hop inside and the reconstruction trimmed back to T."""
        padded = self._pad(audio)
        z_q, codes, commitment_loss, perplexity, usage = self.quantizer(self.encoder(padded))
        reconstruction = self.decoder(z_q, self._speaker(speaker, audio))
        return VQVAEOutput(
            reconstruction[:, : audio.shape[1]], commitment_loss, perplexity, usage, codes
        )

    def _pad(self, audio: torch.Tensor) -> torch.Tensor:
        return F.pad(audio, (0, -audio.shape[1] % self.config.hop_length))

    def _speaker(self, speaker: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
        if self.speaker_embedding is None:
            return None
        if speaker is None:
            speaker = torch.zeros(like.shape[0], dtype=torch.long, device=like.device)
        return self.speaker_embedding(speaker)

    # ----------------------------------------------------------------------------------------
    # Inference: codes, audio from codes, voice conversion
    # ----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) audio -> (B, ceil(T / hop)) codes (the audio zero-padded to a whole code)."""
        z_e = self.encoder(self._pad(audio))
        batch, dim, length = z_e.shape
        codes = self.quantizer.nearest_codes(z_e.transpose(1, 2).reshape(-1, dim).float())
        return codes.view(batch, length)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L) codes and (B,) speaker indices (None: speaker 0) -> (B, L * hop) audio."""
        z_q = self.quantizer.lookup(codes)
        return self.decoder(z_q, self._speaker(speaker, codes))

    @torch.no_grad()
    def convert(self, audio: torch.Tensor, target_speaker: torch.Tensor) -> torch.Tensor:
        """Voice conversion: (B, T) audio said again by (B,) `target_speaker`, (B, T)."""
        return self.decode(self.encode(audio), target_speaker)[:, : audio.shape[1]]


# --------------------------------------------------------------------------------------------
# Losses and metrics
# --------------------------------------------------------------------------------------------


def vqvae_loss(output: VQVAEOutput, audio: torch.Tensor, stft_loss_weight: float) -> VQVAELoss:
    """Waveform L1 + stft_loss_weight * (spectral convergence + log STFT magnitude) +
    commitment loss."""
    reconstruction = output.reconstruction.float()
    waveform_l1 = F.l1_loss(reconstruction, audio.float())
    spectral_convergence, log_magnitude = multi_resolution_stft_loss(reconstruction, audio)
    stft = spectral_convergence + log_magnitude
    total = waveform_l1 + stft_loss_weight * stft + output.commitment_loss
    return VQVAELoss(total, waveform_l1, stft, output.commitment_loss)
