"""Pieces more than one model file uses."""

from __future__ import annotations

import math

import torch


def sample_from_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
) -> torch.Tensor:
    """(B, classes) logits -> (B,) classes drawn from softmax(logits / temperature), among the
    `top_k` most likely when given; temperature 0 is the argmax (greedy decoding)."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, -math.inf)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
