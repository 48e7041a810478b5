"""The optimisation step the trainer lends a family: AMP, clipping and one optimizer per net."""

from __future__ import annotations

import contextlib
import math
from contextlib import AbstractContextManager
from typing import Any

import torch

from wavefoundry.errors import UserError


def choose_device(wanted: str, setting: str) -> torch.device:
    """ "auto", "cpu" or "cuda" (the value of `setting`) to a device; CUDA when asked for or
    when auto finds it, one clear error when asked for and absent."""
    if wanted == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{setting} is cuda but no CUDA device is visible")
    if wanted == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


class Stepper:
    """Implements `family.Step`. One GradScaler serves every optimizer; the trainer calls
    `finish()` once per step, after the family's `train_step`, to update it."""

    def __init__(
        self,
        optimizers: dict[str, torch.optim.Optimizer],
        device: torch.device,
        amp: bool = False,
        grad_clip: float | None = None,
    ):
        self.optimizers = optimizers
        self.device = device
        self.amp = amp and device.type == "cuda"
        self.dtype = (
            torch.bfloat16 if self.amp and torch.cuda.is_bf16_supported() else torch.float16
        )
        self.grad_clip = grad_clip
        # bfloat16 keeps float32's range: only float16 needs its losses scaled.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.dtype == torch.float16)
        self.step = 0
        self.grad_norms: dict[str, float] = {}

    def autocast(self) -> AbstractContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.dtype)

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip or math.inf)
        self.grad_norms[name] = float(norm)
        self.scaler.step(optimizer)

    def finish(self) -> None:
        self.scaler.update()
        self.step += 1
