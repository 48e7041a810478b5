"""VQ-VAE's training: waveform -> codes -> waveform, conditioned on the speaker (van den Oord 2017).

One network, "vqvae". The loss is waveform L1 + the multi-resolution STFT loss (weighted by
`stft_loss_weight`) + the commitment loss; the codebook itself learns by moving averages
inside the forward pass. Logged besides the losses: codebook perplexity and usage (the
fraction of the codebook chosen at least once in the batch) and the batch's reconstruction
SNR. Speakers are VCTK's training speakers (one speaker for LJ Speech).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wavefoundry.evaluation.metrics import snr_db
from wavefoundry.families.base import SpeakerCodecFamily, Step, unwrap
from wavefoundry.models.vqvae import VQVAE, VQVAEConfig, vqvae_loss


class VQVAEFamily(SpeakerCodecFamily):
    name = "vqvae"
    config_class = VQVAEConfig
    datasets = ("ljspeech", "vctk", "nsynth")
    inference_net = "vqvae"
    task = "codec"

    def build(self) -> dict[str, nn.Module]:
        return {"vqvae": VQVAE(self.config)}

    def _losses(
        self, net: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[dict[str, torch.Tensor], float]:
        """The loss terms and codebook statistics, and the batch's reconstruction SNR in dB."""
        output = net(batch["audio"], batch["speaker"])
        loss = vqvae_loss(output, batch["audio"], self.config.stft_loss_weight)
        terms = {
            "loss": loss.total,
            "loss_l1": loss.waveform_l1,
            "loss_stft": loss.stft,
            "loss_commitment": loss.commitment,
            "perplexity": output.perplexity,
            "codebook_usage": output.usage,
        }
        return terms, snr_db(batch["audio"], output.reconstruction)

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        with step.autocast():
            terms, snr = self._losses(nets["vqvae"], batch)
        step.optimize("vqvae", terms["loss"])
        return {**{name: value.item() for name, value in terms.items()}, "snr_db": snr}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        terms, snr = self._losses(nets["vqvae"], batch)
        return {**{name: value.item() for name, value in terms.items()}, "snr_db": snr}

    @torch.no_grad()
    def clip_metrics(
        self, net: nn.Module, audio: torch.Tensor, conditions: dict[str, Any]
    ) -> dict[str, float]:
        """How much of the codebook the held-out clip uses: perplexity and usage."""
        model = unwrap(net)
        device = next(model.parameters()).device
        speaker_id = torch.tensor([self.data.speaker_id(conditions.get("speaker"))], device=device)
        output = model(audio.to(device, torch.float32).reshape(1, -1), speaker_id)
        return {"perplexity": output.perplexity.item(), "codebook_usage": output.usage.item()}
