"""HiFi-GAN: Generative Adversarial Networks for Efficient and High Fidelity Speech Synthesis.

Kong, Kim and Bae, NeurIPS 2020. A mel spectrogram is upsampled to a waveform by transposed
convolutions, each followed by a multi-receptive-field fusion (MRF) of residual blocks. Two
discriminators judge the result: a multi-period one (MPD) that looks at the waveform folded
into 2-D by prime periods, and a multi-scale one (MSD) that looks at it raw and average-pooled.
The generator is trained with least-squares adversarial loss, feature matching and a mel L1.

Module names and structure follow the authors' models.py (github.com/jik876/hifi-gan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from wavefoundry.models.channels_last import ChannelsLastConv1d, ChannelsLastConvTranspose1d

LRELU_SLOPE = 0.1


@dataclass(frozen=True)
class GeneratorSettings:
    """The generator's hyperparameters, as in the authors' config_v1/v2/v3.json."""

    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    upsample_initial_channel: int
    resblock: str  # "1": ResBlock1 (V1, V2); "2": ResBlock2 (V3)
    resblock_kernel_sizes: tuple[int, ...]
    resblock_dilation_sizes: tuple[tuple[int, ...], ...]


PRESETS = {
    "v1": GeneratorSettings(
        upsample_rates=(8, 8, 2, 2),
        upsample_kernel_sizes=(16, 16, 4, 4),
        upsample_initial_channel=512,
        resblock="1",
        resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    ),
    "v2": GeneratorSettings(
        upsample_rates=(8, 8, 2, 2),
        upsample_kernel_sizes=(16, 16, 4, 4),
        upsample_initial_channel=128,
        resblock="1",
        resblock_kernel_sizes=(3, 7, 11),
        resblock_dilation_sizes=((1, 3, 5), (1, 3, 5), (1, 3, 5)),
    ),
    "v3": GeneratorSettings(
        upsample_rates=(8, 8, 4),
        upsample_kernel_sizes=(16, 16, 8),
        upsample_initial_channel=256,
        resblock="2",
        resblock_kernel_sizes=(3, 5, 7),
        resblock_dilation_sizes=((1, 2), (2, 6), (3, 12)),
    ),
}


@dataclass(frozen=True)
class HiFiGANConfig:
    preset: str = "v1"  # "v1" | "v2" | "v3": the paper's generators
    # Generator overrides; None takes the preset's value.
    upsample_rates: tuple[int, ...] | None = None
    upsample_kernel_sizes: tuple[int, ...] | None = None
    upsample_initial_channel: int | None = None
    resblock: str | None = None
    resblock_kernel_sizes: tuple[int, ...] | None = None
    resblock_dilation_sizes: tuple[tuple[int, ...], ...] | None = None
    # Mel spectrogram (the generator's input and the mel loss), as wavefoundry.audio.MelConfig.
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    f_min: float = 0.0
    f_max: float | None = 8000.0
    # Discriminators.
    periods: tuple[int, ...] = (2, 3, 5, 7, 11)
    discriminator_scales: int = 3
    discriminator_channel_scale: float = 1.0  # < 1 narrows every discriminator layer
    # Loss weights (section 2.4: lambda_fm = 2, lambda_mel = 45).
    feature_matching_weight: float = 2.0
    mel_weight: float = 45.0
    # Optimisation: AdamW, beta1 0.8, beta2 0.99, weight decay 0.01, lr 2e-4 decayed by 0.999
    # per epoch (the decay is the trainer's schedule).
    learning_rate: float = 2e-4
    adam_betas: tuple[float, float] = (0.8, 0.99)
    weight_decay: float = 0.01
    segment_length: int = 8192

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        g = self.generator_settings()
        if len(g.upsample_kernel_sizes) != len(g.upsample_rates):
            raise ValueError(
                f"upsample_kernel_sizes {g.upsample_kernel_sizes} needs one kernel per "
                f"upsample rate {g.upsample_rates}"
            )
        if math.prod(g.upsample_rates) != self.hop_length:
            raise ValueError(
                f"the product of upsample_rates {g.upsample_rates} is "
                f"{math.prod(g.upsample_rates)}, but one mel frame is hop_length = "
                f"{self.hop_length} samples: they must be equal"
            )
        for rate, kernel in zip(g.upsample_rates, g.upsample_kernel_sizes, strict=True):
            if kernel < rate or (kernel - rate) % 2:
                raise ValueError(
                    f"upsample kernel {kernel} for rate {rate}: kernel - rate must be even and "
                    "non-negative, so that each layer upsamples exactly by its rate"
                )
        if g.upsample_initial_channel % 2 ** len(g.upsample_rates):
            raise ValueError(
                f"upsample_initial_channel {g.upsample_initial_channel} is halved "
                f"{len(g.upsample_rates)} times: it must be divisible by "
                f"{2 ** len(g.upsample_rates)}"
            )
        if g.resblock not in ("1", "2"):
            raise ValueError(f"resblock must be '1' or '2', got {g.resblock!r}")
        if len(g.resblock_dilation_sizes) != len(g.resblock_kernel_sizes) or not all(
            g.resblock_dilation_sizes
        ):
            raise ValueError(
                "resblock_dilation_sizes needs one non-empty dilation tuple per kernel size"
            )
        if self.segment_length % self.hop_length:
            raise ValueError(
                f"segment_length {self.segment_length} must be a multiple of hop_length "
                f"{self.hop_length}"
            )
        if self.discriminator_channel_scale <= 0:
            raise ValueError("discriminator_channel_scale must be positive")

    def generator_settings(self) -> GeneratorSettings:
        """The preset with this config's overrides applied."""
        preset = PRESETS[self.preset]

        def pick(name: str):
            value = getattr(self, name)
            return getattr(preset, name) if value is None else value

        return GeneratorSettings(
            upsample_rates=tuple(pick("upsample_rates")),
            upsample_kernel_sizes=tuple(pick("upsample_kernel_sizes")),
            upsample_initial_channel=pick("upsample_initial_channel"),
            resblock=str(pick("resblock")),
            resblock_kernel_sizes=tuple(pick("resblock_kernel_sizes")),
            resblock_dilation_sizes=tuple(tuple(d) for d in pick("resblock_dilation_sizes")),
        )


