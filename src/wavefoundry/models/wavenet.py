"""WaveNet (van den Oord et al. 2016) with Fast WaveNet generation (Paine et al. 2016).

Audio is mu-law companded to 256 classes and modelled autoregressively with a 256-way softmax.
A stack of dilated causal convolutions with gated activation units, residual and skip
connections; local conditioning by a log-mel spectrogram upsampled to the sample rate, global
conditioning (speaker, pitch, instrument family) by embeddings added to every layer's gate.

`generate` is Fast WaveNet: every layer keeps a queue of its past inputs, so one new sample
costs O(layers) instead of O(receptive field); on a CPU it runs compiled (models/wavenet_fast.py),
elsewhere as torch operations (`_FastWaveNetQueues`). `generate_naive` recomputes the whole
receptive field for every sample, to measure the difference. Every path draws sample t by
inverse CDF from the same seeded uniforms, so a seed gives the same audio on each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.models import wavenet_fast
from wavefoundry.models.wavenet_fast import draw_uniforms, inverse_cdf_sample


@dataclass(frozen=True)
class WaveNetConfig:
    quantization_channels: int = 256  # mu-law classes, one softmax output each
    residual_channels: int = 128
    dilation_channels: int = 128  # channels of the gated unit (tanh and sigmoid halves)
    skip_channels: int = 256
    layers: int = 30
    dilation_cycles: int = 3  # dilations 1, 2, ..., 2**(layers / cycles - 1), repeated
    kernel_size: int = 3
    # Local conditioning: log-mel frames (n_mels = 0: none), upsampled to the sample rate.
    n_mels: int = 80
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    f_min: float = 0.0
    f_max: float | None = 8000.0
    upsample_scales: tuple[int, ...] = (16, 16)  # their product is hop_length
    # Global conditioning (0 = none): embeddings added into every layer's gate.
    speakers: int = 0
    pitches: int = 0  # 128 for MIDI
    instrument_families: int = 0
    # Optimisation.
    learning_rate: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)
    segment_length: int = 7680  # samples per example; a multiple of hop_length

    def __post_init__(self) -> None:
        if self.kernel_size < 2:
            raise ValueError(f"kernel_size must be at least 2, got {self.kernel_size}")
        if self.layers < 1 or self.dilation_cycles < 1 or self.layers % self.dilation_cycles:
            raise ValueError(
                f"layers ({self.layers}) must be a positive multiple of dilation_cycles "
                f"({self.dilation_cycles})"
            )
        if self.n_mels > 0:
            if math.prod(self.upsample_scales) != self.hop_length:
                raise ValueError(
                    f"the product of upsample_scales {list(self.upsample_scales)} must equal "
                    f"hop_length ({self.hop_length})"
                )
            if self.segment_length % self.hop_length:
                raise ValueError(
                    f"segment_length ({self.segment_length}) must be a multiple of hop_length "
                    f"({self.hop_length})"
                )

    @property
    def dilations(self) -> tuple[int, ...]:
        per_cycle = self.layers // self.dilation_cycles
        return tuple(2**i for i in range(per_cycle)) * self.dilation_cycles

    @property
    def receptive_field(self) -> int:
        """Samples the prediction of the next sample depends on (the current one included)."""
        return (self.kernel_size - 1) * sum(self.dilations) + 1


class ConditionUpsampler(nn.Module):
    """Mel frames to the sample rate: per scale, nearest-neighbour repetition then a learned
    per-channel smoothing convolution, started as a moving average (as r9y9's wavenet_vocoder)."""

    def __init__(self, n_mels: int, scales: tuple[int, ...]):
        super().__init__()
        self.scales = scales
        self.smoothing = nn.ModuleList(
            nn.Conv1d(n_mels, n_mels, 2 * s + 1, padding=s, groups=n_mels, bias=False)
            for s in scales
        )
        for conv, s in zip(self.smoothing, scales, strict=True):
            nn.init.constant_(conv.weight, 1.0 / (2 * s + 1))

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, n_mels, frames) -> (B, n_mels, frames * hop_length)."""
        for s, conv in zip(self.scales, self.smoothing, strict=True):
            mel = conv(mel.repeat_interleave(s, dim=-1))
        return mel


class GlobalConditioning(nn.Module):
    """V^T h of the paper for a one-hot h: an embedding per kind of label, summed."""

    def __init__(self, config: WaveNetConfig, channels: int):
        super().__init__()
        self.speaker = nn.Embedding(config.speakers, channels) if config.speakers else None
        self.pitch = nn.Embedding(config.pitches, channels) if config.pitches else None
        self.instrument_family = (
            nn.Embedding(config.instrument_families, channels)
            if config.instrument_families
            else None
        )

    def forward(
        self,
        speaker: torch.Tensor | None,
        pitch: torch.Tensor | None,
        instrument_family: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """(B,) labels -> (B, channels), or None without global conditioning."""
        total = None
        for embedding, labels in (
            (self.speaker, speaker),
            (self.pitch, pitch),
            (self.instrument_family, instrument_family),
        ):
            if embedding is not None:
                total = embedding(labels) if total is None else total + embedding(labels)
        return total


class ResidualLayer(nn.Module):
    """z = tanh(W_f * x + V_f y + V_f^T h) . sigmoid(W_g * x + V_g y + V_g^T h); then a 1x1
    convolution back to the residual stream and one to the skip connections (figure 4)."""

    def __init__(self, config: WaveNetConfig, dilation: int):
        super().__init__()
        self.dilation = dilation
        self.padding = (config.kernel_size - 1) * dilation
        gate = 2 * config.dilation_channels  # filter and gate halves in one convolution
        self.dilated_conv = nn.Conv1d(
            config.residual_channels, gate, config.kernel_size, dilation=dilation
        )
        self.local_conditioning = (
            nn.Conv1d(config.n_mels, gate, 1, bias=False) if config.n_mels else None
        )
        if self.local_conditioning is not None:
            # Log-mels are large (down to log 1e-5): start unconditioned rather than saturated.
            nn.init.zeros_(self.local_conditioning.weight)
        self.global_conditioning = GlobalConditioning(config, gate)
        self.residual_conv = nn.Conv1d(config.dilation_channels, config.residual_channels, 1)
        self.skip_conv = nn.Conv1d(config.dilation_channels, config.skip_channels, 1)

    def forward(
        self, x: torch.Tensor, local: torch.Tensor | None, global_: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.dilated_conv(F.pad(x, (self.padding, 0)))  # causal: pad the past only
        if self.local_conditioning is not None:
            z = z + self.local_conditioning(local)
        if global_ is not None:
            z = z + global_.unsqueeze(-1)
        filter_, gate = z.chunk(2, dim=1)
        z = torch.tanh(filter_) * torch.sigmoid(gate)
        return x + self.residual_conv(z), self.skip_conv(z)


class WaveNet(nn.Module):
    def __init__(self, config: WaveNetConfig):
        super().__init__()
        self.config = config
        # A 1x1 convolution over the one-hot input, as a lookup.
        self.input_embedding = nn.Embedding(config.quantization_channels, config.residual_channels)
        self.upsampler = (
            ConditionUpsampler(config.n_mels, config.upsample_scales) if config.n_mels else None
        )
        self.layers = nn.ModuleList(ResidualLayer(config, d) for d in config.dilations)
        self.output_conv1 = nn.Conv1d(config.skip_channels, config.skip_channels, 1)
        self.output_conv2 = nn.Conv1d(config.skip_channels, config.quantization_channels, 1)

    def forward(
        self,
        x_classes: torch.Tensor,
        mel: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        pitch: torch.Tensor | None = None,
        instrument_family: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Teacher-forced logits (B, quantization_channels, T) for input classes (B, T):
        logits[..., t] predicts sample t + 1 from samples <= t (and the conditioning at t)."""
        self._check_conditioning(mel, speaker, pitch, instrument_family)
        local = self._upsample(mel, x_classes.shape[-1])
        return self._logits(x_classes, local, speaker, pitch, instrument_family)

    def _check_conditioning(self, mel, speaker, pitch, instrument_family) -> None:
        c = self.config
        for name, size, value in (
            ("mel", c.n_mels, mel),
            ("speaker", c.speakers, speaker),
            ("pitch", c.pitches, pitch),
            ("instrument_family", c.instrument_families, instrument_family),
        ):
            if size and value is None:
                raise ValueError(f"this WaveNet is conditioned on {name}: pass it")
            if not size and value is not None:
                raise ValueError(f"this WaveNet is not conditioned on {name}")

    def _upsample(self, mel: torch.Tensor | None, samples: int) -> torch.Tensor | None:
        if mel is None:
            return None
        local = self.upsampler(mel)
        if local.shape[-1] < samples:
            raise ValueError(
                f"{mel.shape[-1]} mel frames cover {local.shape[-1]} samples, fewer than {samples}"
            )
        return local[..., :samples]

    def _logits(self, x_classes, local, speaker, pitch, instrument_family) -> torch.Tensor:
        x = self.input_embedding(x_classes).transpose(1, 2)
        skips = 0
        for layer in self.layers:
            global_ = layer.global_conditioning(speaker, pitch, instrument_family)
            x, skip = layer(x, local, global_)
            skips = skips + skip
        return self.output_conv2(F.relu(self.output_conv1(F.relu(skips))))

    # --- generation ---------------------------------------------------------------------------

    @staticmethod
    def _batch_size(*conditioning: torch.Tensor | int | None) -> int:
        sizes = (c.shape[0] for c in conditioning if isinstance(c, torch.Tensor) and c.dim() > 0)
        return next(sizes, 1)

    def _first_inputs(
        self, batch: int, first_sample: torch.Tensor | int | None, device: torch.device
    ) -> torch.Tensor:
        if first_sample is None:  # the middle class: silence
            first_sample = self.config.quantization_channels // 2
        return torch.as_tensor(first_sample, device=device).long().expand(batch).clone()

    @torch.inference_mode()
    def generate(
        self,
        n_samples: int,
        mel: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        pitch: torch.Tensor | None = None,
        instrument_family: torch.Tensor | None = None,
        temperature: float = 1.0,
        first_sample: torch.Tensor | int | None = None,
        return_logits: bool = False,
        teacher_forcing: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        compiled: bool | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Fast WaveNet: `n_samples` classes (B, n_samples), B from the conditioning.

        Step t feeds one input sample (first_sample, default silence, then each sample drawn)
        and draws sample t from softmax(logits / temperature), by inverse CDF of a uniform
        drawn from `generator`. `teacher_forcing` (B, n_samples) feeds those inputs instead, so
        the logits equal `forward(teacher_forcing, ...)`'s. With `return_logits`, also returns
        the logits (B, quantization_channels, n_samples). `compiled`: run the compiled loop of
        models/wavenet_fast.py (CPU only) or torch operations; default: compiled on a CPU.
        Raises ValueError for missing or unexpected conditioning, or `compiled` off the CPU.
        """
        self._check_conditioning(mel, speaker, pitch, instrument_family)
        device = self.input_embedding.weight.device
        if compiled is None:
            compiled = device.type == "cpu"
        if compiled and device.type != "cpu":
            raise ValueError(f"the compiled generation runs on a CPU, not {device.type}")
        if teacher_forcing is not None:
            if teacher_forcing.shape[-1] < n_samples:
                raise ValueError(f"teacher_forcing has fewer than {n_samples} samples")
            teacher_forcing = teacher_forcing.to(device)
        batch = self._batch_size(
            mel, speaker, pitch, instrument_family, teacher_forcing, first_sample
        )
        local = self._upsample(mel, n_samples)
        gate_bias = _GateBias(self, batch, local, speaker, pitch, instrument_family)
        inputs = self._first_inputs(batch, first_sample, device)
        uniforms = draw_uniforms(batch, n_samples, generator, device)
        if compiled:
            samples, logits_out = wavenet_fast.generate(
                wavenet_fast.FastWaveNetWeights.of(self),
                n_samples,
                gate_bias.steps,
                inputs,
                uniforms,
                temperature,
                teacher_forcing,
                return_logits,
            )
            return (samples, logits_out) if return_logits else samples
        return self._generate_queues(
            n_samples, gate_bias, inputs, uniforms, temperature, teacher_forcing, return_logits
        )

    def _generate_queues(
        self, n_samples, gate_bias, inputs, uniforms, temperature, teacher_forcing, return_logits
    ):
        """`generate` as torch operations, a few per layer and step (any device)."""
        batch, device = len(inputs), inputs.device
        queues = _FastWaveNetQueues(self, batch, gate_bias)
        samples = torch.empty(batch, n_samples, dtype=torch.long, device=device)
        logits_out = (
            torch.empty(batch, self.config.quantization_channels, n_samples, device=device)
            if return_logits
            else None
        )
        for t in range(n_samples):
            if teacher_forcing is not None:
                inputs = teacher_forcing[:, t]
            logits = queues.step(inputs)
            if logits_out is not None:
                logits_out[:, :, t] = logits
            inputs = inverse_cdf_sample(logits, uniforms[:, t], temperature)
            samples[:, t] = inputs
        return (samples, logits_out) if return_logits else samples

    @torch.inference_mode()
    def generate_naive(
        self,
        n_samples: int,
        mel: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        pitch: torch.Tensor | None = None,
        instrument_family: torch.Tensor | None = None,
        temperature: float = 1.0,
        first_sample: torch.Tensor | int | None = None,
        return_logits: bool = False,
        teacher_forcing: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """As `generate`, but every sample runs the whole network over a window of one receptive
        field, O(receptive field) per sample. Before the first sample the window holds padding,
        zeroed at every layer's input as `forward`'s causal padding is."""
        self._check_conditioning(mel, speaker, pitch, instrument_family)
        device = self.input_embedding.weight.device
        if teacher_forcing is not None:
            if teacher_forcing.shape[-1] < n_samples:
                raise ValueError(f"teacher_forcing has fewer than {n_samples} samples")
            teacher_forcing = teacher_forcing.to(device)
        batch = self._batch_size(
            mel, speaker, pitch, instrument_family, teacher_forcing, first_sample
        )
        local = self._upsample(mel, n_samples)
        uniforms = draw_uniforms(batch, n_samples, generator, device)
        field = self.config.receptive_field
        pad = field - 1
        if local is not None:
            local = F.pad(local, (pad, 0))

        inputs = torch.full((batch, pad + n_samples), self.config.quantization_channels // 2)
        inputs = inputs.to(device)
        inputs[:, pad] = self._first_inputs(batch, first_sample, device)
        samples = torch.empty(batch, n_samples, dtype=torch.long, device=device)
        position = torch.arange(field, device=device)
        logits_out = []
        for t in range(n_samples):
            if teacher_forcing is not None:
                inputs[:, pad + t] = teacher_forcing[:, t]
            window = slice(t, t + field)
            x = self.input_embedding(inputs[:, window]).transpose(1, 2)
            started = (position >= pad - t).to(x.dtype)
            skips = 0
            for layer in self.layers:
                global_ = layer.global_conditioning(speaker, pitch, instrument_family)
                x, skip = layer(x * started, None if local is None else local[..., window], global_)
                skips = skips + skip
            logits = self.output_conv2(F.relu(self.output_conv1(F.relu(skips))))[..., -1]
            if return_logits:
                logits_out.append(logits)
            samples[:, t] = inverse_cdf_sample(logits, uniforms[:, t], temperature)
            if t + 1 < n_samples:
                inputs[:, pad + t + 1] = samples[:, t]
        return (samples, torch.stack(logits_out, dim=-1)) if return_logits else samples


class _GateBias:
    """Every layer's gate bias per step: the dilated convolution's bias + V^T h (global
    conditioning) + V y (local conditioning, projected for all layers at once)."""

    def __init__(self, net: WaveNet, batch: int, local, speaker, pitch, instrument_family):
        layer_bias = []
        for layer in net.layers:
            bias = layer.dilated_conv.bias.expand(batch, -1)
            global_ = layer.global_conditioning(speaker, pitch, instrument_family)
            layer_bias.append(bias if global_ is None else bias + global_)
        self.layer_bias = torch.stack(layer_bias)  # (layers, B, 2 dc)
        self.local = local
        if local is not None:
            # (n_mels, layers * 2 dc): every layer's 1x1 projection side by side
            self.local_weight = torch.cat(
                [layer.local_conditioning.weight[:, :, 0].t() for layer in net.layers], dim=1
            )

    def steps(self, t: int, steps: int) -> torch.Tensor:
        """(steps, layers, B, 2 dc) for steps t .. t + steps - 1 (fewer at the end of the
        conditioning), or (1, layers, B, 2 dc) without local conditioning: the same at every
        step."""
        if self.local is None:
            return self.layer_bias[None]
        frames = self.local[..., t : t + steps].permute(2, 0, 1)  # (steps, B, n_mels)
        projected = frames @ self.local_weight  # (steps, B, layers * 2 dc)
        layers, batch = self.layer_bias.shape[:2]
        projected = projected.view(len(projected), batch, layers, -1)
        return projected.transpose(1, 2) + self.layer_bias


@dataclass(slots=True)
class _LayerQueue:
    """One layer of Fast WaveNet: its queue of past inputs and its weights as matrices."""

    dilation: int
    rows: list[torch.Tensor]  # d views (B, k * residual): row t mod d holds step t's k taps
    slots: list[torch.Tensor]  # d * k views (B, residual) of the same memory, row-major
    rotated_taps: list[torch.Tensor]  # k of (k * residual, 2 dc): the kernel per slot rotation
    residual: torch.Tensor  # (dc + 1, residual): the 1x1 convolution, bias as the last row
    z: torch.Tensor  # (B, 2 dc): the pre-activations, filter_ and gate halves
    filter_: torch.Tensor
    gate: torch.Tensor
    gate_out: torch.Tensor  # (B, dc + 1): the gated unit's output, then a constant 1
    gate_value: torch.Tensor  # (B, dc): gate_out without the 1


def _with_bias_row(conv: nn.Conv1d) -> torch.Tensor:
    """A 1x1 convolution as an (in + 1, out) matrix for inputs ending in a constant 1."""
    return torch.cat([conv.weight[:, :, 0].t(), conv.bias[None]]).contiguous()


class _FastWaveNetQueues:
    """The state of Fast WaveNet generation, with the network's weights laid out as matrices.

    A dilated convolution with kernel k and dilation d needs the layer's inputs at t, t - d,
    ..., t - (k - 1) d. They share the residue t mod d, so each layer's queue is d rows of k
    slots: row t mod d holds exactly the taps of step t, the newest in slot (t // d) mod k
    where it overwrites the oldest. The convolution is then one matmul of that row with the
    kernel's taps reordered for the slot rotation (k orders, prepared once).

    A constant 1 after each layer's gate output folds the 1x1 convolutions' biases into their
    matmuls, and all skip convolutions become one matmul over every layer's gate output.
    """

    def __init__(self, net: WaveNet, batch: int, gate_bias: _GateBias):
        c = net.config
        device = net.input_embedding.weight.device
        k, dc = c.kernel_size, c.dilation_channels
        self.net = net
        self.batch = batch
        self.kernel_size = k
        self.t = 0
        gates = torch.zeros(batch, len(net.layers), dc + 1, device=device)
        gates[:, :, dc] = 1.0
        self.layers = []
        for layer, gate_out in zip(net.layers, gates.unbind(1), strict=True):
            d = layer.dilation
            weight = layer.dilated_conv.weight  # (2 dc, residual, k): tap j reads t - (k-1-j) d
            taps = [weight[:, :, j].t() for j in range(k)]
            # At phase q = (t // d) mod k, slot s holds the input of step t - ((q - s) mod k) d.
            rotated_taps = [
                torch.cat([taps[k - 1 - (q - s) % k] for s in range(k)]).contiguous()
                for q in range(k)
            ]
            queue = torch.zeros(d, batch, k, c.residual_channels, device=device)
            z = torch.empty(batch, 2 * dc, device=device)
            self.layers.append(
                _LayerQueue(
                    dilation=d,
                    rows=[row.view(batch, -1) for row in queue.unbind(0)],
                    slots=[slot for row in queue.unbind(0) for slot in row.unbind(1)],
                    rotated_taps=rotated_taps,
                    residual=_with_bias_row(layer.residual_conv),
                    z=z,
                    filter_=z[:, :dc],
                    gate=z[:, dc:],
                    gate_out=gate_out,
                    gate_value=gate_out[:, :dc],
                )
            )
        self.gates = gates.view(batch, -1)
        self.skip = torch.cat([_with_bias_row(layer.skip_conv) for layer in net.layers])
        self.embedding = net.input_embedding.weight
        self.output1 = net.output_conv1.weight[:, :, 0].t().contiguous()
        self.output1_bias = net.output_conv1.bias
        self.output2 = net.output_conv2.weight[:, :, 0].t().contiguous()
        self.output2_bias = net.output_conv2.bias
        self.gate_bias = gate_bias

    def _bias_at(self, t: int) -> tuple[torch.Tensor, ...]:
        """Every layer's (B, 2 dc) gate bias at step t."""
        chunk = 256
        if t % chunk == 0:
            self.chunk_bias = self.gate_bias.steps(t, chunk)
        return self.chunk_bias[t % chunk if len(self.chunk_bias) > 1 else 0].unbind(0)

    def step(self, inputs: torch.Tensor) -> torch.Tensor:
        """Feed input classes (B,) at the next step; logits (B, classes) for the step after."""
        t = self.t
        self.t += 1
        k = self.kernel_size
        previous = x = None
        for layer, bias in zip(self.layers, self._bias_at(t), strict=True):
            d = layer.dilation
            phase = (t // d) % k
            x_in = layer.slots[(t % d) * k + phase]  # the layer's input at t joins its queue
            if previous is None:
                torch.index_select(self.embedding, 0, inputs, out=x_in)
            else:
                torch.addmm(x, previous.gate_out, previous.residual, out=x_in)
            torch.addmm(bias, layer.rows[t % d], layer.rotated_taps[phase], out=layer.z)
            torch.mul(layer.filter_.tanh_(), layer.gate.sigmoid_(), out=layer.gate_value)
            previous, x = layer, x_in
        skips = torch.relu_(self.gates @ self.skip)
        hidden = torch.relu_(torch.addmm(self.output1_bias, skips, self.output1))
        return torch.addmm(self.output2_bias, hidden, self.output2)


def negative_log_likelihood(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (B, classes, T) logits against (B, T) classes, in nats."""
    return F.cross_entropy(logits.float(), targets)


def bits_per_sample(nats: torch.Tensor | float) -> torch.Tensor | float:
    """Negative log-likelihood in nats to bits per sample."""
    return nats / math.log(2)
