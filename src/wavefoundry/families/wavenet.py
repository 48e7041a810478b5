"""WaveNet's training: teacher-forced next-sample prediction over mu-law classes.

One network, "wavenet". The input is the segment's classes shifted right by one (silence
first), the target the classes themselves, so logits[..., t] scores sample t from the samples
before it and the conditioning at t. Local conditioning is the segment's log-mel (a vocoder);
global conditioning is the VCTK speaker, or the NSynth pitch and instrument family.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.audio import log_mel, mu_law_decode, mu_law_encode
from wavefoundry.data.stored import DataSpec
from wavefoundry.families.base import (
    Family,
    Step,
    mel_config,
    requested_pitch,
    seeded_generator,
    unwrap,
)
from wavefoundry.models.wavenet import (
    WaveNet,
    WaveNetConfig,
    bits_per_sample,
    negative_log_likelihood,
)


class WaveNetFamily(Family):
    name = "wavenet"
    config_class = WaveNetConfig
    datasets = ("ljspeech", "vctk", "nsynth")
    inference_net = "wavenet"
    # NSynth's instrument_family ids index its family names in this (sorted) order.
    nsynth_families: ClassVar[tuple[str, ...]] = (
        "bass",
        "brass",
        "flute",
        "guitar",
        "keyboard",
        "mallet",
        "organ",
        "reed",
        "string",
        "synth_lead",
        "vocal",
    )

    def __init__(self, config: WaveNetConfig, data: DataSpec):
        super().__init__(config, data)
        self.mel = mel_config(data.sample_rate, self.config) if self.config.n_mels else None

    @property
    def task(self) -> str:  # type: ignore[override]
        """With a mel to follow it is a vocoder; without, it generates from its labels."""
        return "vocoder" if self.config.n_mels else "generator"

    def adapt(self, config: WaveNetConfig, data: DataSpec) -> WaveNetConfig:
        speakers = len(data.speakers) if data.dataset == "vctk" else 0
        nsynth = data.dataset == "nsynth"
        return dataclasses.replace(
            config,
            speakers=speakers,
            pitches=128 if nsynth else 0,
            instrument_families=len(self.nsynth_families) if nsynth else 0,
        )

    def build(self) -> dict[str, nn.Module]:
        return {"wavenet": WaveNet(self.config)}

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        c = self.config
        audio = batch["audio"].to(device, torch.float32)
        if self.mel is not None:  # whole frames only, so mel frames and samples line up
            audio = audio[:, : audio.shape[-1] // c.hop_length * c.hop_length]
        classes = mu_law_encode(audio, c.quantization_channels)
        prepared = {
            "audio": audio,
            "inputs": F.pad(classes[:, :-1], (1, 0), value=c.quantization_channels // 2),
            "targets": classes,
        }
        if self.mel is not None:
            prepared["mel"] = log_mel(audio, self.mel)
        if c.speakers:
            prepared["speaker"] = self.data.speaker_index(batch["speaker"]).to(device)
        if c.pitches:
            prepared["pitch"] = torch.as_tensor(batch["pitch"]).long().clamp(0, c.pitches - 1)
            prepared["pitch"] = prepared["pitch"].to(device)
        if c.instrument_families:
            family = torch.as_tensor(batch["instrument_family"]).long()
            prepared["instrument_family"] = family.clamp(0, c.instrument_families - 1).to(device)
        return prepared

    @staticmethod
    def _conditioning(batch: dict[str, torch.Tensor], items: slice = slice(None)) -> dict:
        names = ("mel", "speaker", "pitch", "instrument_family")
        return {name: batch[name][items] for name in names if name in batch}

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        with step.autocast():
            logits = nets["wavenet"](batch["inputs"], **self._conditioning(batch))
        loss = negative_log_likelihood(logits, batch["targets"])
        step.optimize("wavenet", loss)
        return {"loss": loss.item(), "bits_per_sample": bits_per_sample(loss.item())}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        logits = nets["wavenet"](batch["inputs"], **self._conditioning(batch))
        loss = negative_log_likelihood(logits, batch["targets"]).item()
        return {"loss": loss, "bits_per_sample": bits_per_sample(loss)}

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Two examples of up to 4,000 samples (a quarter second at 16 kHz), generated from the
        first items' conditioning by the cached path."""
        net = unwrap(nets["wavenet"])
        audio = batch["audio"]
        items = slice(0, min(2, len(audio)))
        n_samples = min(self.segment_length, 4000, audio.shape[-1])
        conditioning = self._conditioning(batch, items)
        if "mel" in conditioning:
            frames = math.ceil(n_samples / self.config.hop_length)
            conditioning["mel"] = conditioning["mel"][..., :frames]
        silence = torch.full((len(audio[items]),), self.config.quantization_channels // 2)
        classes = net.generate(n_samples, **conditioning, first_sample=silence)
        generated = mu_law_decode(classes, self.config.quantization_channels)
        return audio[items, :n_samples], generated

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        """WaveNet with local conditioning resynthesizes `audio` from its log-mel; without, it
        generates conditions.get("seconds", 1.0) seconds. Also read: "speaker" (name),
        "pitch" (MIDI, default 60), "instrument_family" (id or name), "temperature", "seed".
        """
        c = self.config
        device = next(net.parameters()).device
        conditioning: dict[str, torch.Tensor] = {}
        if c.n_mels:
            if audio is None:
                raise ValueError("this WaveNet is a vocoder: give it audio to take the mel from")
            audio = audio.to(device, torch.float32).flatten()
            n_samples = audio.numel()
            padded = F.pad(audio, (0, -n_samples % c.hop_length))
            conditioning["mel"] = log_mel(padded, self.mel).unsqueeze(0)
        else:
            n_samples = round(float(conditions.get("seconds", 1.0)) * self.data.sample_rate)
        if c.speakers:
            speaker = self.data.speaker_id(conditions.get("speaker"))
            conditioning["speaker"] = torch.tensor([speaker], device=device)
        if c.pitches:
            pitch = requested_pitch(conditions, c.pitches)
            conditioning["pitch"] = torch.tensor([pitch], device=device)
        if c.instrument_families:
            family = conditions.get("instrument_family", 0)
            names = self.nsynth_families
            if isinstance(family, str):
                family = names.index(family) if family in names else 0
            family = min(max(int(family), 0), c.instrument_families - 1)
            conditioning["instrument_family"] = torch.tensor([family], device=device)
        generator = seeded_generator(conditions, device)
        classes = net.generate(
            n_samples,
            **conditioning,
            temperature=float(conditions.get("temperature", 1.0)),
            generator=generator,
        )
        return mu_law_decode(classes[0], c.quantization_channels).clamp(-1.0, 1.0)

    @torch.no_grad()
    def clip_metrics(
        self, net: nn.Module, audio: torch.Tensor, conditions: dict[str, Any]
    ) -> dict[str, float]:
        """The held-out clip's teacher-forced negative log-likelihood, in bits per sample."""
        device = next(net.parameters()).device
        batch = self.prepare(
            {"audio": audio.reshape(1, -1), **{k: [v] for k, v in conditions.items()}}, device
        )
        logits = net(batch["inputs"], **self._conditioning(batch))
        return {
            "bits_per_sample": bits_per_sample(
                negative_log_likelihood(logits, batch["targets"]).item()
            )
        }
