"""Tacotron 2: Natural TTS Synthesis by Conditioning WaveNet on Mel Spectrogram Predictions.

Shen et al., ICASSP 2018; sizes from NVIDIA's reference `hparams.py` (github.com/NVIDIA/tacotron2).
Characters are embedded and encoded by 3 convolutions and a bidirectional LSTM. A decoder
predicts the mel spectrogram autoregressively: the previous frame goes through a prenet (two
ReLU layers with dropout kept on at inference), an attention LSTM reads it with the last
attention context, location-sensitive attention (Chorowski et al. 2015) over the encoder
outputs uses the previous and the cumulative attention weights, and a decoder LSTM gives the
next frame(s) and a stop token ("gate"). A 5-convolution postnet adds a residual to the frames.

Two additions from later recipes: a reduction factor `n_frames_per_step` (r frames per
decoder step, Tacotron 1; alignment forms in far fewer steps) and a speaker embedding joined
to every encoder output for multi-speaker corpora (VCTK). The guided attention loss of
Tachibana et al. 2017 ("Efficiently trainable text-to-speech...") is `guided_attention_loss`,
and the forward-sum alignment loss of Badlani et al. 2021 ("One TTS Alignment To Rule Them
All", RAD-TTS's CTC over the attention) is `forward_sum_loss`.

Why not `torchaudio.models.Tacotron2`: it has no reduction factor and no speaker embedding,
and its prenet draws dropout from the global RNG, so a served request could not be made
reproducible; adding those means rewriting its decoder anyway. The modules here keep
NVIDIA's names (Encoder, Decoder, Attention, LocationLayer, Prenet, Postnet) so their
checkpoints' structure is recognisable.

Shapes: text ids (B, N) int64 with 0 as padding; mel (B, n_mels, T) natural-log magnitude
(audio.log_mel, the same frames HiFi-GAN vocodes), T a multiple of r in training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.text.symbols import DEFAULT_SYMBOLS, SymbolTable


@dataclass(frozen=True)
class Tacotron2Config:
    # Text and audio (NVIDIA hparams: 22,050 Hz, FFT 1024, hop 256, 80 mels, 0-8000 Hz).
    # The symbol table travels in the config, so every exported model carries its own.
    symbols: tuple[str, ...] = DEFAULT_SYMBOLS
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    # The decoder reads and predicts frames standardised as (log-mel - mel_mean) / mel_std
    # (global mean-variance normalisation, as ESPnet's recipes do); 0 and 1, none, in the
    # paper. The model's inputs and outputs stay log-mel either way.
    mel_mean: float = 0.0
    mel_std: float = 1.0
    # Encoder.
    symbols_embedding_dim: int = 512
    encoder_kernel_size: int = 5
    encoder_n_convolutions: int = 3
    encoder_embedding_dim: int = 512
    # Decoder.
    n_frames_per_step: int = 1  # reduction factor r
    attention_rnn_dim: int = 1024
    decoder_rnn_dim: int = 1024
    prenet_dim: int = 256
    prenet_dropout: float = 0.5  # kept on at inference, as in the paper
    max_decoder_steps: int = 1000
    gate_threshold: float = 0.5
    p_attention_dropout: float = 0.1
    p_decoder_dropout: float = 0.1
    # Location-sensitive attention.
    attention_dim: int = 128
    attention_location_n_filters: int = 32
    attention_location_kernel_size: int = 31
    # Chorowski et al. 2015's sharpening: weights = softmax(beta * energies); 1 in Tacotron 2.
    attention_sharpening: float = 1.0
    # Free running only: attention may not leave the window from `attention_backward_window`
    # characters before the last step's most attended one to `attention_forward_window`
    # after it (the attention constraint of Deep Voice 3, Ping et al. 2018; ESPnet's
    # `use_att_constraint`, 1 and 3). Off in the paper; training is never constrained.
    use_attention_constraint: bool = False
    attention_backward_window: int = 1
    attention_forward_window: int = 3
    # Postnet.
    postnet_embedding_dim: int = 512
    postnet_kernel_size: int = 5
    postnet_n_convolutions: int = 5
    # Speakers (0: single speaker; set from the data by the family).
    n_speakers: int = 0
    speaker_embedding_dim: int = 64
    # Training (NVIDIA: lr 1e-3, weight decay 1e-6; Tachibana's guided attention g = 0.2).
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    guided_attention_sigma: float = 0.2
    guided_attention_weight: float = 1.0
    # The forward-sum (CTC) alignment loss of Badlani et al. 2021 ("One TTS Alignment To Rule
    # Them All", RAD-TTS's AttentionCTCLoss): minus the log of the attention's probability
    # summed over every monotonic path that visits each symbol in order, a blank of
    # log-probability `forward_sum_blank_logprob` (RAD-TTS's -1) taking the steps between.
    # It rewards sharp attention that walks the text at any pace, where the guided loss above
    # rewards the diagonal however blurred. 0 (off) in the paper; always logged.
    forward_sum_weight: float = 0.0
    forward_sum_blank_logprob: float = -1.0
    # The stop token's BCE over real decoder steps only (ESPnet's `use_masking`; the frame and
    # attention losses are masked always). Off in NVIDIA's code, which counts every padded
    # step as a stop target: the gate then learns to stop on the padding's input frame, which
    # free running never feeds it, rather than on the text's end.
    use_masking: bool = False
    # Weight of the stop targets in that BCE (ESPnet's `bce_pos_weight`; 1, unweighted, in
    # the paper). Masked, a sentence has one stop step in tens: unweighted, the gate first
    # learns never to stop.
    bce_pos_weight: float = 1.0
    max_frames: int = 1000  # training clips are cut to this many mel frames

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def symbol_table(self) -> SymbolTable:
        return SymbolTable(tuple(self.symbols))


def lengths_to_mask(lengths: torch.Tensor, max_len: int | None = None) -> torch.Tensor:
    """(B,) lengths to a (B, max_len) bool mask, True on the real positions."""
    max_len = int(lengths.max()) if max_len is None else max_len
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def xavier(layer: nn.Linear | nn.Conv1d, w_init_gain: str = "linear") -> nn.Module:
    """`layer` with Xavier-uniform weights scaled for the nonlinearity that follows it, as
    NVIDIA's LinearNorm/ConvNorm initialise every layer (PyTorch's default is ~2-4x smaller,
    which starts the attention energies nearly flat)."""
    nn.init.xavier_uniform_(layer.weight, gain=nn.init.calculate_gain(w_init_gain))
    return layer


class ConvNorm(nn.Sequential):
    """Conv1d ("same" padding, Xavier-initialised for `w_init_gain`) + BatchNorm1d."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, w_init_gain: str):
        conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2)
        super().__init__(xavier(conv, w_init_gain), nn.BatchNorm1d(out_channels))


