"""A Transformer prior over a trained VQ-VAE's codes (AudioLM, Borsos et al. 2022; the VQ-VAE
paper's own prior, van den Oord et al. 2017, was a WaveNet over the codes).

A decoder-only Transformer in nanoGPT's terms (token and position embeddings `wte`/`wpe`,
pre-norm blocks of causal self-attention `attn` and an MLP `mlp`, a final `ln_f` and
`lm_head`) models the sequence of codes the VQ-VAE's encoder gives a clip, after one label
token (a VCTK speaker, or an NSynth pitch; a single start token where there is no label).
Sampled codes are turned into audio by the same VQ-VAE's decoder, which this module holds,
frozen: its weights are the registered VQ-VAE version the prior was trained on, so the prior
and the decoder it needs travel together.

`generate` samples with a key/value cache: each attention layer keeps the keys and values of
the tokens so far, so a new token costs O(context) instead of the O(context^2) of running the
whole sequence again (`use_cache=False`, kept to check and measure it). Past `block_size`
tokens the context window moves on by half a block, the label token always first.

Sizes default to AudioLM's Transformers (12 layers, 16 heads, width 1024).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.models.layers import sample_from_logits
from wavefoundry.models.vqvae import VQVAE, VQVAEConfig


@dataclass(frozen=True)
class CodePriorConfig:
    # The VQ-VAE whose codes are modelled: a registered model and a version (a number or an
    # alias). The family pins the version number, its run and its config when training starts.
    codec_model: str = ""  # "" = wavefoundry-DATASET-codec
    codec_version: str | int = "champion"
    codec_run_id: str = ""
    codec: VQVAEConfig = VQVAEConfig()  # the paper's until the registered one is pinned
    # Transformer (AudioLM's acoustic stages)
    n_layer: int = 12
    n_head: int = 16
    n_embd: int = 1024
    block_size: int = 1024  # tokens in context: the label token + block_size - 1 codes
    dropout: float = 0.0
    bias: bool = True  # in the Linear layers and LayerNorms, as GPT-2
    # Label tokens (0 = none): filled in from the dataset by the family.
    speakers: int = 0
    pitches: int = 0
    # Optimisation (nanoGPT's GPT-2 recipe)
    learning_rate: float = 6e-4
    adam_betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.1

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")
        if self.block_size < 2:
            raise ValueError(f"block_size must be at least 2, got {self.block_size}")

    @property
    def codebook_size(self) -> int:
        return self.codec.codebook_size

    @property
    def labels(self) -> int:
        """Label tokens after the codes in the vocabulary: speakers, or pitches, or one start."""
        return self.speakers or self.pitches or 1


class CausalSelfAttention(nn.Module):
    def __init__(self, config: CodePriorConfig):
        super().__init__()
        self.n_head, self.n_embd = config.n_head, config.n_embd
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """(B, T, C) -> (B, T, C) and this layer's (keys, values) including `past`'s. With
        `past`, the T new tokens come after the past ones and see all of them."""
        batch, length, channels = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        if past is not None:
            k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
        causal = past is None or length > 1
        mask = None
        if past is not None and length > 1:  # new tokens see the past and the new ones before
            total = k.shape[2]
            mask = torch.ones(length, total, dtype=torch.bool, device=x.device).tril(total - length)
            causal = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=causal and mask is None,
        )
        y = y.transpose(1, 2).contiguous().view(batch, length, channels)
        return self.resid_dropout(self.c_proj(y)), (k, v)


class MLP(nn.Module):
    def __init__(self, config: CodePriorConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, config: CodePriorConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, past=None):
        attended, cache = self.attn(self.ln_1(x), past)
        x = x + attended
        return x + self.mlp(self.ln_2(x)), cache


class CodePrior(nn.Module):
    def __init__(self, config: CodePriorConfig):
        super().__init__()
        self.config = config
        vocab = config.codebook_size + config.labels
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, config.n_embd),
                wpe=nn.Embedding(config.block_size, config.n_embd),
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
                ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.codebook_size, bias=False)
        self.apply(self._init_weights)
        for name, parameter in self.named_parameters():  # GPT-2's scaled residual projections
            if name.endswith("c_proj.weight"):
                nn.init.normal_(parameter, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))
        self.codec = VQVAE(config.codec).requires_grad_(False)  # the frozen VQ-VAE

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def train(self, mode: bool = True) -> CodePrior:
        """The VQ-VAE stays in eval mode: its codebook must not move while the prior learns."""
        super().train(mode)
        self.codec.eval()
        return self

    def label_tokens(self, labels: torch.Tensor | None, batch: int = 1) -> torch.Tensor:
        """(B,) speaker or pitch indices (None: the start token) -> (B,) token ids."""
        device = self.lm_head.weight.device
        if labels is None:
            return torch.full((batch,), self.config.codebook_size, device=device)
        if labels.min() < 0 or labels.max() >= self.config.labels:
            raise ValueError(f"labels must be 0-{self.config.labels - 1}, got {labels.tolist()}")
        return labels.to(device) + self.config.codebook_size

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """(B, T) audio -> (B, ceil(T / hop)) codes, by the VQ-VAE's encoder."""
        return self.codec.encode(audio)

    def forward(self, tokens: torch.Tensor, past: list | None = None) -> tuple[torch.Tensor, list]:
        """(B, T) token ids (label token first when `past` is None) -> (B, T, codebook_size)
        logits of each next code, and the key/value cache including these tokens."""
        start = 0 if past is None else past[0][0].shape[2]
        length = tokens.shape[1]
        if start + length > self.config.block_size:
            raise ValueError(
                f"{start + length} tokens do not fit the context of {self.config.block_size}"
            )
        positions = torch.arange(start, start + length, device=tokens.device)
        x = self.transformer.drop(self.transformer.wte(tokens) + self.transformer.wpe(positions))
        cache = []
        for i, block in enumerate(self.transformer.h):
            x, layer_cache = block(x, None if past is None else past[i])
            cache.append(layer_cache)
        return self.lm_head(self.transformer.ln_f(x)), cache

    # --- generation ---------------------------------------------------------------------------

    def window_start(self, codes: int) -> int:
        """The first of `codes` codes still in the context when the next one is predicted: 0
        while they fit beside the label token, then moving on by half a block at a time."""
        fit = self.config.block_size - 1
        if codes <= fit:
            return 0
        shift = max(1, fit // 2)
        return -(-(codes - fit) // shift) * shift

    @torch.inference_mode()
    def generate(
        self,
        n_codes: int,
        labels: torch.Tensor | None = None,
        batch: int = 1,
        temperature: float = 1.0,
        top_k: int | None = None,
        use_cache: bool = True,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """`n_codes` codes (B, n_codes) after the label tokens of `labels` (B,) (None: the start
        token, `batch` sequences). temperature 0 is greedy decoding. With `use_cache`, each
        step feeds only the newest code and reuses the keys and values of the context."""
        first = self.label_tokens(labels, batch)
        batch = first.shape[0]
        codes = torch.empty(batch, n_codes, dtype=torch.long, device=first.device)
        cache, cached_from = None, -1
        for t in range(n_codes):
            start = self.window_start(t)
            if not use_cache or start != cached_from:  # (re)read the whole context
                context = torch.cat([first[:, None], codes[:, start:t]], dim=1)
                logits, cache = self(context)
                cached_from = start
            else:  # only the newest code is new
                logits, cache = self(codes[:, t - 1 : t], cache)
            codes[:, t] = sample_from_logits(logits[:, -1], temperature, generator, top_k)
        return codes
