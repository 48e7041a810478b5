"""WaveGAN on NSynth: a pitch-conditioned WGAN-GP over the first 16,384 samples of each note.

One trainer step is one batch: a critic update every step and a generator update every
`critic_updates` steps, which is the paper's five critic updates per generator update.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import torch
from torch import nn

from wavefoundry.data.stored import DataSpec
from wavefoundry.errors import UserError
from wavefoundry.families.base import Family, Step, unwrap
from wavefoundry.models.wavegan import (
    Discriminator,
    Generator,
    WaveGANConfig,
    discriminator_loss,
    generate,
    generator_loss,
    gradient_penalty,
    sample_latents,
)

MIDI_PITCHES = 128


class WaveGANFamily(Family):
    name: ClassVar[str] = "wavegan"
    config_class: ClassVar[type] = WaveGANConfig
    datasets: ClassVar[tuple[str, ...]] = ("nsynth",)
    inference_net: ClassVar[str] = "generator"
    task: ClassVar[str] = "generator"
    random_offset: ClassVar[bool] = False  # a slice starts at the note's onset

    def __init__(self, config: WaveGANConfig, data: DataSpec):
        super().__init__(config, data)
        self.last_generator_loss: float | None = None

    def adapt(self, config: WaveGANConfig, data: DataSpec) -> WaveGANConfig:
        if data.dataset == "nsynth":
            return dataclasses.replace(config, pitches=MIDI_PITCHES)
        return config

    def build(self) -> dict[str, nn.Module]:
        return {"generator": Generator(self.config), "discriminator": Discriminator(self.config)}

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        prepared = {"audio": batch["audio"].to(device)}
        if self.config.pitches:
            prepared["pitch"] = torch.as_tensor(batch["pitch"], dtype=torch.long).to(device)
        return prepared

    def _critic_terms(
        self, nets: dict[str, nn.Module], real: torch.Tensor, fake: torch.Tensor, pitch: Any
    ) -> dict[str, torch.Tensor]:
        both = None if pitch is None else torch.cat([pitch, pitch])
        real_scores, fake_scores = nets["discriminator"](torch.cat([real, fake]), both).chunk(2)
        penalty = gradient_penalty(nets["discriminator"], real, fake, pitch)
        critic = discriminator_loss(real_scores, fake_scores)
        return {
            "loss_discriminator": critic + self.config.gradient_penalty_weight * penalty,
            "wasserstein_distance": -critic,
            "gradient_penalty": penalty,
        }

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        real, pitch = batch["audio"], batch.get("pitch")
        device = real.device
        with step.autocast():
            with torch.no_grad():
                fake = nets["generator"](sample_latents(len(real), self.config).to(device), pitch)
            terms = self._critic_terms(nets, real, fake, pitch)
        step.optimize("discriminator", terms["loss_discriminator"])

        if step.step % self.config.critic_updates == 0:
            with step.autocast():
                latents = sample_latents(len(real), self.config).to(device)
                fake_scores = nets["discriminator"](nets["generator"](latents, pitch), pitch)
                loss_generator = generator_loss(fake_scores)
            step.optimize("generator", loss_generator)
            self.last_generator_loss = float(loss_generator.detach())

        logged = {name: float(value.detach()) for name, value in terms.items()}
        # "loss" is the critic's, gradient penalty included: it falls as the critic learns to
        # tell notes from the generator's noise. The generator's loss follows the critic's
        # scale, so it need not fall even while the samples improve.
        logged["loss"] = logged["loss_discriminator"]
        if self.last_generator_loss is not None:
            logged["loss_generator"] = self.last_generator_loss
        return logged

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        real, pitch = batch["audio"], batch.get("pitch")
        latents = sample_latents(len(real), self.config, torch.Generator().manual_seed(0))
        fake = nets["generator"](latents.to(real.device), pitch)
        with torch.enable_grad():  # the gradient penalty is a gradient
            terms = self._critic_terms(nets, real, fake, pitch)
        logged = {name: float(value.detach()) for name, value in terms.items()}
        logged["loss"] = logged["loss_discriminator"]
        logged["loss_generator"] = float(generator_loss(nets["discriminator"](fake, pitch)))
        return logged

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        real = batch["audio"]
        fake = generate(unwrap(nets["generator"]), batch.get("pitch"), seed=0, batch=len(real))
        return real, fake

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        """A note of slice_length samples at conditions["pitch"] (MIDI, default 60) from the
        latent drawn with conditions["seed"] (default 0); `audio` is ignored."""
        pitch = None
        if self.config.pitches:
            midi = int(conditions.get("pitch", 60))
            if not 0 <= midi < self.config.pitches:
                raise UserError(
                    f"pitch must be a MIDI note 0-{self.config.pitches - 1}, got {midi}"
                )
            pitch = torch.tensor([midi], dtype=torch.long)
        seed = int(conditions.get("seed", 0))
        return generate(net, pitch, seed=seed).squeeze(0).clamp(-1, 1)
