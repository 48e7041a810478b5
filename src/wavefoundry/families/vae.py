"""The waveform VAE's training: waveform -> Gaussian latent -> waveform, conditioned on the
speaker (Kingma & Welling 2014; RAVE's shape, Caillon & Esling 2021).

One network, "vae". The loss is the multi-resolution STFT distance + `waveform_loss_weight` x
waveform L1 + beta_t x KL, with beta_t warmed up from 0 to `beta` over `kl_warmup_steps` (the
trainer's global step, so a resumed run continues the warm-up where it stopped). Logged
besides: each term, beta_t, and the batch's reconstruction SNR. Speakers are VCTK's training
speakers (one for LJ Speech); passing another speaker's index to the decoder converts the
voice. Its held-out score adds the latent's information rate (`latent_kbps`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from wavefoundry.evaluation.metrics import snr_db
from wavefoundry.families.base import SpeakerCodecFamily, Step, unwrap
from wavefoundry.models.vae import VAE, VAEConfig, kl_divergence, vae_loss


class VAEFamily(SpeakerCodecFamily):
    name = "vae"
    config_class = VAEConfig
    datasets = ("ljspeech", "vctk")
    inference_net = "vae"
    task = "codec"

    def build(self) -> dict[str, nn.Module]:
        return {"vae": VAE(self.config)}

    def _losses(
        self, net: nn.Module, batch: dict[str, torch.Tensor], beta: float
    ) -> tuple[dict[str, torch.Tensor], float]:
        """The loss terms, and the batch's reconstruction SNR in dB."""
        output = net(batch["audio"], batch["speaker"])
        loss = vae_loss(output, batch["audio"], beta, self.config.waveform_loss_weight)
        terms = {
            "loss": loss.total,
            "loss_stft": loss.stft,
            "loss_l1": loss.waveform_l1,
            "loss_kl": loss.kl,
        }
        return terms, snr_db(batch["audio"], output.reconstruction)

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        beta = self.config.beta_at(step.step)
        with step.autocast():
            terms, snr = self._losses(nets["vae"], batch, beta)
        step.optimize("vae", terms["loss"])
        values = {name: value.item() for name, value in terms.items()}
        return {**values, "snr_db": snr, "beta": beta}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        """Losses with the full beta, so validation losses compare across the warm-up."""
        terms, snr = self._losses(nets["vae"], batch, self.config.beta)
        return {**{name: value.item() for name, value in terms.items()}, "snr_db": snr}

    @torch.no_grad()
    def clip_metrics(
        self, net: nn.Module, audio: torch.Tensor, conditions: dict[str, Any]
    ) -> dict[str, float]:
        """The latent's information rate on the held-out clip: KL(q(z|x) || N(0, I)) in
        kilobits per second of audio (the bits a code of this posterior would cost)."""
        model = unwrap(net)
        device = next(model.parameters()).device
        mean, std = model.posterior(audio.to(device, torch.float32).reshape(1, -1))
        frames_per_second = self.data.sample_rate / self.config.hop_length
        bits_per_frame = kl_divergence(mean, std).item() / math.log(2)
        return {"latent_kbps": bits_per_frame * frames_per_second / 1000}
