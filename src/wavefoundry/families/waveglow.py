"""WaveGlow's training: the exact likelihood of the audio given its mel (Prenger et al. 2018).

One network, "waveglow". Each step maps the segment to z through the flow and minimises the
paper's negative log-likelihood per sample (`loss`, nats, with sigma = `sigma`); its parts are
logged too: `loss_z` (sum z^2 / 2 sigma^2 per sample) and `log_det` (log |det dz/dx| per
sample), so a loss that falls only through a growing log-determinant shows. Audio is made by
running the flow backwards from Gaussian noise of sigma = `sigma_infer` (0.6); the noise is
seeded (conditions["seed"], 0 by default), so the same mel gives the same audio.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wavefoundry.audio import log_mel
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.base import (
    Family,
    Step,
    audio_and_mel,
    mel_config,
    unwrap,
    whole_frames,
)
from wavefoundry.models.waveglow import WaveGlow, WaveGlowConfig, waveglow_loss


class WaveGlowFamily(Family):
    name = "waveglow"
    config_class = WaveGlowConfig
    datasets = ("ljspeech", "vctk")
    inference_net = "waveglow"
    task = "vocoder"

    def __init__(self, config: WaveGlowConfig, data: DataSpec):
        super().__init__(config, data)
        self.mel = mel_config(data.sample_rate, self.config)

    def build(self) -> dict[str, nn.Module]:
        return {"waveglow": WaveGlow(self.config)}

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        return audio_and_mel(batch, self.mel, device)

    def _losses(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        output = net(batch["audio"], batch["mel"])
        z = output.z.float()
        sigma = self.config.sigma
        return {
            "loss": waveglow_loss(output, sigma),
            "loss_z": (z * z).sum() / (2 * sigma * sigma) / z.numel(),
            "log_det": output.log_det.sum() / z.numel(),
        }

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        with step.autocast():
            terms = self._losses(nets["waveglow"], batch)
        step.optimize("waveglow", terms["loss"])
        return {name: value.item() for name, value in terms.items()}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        terms = self._losses(nets["waveglow"], batch)
        return {name: value.item() for name, value in terms.items()}

    def _infer(self, net: nn.Module, mel: torch.Tensor, seed: int) -> torch.Tensor:
        generator = torch.Generator(mel.device).manual_seed(seed)
        return unwrap(net).infer(mel, generator=generator).float().clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        return batch["audio"][:2], self._infer(nets["waveglow"], batch["mel"][:2], seed=0)

    def for_inference(self, net: nn.Module) -> nn.Module:
        """Weight norm folded into plain weights: same outputs, no per-call reparametrisation."""
        unwrap(net).remove_weight_norm()
        return net

    @torch.no_grad()
    def vocode_mel(self, net: nn.Module, mel: torch.Tensor, seed: int = 0) -> torch.Tensor:
        """(n_mels, frames) log-mel frames (an acoustic model's) to (frames * hop,) audio in
        [-1, 1], the flow's noise drawn from `seed`: how a voice speaks through a WaveGlow
        champion (evaluation/voice.py, serving/voice.py)."""
        device = next(unwrap(net).parameters()).device
        return self._infer(net, mel.to(device, torch.float32).unsqueeze(0), seed).reshape(-1)

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        if audio is None:
            raise ValueError("WaveGlow is a vocoder: it resynthesizes `audio`, which is required")
        device = next(unwrap(net).parameters()).device
        padded = whole_frames(audio.to(device, torch.float32), self.mel)
        mel = log_mel(padded, self.mel)
        return self.vocode_mel(net, mel, conditions.get("seed") or 0)[: len(audio)]
