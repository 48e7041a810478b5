"""SampleRNN (Mehri et al. 2017): an unconditional end-to-end neural audio generation model.

Audio is quantised to `q_levels` classes (linear or mu-law) and modelled one sample at a time
by a hierarchy of modules running at different rates (section 2):

- frame-level modules (section 2.1): tier k reads non-overlapping frames of `frame_sizes[k]`
  samples, adds the conditioning vector the tier above gave this frame, and updates a GRU
  once per frame. Its output is upsampled by a learned linear map, c_(t-1)r+j = W_j h_t for
  j = 1 .. r, into one conditioning vector per frame of the tier below (r = the ratio of the
  two frame sizes; the lowest frame tier gives one vector per sample);
- the sample-level module (section 2.2): an MLP over the embeddings of the last
  `frame_sizes[-1]` samples plus the lowest frame tier's vector for this sample, ending in a
  `q_levels`-way softmax.

The 3-tier model of the paper's best results is frame sizes 8 and 2, dim 1024, one GRU layer,
256-way softmax, learned initial states, trained with truncated backpropagation through time
over 512-sample subsequences (section 3). Global conditioning (a VCTK speaker, an NSynth
pitch) is not in the paper: here an embedding per label is added to every frame tier's input.

`forward` is teacher forcing over a whole sequence; `generate` runs sample by sample, each
frame tier stepping only at its own rate (once every `frame_sizes[k]` samples).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.audio import linear_dequantize, linear_quantize, mu_law_decode, mu_law_encode
from wavefoundry.models.layers import sample_from_logits


@dataclass(frozen=True)
class SampleRNNConfig:
    frame_sizes: tuple[int, ...] = (8, 2)  # samples per frame, top tier first: the 3-tier model
    dim: int = 1024  # GRU state and MLP width
    n_rnn: int = 1  # GRU layers per frame tier
    learn_h0: bool = True  # the initial GRU states are parameters
    q_levels: int = 256  # softmax classes
    quantization: Literal["linear", "mu-law"] = "linear"
    embedding_dim: int = 256  # embedding of each quantised sample the MLP reads
    # Truncated BPTT: each training segment is cut into subsequences of `tbptt_length`
    # samples; the GRU states carry across them, the gradients do not.
    tbptt_length: int = 512
    segment_length: int = 2048  # samples per training example: a multiple of tbptt_length
    # Global conditioning (0 = none): filled in from the dataset by the family.
    speakers: int = 0
    pitches: int = 0
    # Optimisation (the reference code: Adam at 1e-3, gradients clipped to 1).
    learning_rate: float = 1e-3
    adam_betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        sizes = self.frame_sizes
        if not sizes or any(s < 1 for s in sizes):
            raise ValueError(f"frame_sizes must be positive, got {list(sizes)}")
        for upper, lower in zip(sizes, sizes[1:], strict=False):
            if upper % lower:
                raise ValueError(
                    f"each frame size must be a multiple of the next, got {list(sizes)}"
                )
        if self.tbptt_length % sizes[0]:
            raise ValueError(
                f"tbptt_length ({self.tbptt_length}) must be a multiple of the top frame size "
                f"({sizes[0]})"
            )
        if self.segment_length % self.tbptt_length:
            raise ValueError(
                f"segment_length ({self.segment_length}) must be a multiple of tbptt_length "
                f"({self.tbptt_length})"
            )

    @property
    def lookback(self) -> int:
        """Samples before the first predicted one that the model reads: the top frame."""
        return self.frame_sizes[0]

    def quantize(self, audio: torch.Tensor) -> torch.Tensor:
        if self.quantization == "mu-law":
            return mu_law_encode(audio, self.q_levels)
        return linear_quantize(audio, self.q_levels)

    def dequantize(self, classes: torch.Tensor) -> torch.Tensor:
        if self.quantization == "mu-law":
            return mu_law_decode(classes, self.q_levels)
        return linear_dequantize(classes, self.q_levels)

    @property
    def silence(self) -> int:
        """The class of a zero sample, what a sequence is padded with before its start."""
        return self.q_levels // 2


class GlobalConditioning(nn.Module):
    """A speaker and/or pitch embedding of width `dim`, added to every frame tier's input."""

    def __init__(self, config: SampleRNNConfig):
        super().__init__()
        self.speaker = nn.Embedding(config.speakers, config.dim) if config.speakers else None
        self.pitch = nn.Embedding(config.pitches, config.dim) if config.pitches else None

    def forward(self, speaker: torch.Tensor | None, pitch: torch.Tensor | None):
        """(B,) labels -> (B, 1, dim), or None without conditioning."""
        total = None
        for embedding, labels in ((self.speaker, speaker), (self.pitch, pitch)):
            if embedding is not None:
                if labels is None:
                    raise ValueError("this SampleRNN is conditioned: give its labels")
                vector = embedding(labels).unsqueeze(1)
                total = vector if total is None else total + vector
        return total


