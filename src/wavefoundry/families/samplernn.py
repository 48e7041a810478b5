"""SampleRNN's training: next-sample prediction over quantised classes, with truncated BPTT.

One network, "samplernn". Truncated backpropagation through time happens inside one trainer
step: the segment (`segment_length` samples) is cut into consecutive subsequences of
`tbptt_length`; the frame tiers' GRU states run on from one subsequence into the next,
detached at each boundary, so no gradient flows further back than one subsequence (the
paper's truncation), and the subsequences' losses make one optimisation step. This keeps
the one trainer's random segments, its exact resume and AMP untouched: no state has to
survive from one step to the next. Each segment starts from the learned initial states with
silence before it.

Conditioning: the VCTK speaker, or the NSynth pitch; LJ Speech has none.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from wavefoundry.data.stored import DataSpec
from wavefoundry.families.base import Family, Step, requested_pitch, seeded_generator, unwrap
from wavefoundry.models.samplernn import SampleRNN, SampleRNNConfig
from wavefoundry.models.wavenet import bits_per_sample, negative_log_likelihood

MIDI_PITCHES = 128


class SampleRNNFamily(Family):
    name = "samplernn"
    config_class = SampleRNNConfig
    datasets = ("ljspeech", "vctk", "nsynth")
    inference_net = "samplernn"
    task = "generator"

    def adapt(self, config: SampleRNNConfig, data: DataSpec) -> SampleRNNConfig:
        return dataclasses.replace(
            config,
            speakers=len(data.speakers) if data.dataset == "vctk" else 0,
            pitches=MIDI_PITCHES if data.dataset == "nsynth" else 0,
        )

    def build(self) -> dict[str, nn.Module]:
        return {"samplernn": SampleRNN(self.config)}

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        c = self.config
        audio = batch["audio"].to(device, torch.float32)
        audio = audio[:, : audio.shape[-1] // c.lookback * c.lookback]  # whole top frames
        prepared = {"audio": audio, "classes": c.quantize(audio)}
        if c.speakers:
            prepared["speaker"] = self.data.speaker_index(batch["speaker"]).to(device)
        if c.pitches:
            pitch = torch.as_tensor(batch["pitch"]).long().clamp(0, c.pitches - 1)
            prepared["pitch"] = pitch.to(device)
        return prepared

    @staticmethod
    def _labels(batch: dict[str, torch.Tensor], items: slice = slice(None)) -> dict:
        return {name: batch[name][items] for name in ("speaker", "pitch") if name in batch}

    def _nll(self, net: nn.Module, batch: dict[str, torch.Tensor], chunk: int) -> torch.Tensor:
        """Mean NLL (nats) of every sample of the batch, `chunk` samples at a time, the GRU
        states carried from one chunk to the next and detached in between."""
        c = self.config
        classes = batch["classes"]
        padded = nn.functional.pad(classes, (c.lookback, 0), value=c.silence)
        length = classes.shape[-1]
        states = None
        total = classes.new_zeros((), dtype=torch.float32)
        for start in range(0, length, chunk):
            end = min(start + chunk, length)
            logits, states = net(
                padded[:, start : end + c.lookback], states=states, **self._labels(batch)
            )
            states = [state.detach() for state in states]
            total = total + negative_log_likelihood(logits, classes[:, start:end]) * (end - start)
        return total / length

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        with step.autocast():
            loss = self._nll(nets["samplernn"], batch, self.config.tbptt_length)
        step.optimize("samplernn", loss)
        return {"loss": loss.item(), "bits_per_sample": bits_per_sample(loss.item())}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        loss = self._nll(nets["samplernn"], batch, self.config.tbptt_length).item()
        return {"loss": loss, "bits_per_sample": bits_per_sample(loss)}

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Two examples of up to 4,000 samples, generated with the first items' labels."""
        net = unwrap(nets["samplernn"])
        audio = batch["audio"]
        items = slice(0, min(2, len(audio)))
        n_samples = min(self.segment_length, 4000, audio.shape[-1])
        classes = net.generate(n_samples, batch=len(audio[items]), **self._labels(batch, items))
        return audio[items, :n_samples], self.config.dequantize(classes)

    def _request(self, conditions: dict[str, Any], device: torch.device) -> dict:
        """A request's labels as the model takes them (batch of one)."""
        c = self.config
        labels: dict[str, torch.Tensor] = {}
        if c.speakers:
            speaker = self.data.speaker_id(conditions.get("speaker"))
            labels["speaker"] = torch.tensor([speaker], device=device)
        if c.pitches:
            pitch = requested_pitch(conditions, c.pitches)
            labels["pitch"] = torch.tensor([pitch], device=device)
        return labels

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        """conditions.get("seconds", 1.0) seconds generated sample by sample; also read:
        "speaker" (name; VCTK), "pitch" (MIDI, default 60; NSynth), "temperature", "seed".
        `audio` is ignored."""
        model = unwrap(net)
        device = next(model.parameters()).device
        n_samples = max(1, round(float(conditions.get("seconds", 1.0)) * self.data.sample_rate))
        generator = seeded_generator(conditions, device)
        classes = model.generate(
            n_samples,
            **self._request(conditions, device),
            temperature=float(conditions.get("temperature", 1.0)),
            generator=generator,
        )
        return self.config.dequantize(classes[0]).clamp(-1.0, 1.0)

    @torch.no_grad()
    def clip_metrics(
        self, net: nn.Module, audio: torch.Tensor, conditions: dict[str, Any]
    ) -> dict[str, float]:
        """The held-out clip's teacher-forced negative log-likelihood in bits per sample, the
        clip read as one sequence from silence (its whole top frames)."""
        model = unwrap(net)
        device = next(model.parameters()).device
        audio = audio.to(device, torch.float32).reshape(1, -1)
        audio = audio[:, : audio.shape[-1] // self.config.lookback * self.config.lookback]
        if audio.shape[-1] == 0:
            return {"bits_per_sample": float("nan")}
        batch = {"classes": self.config.quantize(audio), **self._request(conditions, device)}
        nats = self._nll(model, batch, audio.shape[-1]).item()
        return {"bits_per_sample": bits_per_sample(nats)}