class Encoder(nn.Module):
    """3 x (conv 5 + batch norm + ReLU + dropout 0.5), then a BiLSTM of 256 per direction.
    Padded positions are zeroed after every convolution, so a padded batch encodes each
    sentence exactly as alone."""

    def __init__(self, c: Tacotron2Config):
        super().__init__()
        dims = [c.symbols_embedding_dim] + [c.encoder_embedding_dim] * c.encoder_n_convolutions
        self.convolutions = nn.ModuleList(
            ConvNorm(dims[i], dims[i + 1], c.encoder_kernel_size, "relu")
            for i in range(c.encoder_n_convolutions)
        )
        self.lstm = nn.LSTM(
            c.encoder_embedding_dim, c.encoder_embedding_dim // 2, batch_first=True,
            bidirectional=True,
        )  # fmt: skip

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x (B, C, N) embedded characters, lengths (B,) -> (B, N, encoder_embedding_dim)."""
        mask = lengths_to_mask(lengths, x.shape[-1]).unsqueeze(1)
        for conv in self.convolutions:
            x = F.dropout(F.relu(conv(x * mask)), 0.5, self.training)
        x = (x * mask).transpose(1, 2)
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        outputs, _ = self.lstm(packed)
        outputs, _ = nn.utils.rnn.pad_packed_sequence(
            outputs, batch_first=True, total_length=x.shape[1]
        )
        return outputs


class Prenet(nn.Module):
    """Two ReLU layers of `prenet_dim` with dropout 0.5 always on (the paper's only source of
    variation at inference). The masks come from `generator` when given, so a request can be
    made reproducible; otherwise from torch's global RNG."""

    def __init__(self, in_dim: int, sizes: tuple[int, int], dropout: float):
        super().__init__()
        dims = [in_dim, *sizes]
        self.layers = nn.ModuleList(
            xavier(nn.Linear(dims[i], dims[i + 1], bias=False)) for i in range(len(sizes))
        )
        self.dropout = dropout

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        for linear in self.layers:
            x = F.relu(linear(x))
            if self.dropout > 0:
                keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
                x = x * keep / (1 - self.dropout)
        return x