class FrameLevelModule(nn.Module):
    """Tier k of section 2.1: h_t = GRU(h_(t-1), W_x f_t + c_t), then r learned upsamplings."""

    def __init__(self, config: SampleRNNConfig, frame_size: int, ratio: int):
        super().__init__()
        self.frame_size, self.ratio, self.dim = frame_size, ratio, config.dim
        self.input_expand = nn.Linear(frame_size, config.dim)
        self.rnn = nn.GRU(config.dim, config.dim, num_layers=config.n_rnn, batch_first=True)
        h0 = torch.zeros(config.n_rnn, 1, config.dim)
        if config.learn_h0:
            self.h0 = nn.Parameter(h0)
        else:
            self.register_buffer("h0", h0)
        self.upsampling = nn.Linear(config.dim, config.dim * ratio)  # W_1 .. W_r side by side

    def initial_state(self, batch: int) -> torch.Tensor:
        return self.h0.expand(-1, batch, -1).contiguous()

    def forward(
        self, frames: torch.Tensor, conditioning: torch.Tensor | None, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, frame_size) dequantised frames, (B, S, dim) or (B, 1, dim) conditioning, the
        GRU state -> ((B, S * ratio, dim) conditioning for the tier below, the new state)."""
        x = self.input_expand(frames)
        if conditioning is not None:
            x = x + conditioning
        output, state = self.rnn(x, state)
        batch, steps, _ = output.shape
        return self.upsampling(output).reshape(batch, steps * self.ratio, self.dim), state


class SampleLevelModule(nn.Module):
    """Section 2.2: an MLP over the embeddings of the last `frame_size` samples plus the lowest
    frame tier's vector for this sample, to logits over `q_levels` classes."""

    def __init__(self, config: SampleRNNConfig):
        super().__init__()
        self.frame_size = config.frame_sizes[-1]
        self.embedding = nn.Embedding(config.q_levels, config.embedding_dim)
        self.input_expand = nn.Linear(self.frame_size * config.embedding_dim, config.dim)
        self.hidden = nn.ModuleList([nn.Linear(config.dim, config.dim) for _ in range(2)])
        self.output = nn.Linear(config.dim, config.q_levels)

    def forward(self, windows: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
        """(B, T, frame_size) classes and (B, T, dim) conditioning -> (B, T, q_levels) logits."""
        x = self.input_expand(self.embedding(windows).flatten(-2)) + conditioning
        x = F.relu(x)
        for layer in self.hidden:
            x = F.relu(layer(x))
        return self.output(x)


class SampleRNN(nn.Module):
    def __init__(self, config: SampleRNNConfig):
        super().__init__()
        self.config = config
        sizes = config.frame_sizes
        ratios = [upper // lower for upper, lower in zip(sizes, sizes[1:], strict=False)]
        ratios.append(sizes[-1])  # the lowest frame tier conditions every sample
        self.frame_level = nn.ModuleList(
            [FrameLevelModule(config, size, r) for size, r in zip(sizes, ratios, strict=True)]
        )
        self.sample_level = SampleLevelModule(config)
        self.conditioning = GlobalConditioning(config)

    def initial_states(self, batch: int) -> list[torch.Tensor]:
        """Each frame tier's GRU state at the start of a sequence."""
        return [tier.initial_state(batch) for tier in self.frame_level]

    def forward(
        self,
        classes: torch.Tensor,
        speaker: torch.Tensor | None = None,
        pitch: torch.Tensor | None = None,
        states: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Teacher forcing. `classes` (B, lookback + T): the `lookback` samples before the
        first predicted one (silence at a sequence's start), then T samples, T a multiple of
        the top frame size. Returns the logits (B, q_levels, T) of those T samples, each from
        the samples before it, and the frame tiers' GRU states after them (to carry into the
        next subsequence). `states` None: the initial states."""
        c = self.config
        lookback = c.lookback
        length = classes.shape[-1] - lookback
        if length <= 0 or length % lookback:
            raise ValueError(
                f"expected lookback ({lookback}) + a multiple of {lookback} samples, "
                f"got {classes.shape[-1]}"
            )
        batch = classes.shape[0]
        states = self.initial_states(batch) if states is None else states
        samples = c.dequantize(classes)
        conditioning = self.conditioning(speaker, pitch)
        above = None
        new_states = []
        for tier, state in zip(self.frame_level, states, strict=True):
            start = lookback - tier.frame_size
            frames = samples[:, start : start + length].reshape(batch, -1, tier.frame_size)
            total = conditioning if above is None else above
            if above is not None and conditioning is not None:
                total = above + conditioning
            above, state = tier(frames, total, state)
            new_states.append(state)
        frame = c.frame_sizes[-1]
        windows = classes[:, lookback - frame : lookback + length - 1].unfold(1, frame, 1)
        logits = self.sample_level(windows, above)
        return logits.transpose(1, 2), new_states

    # --- generation ---------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(
        self,
        n_samples: int,
        speaker: torch.Tensor | None = None,
        pitch: torch.Tensor | None = None,
        batch: int = 1,
        temperature: float = 1.0,
        return_logits: bool = False,
        teacher_forcing: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`n_samples` classes (B, n_samples), sample by sample from silence.

        Frame tier k steps only when the sample index is a multiple of its frame size (each
        step one GRU update on the frame just completed, then its r upsampled vectors are read
        one per frame of the tier below); the sample-level MLP runs once per sample.
        `teacher_forcing` (B, n_samples) feeds those samples instead of the drawn ones, so the
        logits equal `forward`'s on the same samples. With `return_logits`, also returns the
        logits (B, q_levels, n_samples). B comes from the labels or `teacher_forcing`.
        """
        c = self.config
        device = self.sample_level.output.weight.device
        for given in (speaker, pitch, teacher_forcing):
            if given is not None:
                batch = given.shape[0]
        conditioning = self.conditioning(speaker, pitch)
        states = self.initial_states(batch)
        lookback, frame = c.lookback, c.frame_sizes[-1]
        history = torch.full((batch, lookback + n_samples), c.silence, device=device)
        if teacher_forcing is not None:
            history[:, lookback:] = teacher_forcing[:, :n_samples].to(device)
        values = c.dequantize(history)
        upsampled: list[torch.Tensor] = [torch.empty(0)] * len(self.frame_level)
        logits_out = (
            torch.empty(batch, c.q_levels, n_samples, device=device) if return_logits else None
        )
        for t in range(n_samples):
            now = lookback + t
            for k, tier in enumerate(self.frame_level):
                if t % tier.frame_size:
                    continue
                frame_in = values[:, now - tier.frame_size : now].unsqueeze(1)
                above = conditioning
                if k:
                    upper = self.frame_level[k - 1]
                    vector = upsampled[k - 1][:, (t % upper.frame_size) // tier.frame_size]
                    above = vector.unsqueeze(1) + (0 if conditioning is None else conditioning)
                output, states[k] = tier(frame_in, above, states[k])
                upsampled[k] = output  # (B, ratio, dim): one vector per frame below
            vector = upsampled[-1][:, t % frame].unsqueeze(1)
            window = history[:, now - frame : now].unsqueeze(1)
            logits = self.sample_level(window, vector)[:, 0]
            if logits_out is not None:
                logits_out[:, :, t] = logits
            if teacher_forcing is None:
                drawn = sample_from_logits(logits, temperature, generator)
                history[:, now] = drawn
                values[:, now] = c.dequantize(drawn)
        samples = history[:, lookback:]
        return (samples, logits_out) if return_logits else samples
