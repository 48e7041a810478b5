"""Vocos's training: mel in, waveform out through an iSTFT head (Siuzdak 2023).

One network, "generator". The paper trains it adversarially (multi-period and multi-resolution
discriminators) with a mel L1 weighted 45; this family trains the reconstruction losses, which
converge within CPU minutes: the mel L1 and, when `mrstft_weight` > 0, the multi-resolution
STFT loss (spectral convergence + log magnitude, models/losses.py). The logged "loss" is the
mel L1 (unweighted); the optimised total is "loss_generator".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.audio import log_mel, whole_frame_log_mel
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.base import Family, Step, mel_config, unwrap
from wavefoundry.models.losses import multi_resolution_stft_loss
from wavefoundry.models.vocos import Vocos, VocosConfig


class VocosFamily(Family):
    name = "vocos"
    config_class = VocosConfig
    datasets = ("ljspeech", "vctk")
    inference_net = "generator"
    task = "vocoder"

    def __init__(self, config: VocosConfig, data: DataSpec):
        super().__init__(config, data)
        self.mel = mel_config(data.sample_rate, self.config)

    def build(self) -> dict[str, nn.Module]:
        return {"generator": Vocos(self.config)}

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        audio = batch["audio"].to(device, torch.float32)
        frames = audio.shape[-1] // self.config.hop_length
        audio = audio[:, : frames * self.config.hop_length]
        return {"audio": audio, "mel": log_mel(audio, self.mel)}

    def _losses(self, generator: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        fake = generator(batch["mel"]).float()
        loss_mel = F.l1_loss(log_mel(fake, self.mel), batch["mel"])
        total = self.config.mel_weight * loss_mel
        terms = {"loss_mel": loss_mel}
        if self.config.mrstft_weight > 0:
            convergence, magnitude = multi_resolution_stft_loss(fake, batch["audio"])
            total = total + self.config.mrstft_weight * (convergence + magnitude)
            terms["loss_mrstft"] = convergence + magnitude
        return {"total": total, **terms}

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        with step.autocast():
            losses = self._losses(nets["generator"], batch)
        step.optimize("generator", losses["total"])
        logged = {name: value.item() for name, value in losses.items() if name != "total"}
        return {"loss": logged["loss_mel"], "loss_generator": losses["total"].item(), **logged}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        losses = self._losses(nets["generator"], batch)
        return {"loss": losses["loss_mel"].item(), "loss_mel": losses["loss_mel"].item()}

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        generated = nets["generator"](batch["mel"][:2]).float()
        return batch["audio"][:2], generated.clamp(-1.0, 1.0)

    @torch.no_grad()
    def vocode_mel(self, net: nn.Module, mel: torch.Tensor) -> torch.Tensor:
        """(n_mels, frames) log-mel frames (an acoustic model's) to (frames * hop,) audio in
        [-1, 1]: how a voice speaks through a Vocos champion (evaluation/voice.py)."""
        generator = unwrap(net)
        device = next(generator.parameters()).device
        return generator.infer(mel.to(device, torch.float32))

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        if audio is None:
            raise ValueError("Vocos is a vocoder: it resynthesizes `audio`, which is required")
        device = next(unwrap(net).parameters()).device
        mel = whole_frame_log_mel(audio.to(device, torch.float32), self.mel)
        return self.vocode_mel(net, mel)[: len(audio)]