def get_padding(kernel_size: int, dilation: int = 1) -> int:
    """'Same' padding for an odd kernel."""
    return (kernel_size * dilation - dilation) // 2


def init_weights(conv: nn.Module, std: float = 0.01) -> None:
    """N(0, 0.01) for the generator's convolutions, applied before weight norm so that its
    g and v start from these weights (applied after it, a draw would be recomputed away)."""
    nn.init.normal_(conv.weight, 0.0, std)


def remove_parametrizations(module: nn.Module) -> None:
    """Fold weight norm into plain weights, for inference."""
    if parametrize.is_parametrized(module, "weight"):
        parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)


# --- generator (section 2.1) ------------------------------------------------------------------


class ResBlock1(nn.Module):
    """MRF residual block of V1/V2: per dilation, a dilated conv then an undilated one."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3, 5)):
        super().__init__()
        self.convs1 = nn.ModuleList()
        self.convs2 = nn.ModuleList()
        for d in dilation:
            conv1 = ChannelsLastConv1d(
                channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d)
            )
            conv2 = ChannelsLastConv1d(
                channels, channels, kernel_size, padding=get_padding(kernel_size)
            )
            init_weights(conv1)
            init_weights(conv2)
            self.convs1.append(weight_norm(conv1))
            self.convs2.append(weight_norm(conv2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place wherever a tensor is not needed again: these are channels x samples large,
        # and on a CPU memory traffic costs as much as the convolutions.
        for c1, c2 in zip(self.convs1, self.convs2, strict=True):
            xt = c1(F.leaky_relu(x, LRELU_SLOPE))
            xt = c2(F.leaky_relu_(xt, LRELU_SLOPE))
            x = xt.add_(x)
        return x

    def remove_weight_norm(self) -> None:
        for conv in [*self.convs1, *self.convs2]:
            remove_parametrizations(conv)


class ResBlock2(nn.Module):
    """MRF residual block of V3: one dilated conv per dilation."""

    def __init__(self, channels: int, kernel_size: int = 3, dilation: tuple[int, ...] = (1, 3)):
        super().__init__()
        self.convs = nn.ModuleList()
        for d in dilation:
            conv = ChannelsLastConv1d(
                channels, channels, kernel_size, dilation=d, padding=get_padding(kernel_size, d)
            )
            init_weights(conv)
            self.convs.append(weight_norm(conv))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for c in self.convs:
            x = c(F.leaky_relu(x, LRELU_SLOPE)).add_(x)
        return x

    def remove_weight_norm(self) -> None:
        for conv in self.convs:
            remove_parametrizations(conv)


class Generator(nn.Module):
    """Mel (B, n_mels, frames) -> waveform (B, 1, frames * hop_length) in [-1, 1]."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        h = config.generator_settings()
        self.num_kernels = len(h.resblock_kernel_sizes)
        self.num_upsamples = len(h.upsample_rates)
        channels = h.upsample_initial_channel
        self.conv_pre = weight_norm(ChannelsLastConv1d(config.n_mels, channels, 7, padding=3))
        resblock = ResBlock1 if h.resblock == "1" else ResBlock2

        self.ups = nn.ModuleList()
        for i, (u, k) in enumerate(zip(h.upsample_rates, h.upsample_kernel_sizes, strict=True)):
            up = ChannelsLastConvTranspose1d(
                channels // 2**i, channels // 2 ** (i + 1), k, u, padding=(k - u) // 2
            )
            init_weights(up)
            self.ups.append(weight_norm(up))

        self.resblocks = nn.ModuleList()
        for i in range(self.num_upsamples):
            ch = channels // 2 ** (i + 1)
            for k, d in zip(h.resblock_kernel_sizes, h.resblock_dilation_sizes, strict=True):
                self.resblocks.append(resblock(ch, k, d))

        conv_post = ChannelsLastConv1d(ch, 1, 7, padding=3)
        init_weights(conv_post)
        self.conv_post = weight_norm(conv_post)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        # In-place activations and sums, as in ResBlock1, only on tensors made here.
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu_(x, LRELU_SLOPE))
            # Multi-receptive-field fusion: the mean of the residual blocks' outputs.
            blocks = self.resblocks[i * self.num_kernels : (i + 1) * self.num_kernels]
            xs = blocks[0](x)
            for block in blocks[1:]:
                xs.add_(block(x))
            x = xs.div_(self.num_kernels)
        # The authors' code uses leaky_relu's default slope (0.01) before the last conv.
        x = self.conv_post(F.leaky_relu_(x))
        return torch.tanh_(x)

    def remove_weight_norm(self) -> None:
        """Fold every weight norm into a plain weight: same output, faster inference."""
        for conv in [self.conv_pre, *self.ups, self.conv_post]:
            remove_parametrizations(conv)
        for block in self.resblocks:
            block.remove_weight_norm()