class LocationLayer(nn.Module):
    """Features of the previous and cumulative attention weights: conv (32 filters, kernel 31)
    then a linear map to the attention dimension."""

    def __init__(self, n_filters: int, kernel_size: int, attention_dim: int):
        super().__init__()
        self.location_conv = xavier(
            nn.Conv1d(2, n_filters, kernel_size, padding=(kernel_size - 1) // 2, bias=False)
        )
        self.location_dense = xavier(nn.Linear(n_filters, attention_dim, bias=False), "tanh")

    def forward(self, attention_weights_cat: torch.Tensor) -> torch.Tensor:
        """(B, 2, N) -> (B, N, attention_dim)."""
        return self.location_dense(self.location_conv(attention_weights_cat).transpose(1, 2))


class Attention(nn.Module):
    """Location-sensitive attention: e = v^T tanh(W s + V h + U f), softmax of beta * e over
    the real encoder positions (padding gets exactly zero weight); beta is
    `attention_sharpening` (Chorowski et al. 2015, section 2.3)."""

    def __init__(self, c: Tacotron2Config, memory_dim: int):
        super().__init__()
        self.query_layer = xavier(
            nn.Linear(c.attention_rnn_dim, c.attention_dim, bias=False), "tanh"
        )
        self.memory_layer = xavier(nn.Linear(memory_dim, c.attention_dim, bias=False), "tanh")
        self.v = xavier(nn.Linear(c.attention_dim, 1, bias=False))
        self.sharpening = c.attention_sharpening
        self.location_layer = LocationLayer(
            c.attention_location_n_filters, c.attention_location_kernel_size, c.attention_dim
        )

    def forward(
        self,
        query: torch.Tensor,
        memory: torch.Tensor,
        processed_memory: torch.Tensor,
        attention_weights_cat: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, attention_rnn_dim), memory (B, N, D), processed_memory (B, N, A),
        weights_cat (B, 2, N), mask (B, N) True on real positions -> context (B, D),
        weights (B, N)."""
        energies = self.v(
            torch.tanh(
                self.query_layer(query).unsqueeze(1)
                + self.location_layer(attention_weights_cat)
                + processed_memory
            )
        ).squeeze(-1)
        energies = (self.sharpening * energies).masked_fill(~mask, -math.inf)
        weights = F.softmax(energies, dim=1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights


class Decoder(nn.Module):
    """Prenet -> attention LSTM (1024) -> attention -> decoder LSTM (1024) -> r frames + gate.
    One decoder step makes `n_frames_per_step` frames; its gate says whether to stop after
    them."""

    def __init__(self, c: Tacotron2Config, memory_dim: int):
        super().__init__()
        self.c, self.memory_dim = c, memory_dim
        self.prenet = Prenet(c.n_mels, (c.prenet_dim, c.prenet_dim), c.prenet_dropout)
        self.attention_rnn = nn.LSTMCell(c.prenet_dim + memory_dim, c.attention_rnn_dim)
        self.attention_layer = Attention(c, memory_dim)
        self.decoder_rnn = nn.LSTMCell(c.attention_rnn_dim + memory_dim, c.decoder_rnn_dim)
        self.linear_projection = xavier(
            nn.Linear(c.decoder_rnn_dim + memory_dim, c.n_mels * c.n_frames_per_step)
        )
        self.gate_layer = xavier(nn.Linear(c.decoder_rnn_dim + memory_dim, 1), "sigmoid")

    def initial_state(self, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        """Zero LSTM states and context; the previous and cumulative attention weights start
        on the first character (one-hot), so the location features say "at the start" from
        the first step (NVIDIA starts them at zero, which lets the first steps look anywhere)."""
        b, n, _ = memory.shape
        zeros = memory.new_zeros
        at_start = zeros(b, n)
        at_start[:, 0] = 1.0
        return {
            "attention_hidden": zeros(b, self.c.attention_rnn_dim),
            "attention_cell": zeros(b, self.c.attention_rnn_dim),
            "decoder_hidden": zeros(b, self.c.decoder_rnn_dim),
            "decoder_cell": zeros(b, self.c.decoder_rnn_dim),
            "attention_weights": at_start,
            "attention_weights_cum": at_start.clone(),
            "attention_context": zeros(b, self.memory_dim),
        }

    def attention_window(self, state: dict[str, torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
        """`mask` (B, N) narrowed to the attention constraint's window around the most
        attended character of the last step (free running)."""
        last = state["attention_weights"].argmax(dim=1, keepdim=True)
        position = torch.arange(mask.shape[1], device=mask.device)[None, :]
        return (
            mask
            & (position >= last - self.c.attention_backward_window)
            & (position <= last + self.c.attention_forward_window)
        )

    def standardise(self, mel: torch.Tensor) -> torch.Tensor:
        return (mel - self.c.mel_mean) / self.c.mel_std

    def destandardise(self, frames: torch.Tensor) -> torch.Tensor:
        return frames * self.c.mel_std + self.c.mel_mean

    def decode(
        self,
        prenet_out: torch.Tensor,
        state: dict[str, torch.Tensor],
        memory: torch.Tensor,
        processed_memory: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One decoder step from the prenet's output (B, prenet_dim); updates `state`.
        Returns standardised frames (B, n_mels * r), gate logit (B,), attention weights
        (B, N)."""
        s = state
        cell_input = torch.cat((prenet_out, s["attention_context"]), -1)
        s["attention_hidden"], s["attention_cell"] = self.attention_rnn(
            cell_input, (s["attention_hidden"], s["attention_cell"])
        )
        s["attention_hidden"] = F.dropout(
            s["attention_hidden"], self.c.p_attention_dropout, self.training
        )
        weights_cat = torch.stack((s["attention_weights"], s["attention_weights_cum"]), dim=1)
        s["attention_context"], s["attention_weights"] = self.attention_layer(
            s["attention_hidden"], memory, processed_memory, weights_cat, mask
        )
        s["attention_weights_cum"] = s["attention_weights_cum"] + s["attention_weights"]
        decoder_input = torch.cat((s["attention_hidden"], s["attention_context"]), -1)
        s["decoder_hidden"], s["decoder_cell"] = self.decoder_rnn(
            decoder_input, (s["decoder_hidden"], s["decoder_cell"])
        )
        s["decoder_hidden"] = F.dropout(
            s["decoder_hidden"], self.c.p_decoder_dropout, self.training
        )
        hidden_context = torch.cat((s["decoder_hidden"], s["attention_context"]), -1)
        frames = self.linear_projection(hidden_context)
        gate = self.gate_layer(hidden_context).squeeze(-1)
        return frames, gate, s["attention_weights"]

    def forward(
        self, memory: torch.Tensor, mels: torch.Tensor, memory_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher forcing: mels (B, n_mels, T), T a multiple of r; step k sees the last frame
        of step k-1 (a zero frame first). Returns mel (B, n_mels, T), gate logits (B, T / r),
        alignments (B, T / r, N)."""
        r, (b, n_mels, t) = self.c.n_frames_per_step, mels.shape
        previous = self.standardise(mels[:, :, r - 1 :: r].transpose(1, 2))  # (B, T/r, n_mels)
        inputs = torch.cat((mels.new_zeros(b, 1, n_mels), previous[:, :-1]), dim=1)
        prenet_out = self.prenet(inputs)
        mask = lengths_to_mask(memory_lengths, memory.shape[1])
        processed_memory = self.attention_layer.memory_layer(memory)
        state = self.initial_state(memory)
        frames, gates, alignments = [], [], []
        for k in range(t // r):
            out, gate, weights = self.decode(
                prenet_out[:, k], state, memory, processed_memory, mask
            )
            frames.append(out)
            gates.append(gate)
            alignments.append(weights)
        mel = self.destandardise(torch.stack(frames, 1).reshape(b, t, n_mels).transpose(1, 2))
        return mel, torch.stack(gates, 1), torch.stack(alignments, 1)

    @torch.no_grad()
    def infer(
        self,
        memory: torch.Tensor,
        memory_lengths: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Free running until every sentence's gate passes `gate_threshold` or
        `max_decoder_steps`, attention held to its window when `use_attention_constraint`.
        Returns mel (B, n_mels, steps * r), gate logits (B, steps),
        alignments (B, steps, N), and per sentence its length in decoder steps (B,) (the
        step the gate fired at, + 1; max_decoder_steps when it never did)."""
        c, b = self.c, memory.shape[0]
        mask = lengths_to_mask(memory_lengths, memory.shape[1])
        processed_memory = self.attention_layer.memory_layer(memory)
        state = self.initial_state(memory)
        frame = memory.new_zeros(b, c.n_mels)
        steps = torch.full((b,), c.max_decoder_steps, dtype=torch.long, device=memory.device)
        frames, gates, alignments = [], [], []
        for k in range(c.max_decoder_steps):
            allowed = self.attention_window(state, mask) if c.use_attention_constraint else mask
            out, gate, weights = self.decode(
                self.prenet(frame, generator), state, memory, processed_memory, allowed
            )
            frames.append(out)
            gates.append(gate)
            alignments.append(weights)
            stopped = (torch.sigmoid(gate) > c.gate_threshold) & (steps == c.max_decoder_steps)
            steps[stopped] = k + 1
            if bool((steps < c.max_decoder_steps).all()):
                break
            frame = out[:, -c.n_mels :]
        mel = self.destandardise(torch.stack(frames, 1).reshape(b, -1, c.n_mels).transpose(1, 2))
        return mel, torch.stack(gates, 1), torch.stack(alignments, 1), steps


class Postnet(nn.Module):
    """5 convolutions of 512 (kernel 5), batch norm, tanh on all but the last; its output is
    added to the decoder's frames. Frames past a sentence's end are zeroed before every
    convolution, so padding never leaks into the last real frames."""

    def __init__(self, c: Tacotron2Config):
        super().__init__()
        dims = [c.n_mels] + [c.postnet_embedding_dim] * (c.postnet_n_convolutions - 1) + [c.n_mels]
        last = c.postnet_n_convolutions - 1
        self.convolutions = nn.ModuleList(
            ConvNorm(dims[i], dims[i + 1], c.postnet_kernel_size, "linear" if i == last else "tanh")
            for i in range(c.postnet_n_convolutions)
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, n_mels, T), mask (B, 1, T) -> residual (B, n_mels, T)."""
        last = len(self.convolutions) - 1
        for i, conv in enumerate(self.convolutions):
            x = conv(x * mask)
            x = F.dropout(x if i == last else torch.tanh(x), 0.5, self.training)
        return x * mask


def guided_attention_loss(
    alignments: torch.Tensor, text_lengths: torch.Tensor, step_lengths: torch.Tensor, sigma: float
) -> torch.Tensor:
    """Tachibana et al. 2017: the attention weights A[t, n] times the guide
    W[t, n] = 1 - exp(-(n/N - t/T)^2 / (2 sigma^2)), summed over each step's characters and
    averaged over the real decoder steps t < T: the share of attention off the diagonal, in
    [0, 1] whatever the sentence length (the paper averages over N * T, which makes the term
    ~1/N as large). alignments (B, T_max, N_max), lengths (B,) in characters and steps."""
    b, t_max, n_max = alignments.shape
    t = torch.arange(t_max, device=alignments.device)[None, :, None] / step_lengths[:, None, None]
    n = torch.arange(n_max, device=alignments.device)[None, None, :] / text_lengths[:, None, None]
    guide = 1.0 - torch.exp(-((n - t) ** 2) / (2 * sigma**2))
    steps = lengths_to_mask(step_lengths, t_max)
    chars = lengths_to_mask(text_lengths, n_max)[:, None, :]
    off_diagonal = (alignments * guide * chars).sum(-1)
    return (off_diagonal * steps).sum() / steps.sum()


def forward_sum_loss(
    alignments: torch.Tensor,
    text_lengths: torch.Tensor,
    step_lengths: torch.Tensor,
    blank_logprob: float = -1.0,
) -> torch.Tensor:
    """Badlani et al. 2021's forward-sum loss: each decoder step's attention weights A[t, n]
    read as the probability of symbol n, a blank (log-probability `blank_logprob` before
    renormalising) added, and CTC (torch's `ctc_loss`, mean over sentences of the loss per
    symbol) with the target "every symbol once, in order". ~0 for a sharp walk through the
    whole text at any pace; large for blurred attention or one that skips or goes back. A
    sentence with fewer decoder steps than symbols cannot be walked and counts 0.
    alignments (B, T_max, N_max), lengths (B,) in symbols and decoder steps."""
    b, t_max, n_max = alignments.shape
    log_weights = torch.log(alignments.float().clamp(min=1e-8))
    blank = log_weights.new_full((b, t_max, 1), blank_logprob)
    real = torch.cat((text_lengths.new_ones(b, 1, dtype=torch.bool),
                      lengths_to_mask(text_lengths, n_max)), dim=1)  # fmt: skip
    log_probs = F.log_softmax(
        torch.cat((blank, log_weights), dim=-1).masked_fill(~real[:, None, :], -1e4), dim=-1
    )
    targets = torch.arange(1, n_max + 1, device=alignments.device).expand(b, -1)
    return F.ctc_loss(
        log_probs.transpose(0, 1), targets, step_lengths, text_lengths,
        blank=0, reduction="mean", zero_infinity=True,
    )  # fmt: skip


def tacotron2_loss(
    out: Tacotron2Output,
    mels: torch.Tensor,
    mel_lengths: torch.Tensor,
    text_lengths: torch.Tensor,
    config: Tacotron2Config,
) -> dict[str, torch.Tensor]:
    """MSE before and after the postnet over real frames, BCE on the gate (target 1 from the
    decoder step holding a sentence's last frame on, weighted `bce_pos_weight`; over the real
    steps only with `use_masking`), the guided attention loss and, weighted
    `forward_sum_weight`, the forward-sum alignment loss."""
    r = config.n_frames_per_step
    frame_mask = lengths_to_mask(mel_lengths, mels.shape[-1]).unsqueeze(1)
    count = frame_mask.sum() * mels.shape[1]
    mel_loss = ((out.mel - mels) ** 2 * frame_mask).sum() / count
    postnet_loss = ((out.mel_postnet - mels) ** 2 * frame_mask).sum() / count
    step_lengths = torch.div(mel_lengths + r - 1, r, rounding_mode="floor")
    steps = torch.arange(out.gate.shape[1], device=mels.device)[None, :]
    gate_target = (steps >= step_lengths[:, None] - 1).float()
    counted = (
        lengths_to_mask(step_lengths, out.gate.shape[1]).float()
        if config.use_masking
        else torch.ones_like(gate_target)
    )
    gate_loss = (
        F.binary_cross_entropy_with_logits(
            out.gate,
            gate_target,
            counted,
            pos_weight=out.gate.new_tensor(config.bce_pos_weight),
            reduction="sum",
        )
        / counted.sum()
    )
    attention_loss = guided_attention_loss(
        out.alignments, text_lengths, step_lengths, config.guided_attention_sigma
    )
    forward_sum = forward_sum_loss(
        out.alignments, text_lengths, step_lengths, config.forward_sum_blank_logprob
    )
    total = (
        mel_loss + postnet_loss + gate_loss
        + config.guided_attention_weight * attention_loss
        + config.forward_sum_weight * forward_sum
    )  # fmt: skip
    return {
        "loss": total,
        "loss_mel": mel_loss,
        "loss_postnet": postnet_loss,
        "loss_gate": gate_loss,
        "loss_guided_attention": attention_loss,
        "loss_forward_sum": forward_sum,
    }


@dataclass
class Tacotron2Output:
    mel: torch.Tensor  # (B, n_mels, T) decoder frames
    mel_postnet: torch.Tensor  # (B, n_mels, T) after the postnet's residual
    gate: torch.Tensor  # (B, T / r) stop-token logits, one per decoder step
    alignments: torch.Tensor  # (B, T / r, N) attention weights per decoder step
    steps: torch.Tensor | None = None  # (B,) decoder steps until the gate fired (inference)


class Tacotron2(nn.Module):
    def __init__(self, config: Tacotron2Config = Tacotron2Config()):
        super().__init__()
        c = self.config = config
        self.embedding = nn.Embedding(c.n_symbols, c.symbols_embedding_dim, padding_idx=0)
        std = math.sqrt(2.0 / (c.n_symbols + c.symbols_embedding_dim))
        nn.init.uniform_(self.embedding.weight, -math.sqrt(3.0) * std, math.sqrt(3.0) * std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.encoder = Encoder(c)
        memory_dim = c.encoder_embedding_dim
        self.speaker_embedding = None
        if c.n_speakers > 1:
            self.speaker_embedding = nn.Embedding(c.n_speakers, c.speaker_embedding_dim)
            memory_dim += c.speaker_embedding_dim
        self.decoder = Decoder(c, memory_dim)
        self.postnet = Postnet(c)

    def encode(
        self, text: torch.Tensor, text_lengths: torch.Tensor, speaker: torch.Tensor | None = None
    ) -> torch.Tensor:
        """text (B, N) ids, lengths (B,), speaker (B,) ids -> memory (B, N, D)."""
        memory = self.encoder(self.embedding(text).transpose(1, 2), text_lengths)
        if self.speaker_embedding is not None:
            if speaker is None:
                speaker = torch.zeros(text.shape[0], dtype=torch.long, device=text.device)
            voice = self.speaker_embedding(speaker).unsqueeze(1).expand(-1, text.shape[1], -1)
            memory = torch.cat((memory, voice), dim=-1)
        return memory

    def forward(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        mels: torch.Tensor,
        mel_lengths: torch.Tensor,
        speaker: torch.Tensor | None = None,
    ) -> Tacotron2Output:
        """Teacher-forced pass. mels (B, n_mels, T) with T a multiple of r, mel_lengths (B,)."""
        memory = self.encode(text, text_lengths, speaker)
        mel, gate, alignments = self.decoder(memory, mels, text_lengths)
        mask = lengths_to_mask(mel_lengths, mel.shape[-1]).unsqueeze(1)
        mel = mel * mask
        return Tacotron2Output(mel, mel + self.postnet(mel, mask), gate, alignments)

    @torch.no_grad()
    def infer(
        self,
        text: torch.Tensor,
        text_lengths: torch.Tensor | None = None,
        speaker: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tacotron2Output:
        """Free-running synthesis; prenet dropout stays on (drawn from `generator`). Each
        sentence's frames past its gate are zeroed; its frame count is steps * r."""
        if text_lengths is None:
            text_lengths = torch.full((text.shape[0],), text.shape[1], device=text.device)
        memory = self.encode(text, text_lengths, speaker)
        mel, gate, alignments, steps = self.decoder.infer(memory, text_lengths, generator)
        mask = lengths_to_mask(steps * self.config.n_frames_per_step, mel.shape[-1]).unsqueeze(1)
        mel = mel * mask
        return Tacotron2Output(mel, mel + self.postnet(mel, mask), gate, alignments, steps)
