"""HiFi-GAN's training: mel in, waveform out, adversarial against MPD + MSD (Kong et al. 2020).

Two networks: "generator" and "discriminator" (MPD and MSD together, one AdamW as in the
paper). Each step updates the discriminator on detached generated audio, then the generator
on adversarial + feature matching + mel L1. The logged "loss" is the mel L1 (unweighted),
the term that should fall from the first steps; the generator's total is "loss_generator".
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.audio import log_mel, whole_frame_log_mel
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.base import (
    Family,
    Step,
    audio_and_mel,
    mel_config,
    unwrap,
)
from wavefoundry.models.hifigan import (
    Discriminator,
    Generator,
    HiFiGANConfig,
    discriminator_loss,
    feature_loss,
    generator_loss,
)


class HiFiGANFamily(Family):
    name = "hifigan"
    config_class = HiFiGANConfig
    datasets = ("ljspeech", "vctk")
    inference_net = "generator"
    task = "vocoder"

    def __init__(self, config: HiFiGANConfig, data: DataSpec):
        super().__init__(config, data)
        self.mel = mel_config(data.sample_rate, self.config)

    def build(self) -> dict[str, nn.Module]:
        return {"generator": Generator(self.config), "discriminator": Discriminator(self.config)}

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        return audio_and_mel(batch, self.mel, device)

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        generator, discriminator = nets["generator"], nets["discriminator"]
        audio, mel = batch["audio"].unsqueeze(1), batch["mel"]

        with step.autocast():
            fake = generator(mel)
            real_scores, fake_scores, _, _ = discriminator(audio, fake.detach())
            loss_discriminator = discriminator_loss(real_scores, fake_scores)
        step.optimize("discriminator", loss_discriminator)

        loss_mel = F.l1_loss(log_mel(fake.float().squeeze(1), self.mel), mel)
        with step.autocast():
            _, fake_scores, real_fmaps, fake_fmaps = discriminator(audio, fake)
            loss_adversarial = generator_loss(fake_scores)
            loss_feature_matching = feature_loss(real_fmaps, fake_fmaps)
        loss_generator = (
            loss_adversarial
            + self.config.feature_matching_weight * loss_feature_matching
            + self.config.mel_weight * loss_mel
        )
        step.optimize("generator", loss_generator)

        return {
            "loss": loss_mel.item(),
            "loss_mel": loss_mel.item(),
            "loss_generator": loss_generator.item(),
            "loss_adversarial": loss_adversarial.item(),
            "loss_feature_matching": loss_feature_matching.item(),
            "loss_discriminator": loss_discriminator.item(),
        }

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        fake = nets["generator"](batch["mel"]).float().squeeze(1)
        loss_mel = F.l1_loss(log_mel(fake, self.mel), batch["mel"])
        return {"loss": loss_mel.item(), "loss_mel": loss_mel.item()}

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        generated = nets["generator"](batch["mel"][:2]).float().squeeze(1)
        return batch["audio"][:2], generated.clamp(-1.0, 1.0)

    def for_inference(self, net: nn.Module) -> nn.Module:
        """Weight norm folded into plain weights: same outputs, no per-call reparametrisation."""
        unwrap(net).remove_weight_norm()
        return net

    @torch.no_grad()
    def vocode_mel(self, net: nn.Module, mel: torch.Tensor) -> torch.Tensor:
        """(n_mels, frames) log-mel frames (an acoustic model's) to (frames * hop,) audio."""
        generator = unwrap(net)
        device = next(generator.parameters()).device
        audio = generator(mel.to(device, torch.float32).unsqueeze(0))
        return audio.reshape(-1).clamp(-1.0, 1.0)

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        if audio is None:
            raise ValueError("HiFi-GAN is a vocoder: it resynthesizes `audio`, which is required")
        device = next(unwrap(net).parameters()).device
        mel = whole_frame_log_mel(audio.to(device, torch.float32), self.mel)
        return self.vocode_mel(net, mel)[: len(audio)]