# --- discriminators (sections 2.2 and 2.3) ----------------------------------------------------


def scaled(channels: int, scale: float, multiple: int = 1) -> int:
    """A layer width times `scale`, rounded to a positive multiple of `multiple` (the groups)."""
    return max(multiple, round(channels * scale / multiple) * multiple)


class DiscriminatorP(nn.Module):
    """MPD sub-discriminator: the waveform reshaped to (T / period, period), 2-D convs with
    kernels (k, 1) so each column of equally spaced samples is processed on its own."""

    def __init__(
        self,
        period: int,
        kernel_size: int = 5,
        stride: int = 3,
        use_spectral_norm: bool = False,
        channel_scale: float = 1.0,
    ):
        super().__init__()
        self.period = period
        norm_f = spectral_norm if use_spectral_norm else weight_norm
        widths = [1] + [scaled(c, channel_scale) for c in (32, 128, 512, 1024)]
        pad = (get_padding(kernel_size), 0)
        self.convs = nn.ModuleList(
            norm_f(nn.Conv2d(c_in, c_out, (kernel_size, 1), (stride, 1), padding=pad))
            for c_in, c_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.convs.append(
            norm_f(nn.Conv2d(widths[-1], widths[-1], (kernel_size, 1), 1, padding=pad))
        )
        self.conv_post = norm_f(nn.Conv2d(widths[-1], 1, (3, 1), 1, padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        b, c, t = x.shape
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect")
            t = t + n_pad
        x = x.view(b, c, t // self.period, self.period)
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods: tuple[int, ...] = (2, 3, 5, 7, 11), channel_scale: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(
            DiscriminatorP(p, channel_scale=channel_scale) for p in periods
        )

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """Real and generated audio (B, 1, T) -> scores and feature maps of each."""
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for d in self.discriminators:
            y_d_r, fmap_r = d(y)
            y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            fmap_rs.append(fmap_r)
            y_d_gs.append(y_d_g)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


class DiscriminatorS(nn.Module):
    """MSD sub-discriminator (MelGAN's): strided, grouped 1-D convs over the waveform."""

    def __init__(self, use_spectral_norm: bool = False, channel_scale: float = 1.0):
        super().__init__()
        norm_f = spectral_norm if use_spectral_norm else weight_norm

        def w(c: int) -> int:
            return scaled(c, channel_scale, multiple=16)

        # (in, out, kernel, stride, groups, padding)
        layers = [
            (1, w(128), 15, 1, 1, 7),
            (w(128), w(128), 41, 2, 4, 20),
            (w(128), w(256), 41, 2, 16, 20),
            (w(256), w(512), 41, 4, 16, 20),
            (w(512), w(1024), 41, 4, 16, 20),
            (w(1024), w(1024), 41, 1, 16, 20),
            (w(1024), w(1024), 5, 1, 1, 2),
        ]
        self.convs = nn.ModuleList(
            norm_f(nn.Conv1d(c_in, c_out, k, s, groups=g, padding=p))
            for c_in, c_out, k, s, g, p in layers
        )
        self.conv_post = norm_f(nn.Conv1d(w(1024), 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        fmap = []
        for conv in self.convs:
            x = F.leaky_relu(conv(x), LRELU_SLOPE)
            fmap.append(x)
        x = self.conv_post(x)
        fmap.append(x)
        return torch.flatten(x, 1, -1), fmap


class MultiScaleDiscriminator(nn.Module):
    """Sub-discriminators on raw audio, x2 and x4 average-pooled; spectral norm on the first."""

    def __init__(self, scales: int = 3, channel_scale: float = 1.0):
        super().__init__()
        self.discriminators = nn.ModuleList(
            DiscriminatorS(use_spectral_norm=i == 0, channel_scale=channel_scale)
            for i in range(scales)
        )
        self.meanpools = nn.ModuleList(nn.AvgPool1d(4, 2, padding=2) for _ in range(scales - 1))

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        y_d_rs, y_d_gs, fmap_rs, fmap_gs = [], [], [], []
        for i, d in enumerate(self.discriminators):
            if i != 0:
                y = self.meanpools[i - 1](y)
                y_hat = self.meanpools[i - 1](y_hat)
            y_d_r, fmap_r = d(y)
            y_d_g, fmap_g = d(y_hat)
            y_d_rs.append(y_d_r)
            fmap_rs.append(fmap_r)
            y_d_gs.append(y_d_g)
            fmap_gs.append(fmap_g)
        return y_d_rs, y_d_gs, fmap_rs, fmap_gs


class Discriminator(nn.Module):
    """MPD and MSD as one network: the paper updates both with a single optimizer."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        scale = config.discriminator_channel_scale
        self.mpd = MultiPeriodDiscriminator(config.periods, channel_scale=scale)
        self.msd = MultiScaleDiscriminator(config.discriminator_scales, channel_scale=scale)

    def forward(self, y: torch.Tensor, y_hat: torch.Tensor):
        """Scores and feature maps of every sub-discriminator, MPD's first, for real `y` and
        generated `y_hat`: (real scores, fake scores, real fmaps, fake fmaps)."""
        mpd = self.mpd(y, y_hat)
        msd = self.msd(y, y_hat)
        return tuple(p + s for p, s in zip(mpd, msd, strict=True))


# --- losses (section 2.4) ---------------------------------------------------------------------


def feature_loss(
    fmap_r: list[list[torch.Tensor]], fmap_g: list[list[torch.Tensor]]
) -> torch.Tensor:
    """Feature matching: L1 between real and generated features of every discriminator layer,
    summed (the authors' code folds the weight 2 in here; it is `feature_matching_weight`)."""
    loss = 0.0
    for dr, dg in zip(fmap_r, fmap_g, strict=True):
        for rl, gl in zip(dr, dg, strict=True):
            loss = loss + torch.mean(torch.abs(rl.detach() - gl))
    return loss


def discriminator_loss(
    disc_real_outputs: list[torch.Tensor], disc_generated_outputs: list[torch.Tensor]
) -> torch.Tensor:
    """LSGAN: real scores to 1, generated to 0, summed over sub-discriminators."""
    loss = 0.0
    for dr, dg in zip(disc_real_outputs, disc_generated_outputs, strict=True):
        loss = loss + torch.mean((1 - dr) ** 2) + torch.mean(dg**2)
    return loss


def generator_loss(disc_outputs: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: generated scores to 1, summed over sub-discriminators."""
    loss = 0.0
    for dg in disc_outputs:
        loss = loss + torch.mean((1 - dg) ** 2)
    return loss
