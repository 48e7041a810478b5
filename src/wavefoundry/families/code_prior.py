"""The code prior's training: next-code prediction over a registered VQ-VAE's codes.

One network, "prior": the Transformer with the frozen VQ-VAE inside it. When a training run
starts (`resolve`), the VQ-VAE named by `codec_model` (default wavefoundry-DATASET-codec) and
`codec_version` (a number or an alias, default champion) is fetched from the MLflow registry
and pinned: its version number, run and config go into the prior's config, its weights into
the prior's network. So the exported prior carries the decoder it needs, the run and the
registered version are tagged with the VQ-VAE's version, and scoring or serving the prior never
has to reach the registry again. A Bento carries the two as separate models (the prior saved
without the VQ-VAE's weights, `io.copy_without_upstream`), put together when it starts.

A training example is `block_size - 1` codes' worth of audio (codes x the VQ-VAE's hop),
encoded on the fly by the frozen encoder; the label token (VCTK speaker, NSynth pitch, else a
start token) goes first. Loss: cross-entropy of each next code, logged also in bits per code.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry import tracking
from wavefoundry.config import TrackingConfig
from wavefoundry.data.stored import DataSpec
from wavefoundry.errors import UserError
from wavefoundry.families.base import Family, Step, requested_pitch, seeded_generator, unwrap
from wavefoundry.models.code_prior import CodePrior, CodePriorConfig

MIDI_PITCHES = 128


def bits(nats: float) -> float:
    return nats / math.log(2)


class CodePriorFamily(Family):
    name = "code_prior"
    config_class = CodePriorConfig
    datasets = ("ljspeech", "vctk", "nsynth")
    inference_net = "prior"
    task = "generator"
    upstream_module = "codec"  # CodePrior.codec: the pinned VQ-VAE

    def __init__(self, config: CodePriorConfig, data: DataSpec):
        super().__init__(config, data)
        self.codec_state: dict[str, torch.Tensor] | None = None  # set by resolve()

    def adapt(self, config: CodePriorConfig, data: DataSpec) -> CodePriorConfig:
        return dataclasses.replace(
            config,
            codec_model=config.codec_model or tracking.registered_model_name(data.dataset, "codec"),
            # As the VQ-VAE family would size it on this data, until resolve() pins the real one.
            codec=dataclasses.replace(config.codec, speakers=max(1, len(data.speakers))),
            speakers=len(data.speakers) if data.dataset == "vctk" else 0,
            pitches=MIDI_PITCHES if data.dataset == "nsynth" else 0,
        )

    def resolve(self, tracking_config: TrackingConfig) -> None:
        """Fetch the VQ-VAE version from the registry and pin it (see the module doc)."""
        from wavefoundry.families.io import load_model

        c = self.config
        version = tracking.registered_version(tracking_config, c.codec_model, str(c.codec_version))
        folder = tracking.download_logged_model(version.source)
        codec_family, codec = load_model(folder)
        self._check_codec(codec_family, f"{c.codec_model} version {version.version}")
        self.config = dataclasses.replace(
            c,
            codec_version=str(version.version),
            codec_run_id=version.run_id or "",
            codec=codec_family.config,
        )
        self.codec_state = codec.state_dict()

    def _check_codec(self, codec_family: Family, where: str) -> None:
        if codec_family.name != "vqvae":
            raise UserError(f"{where} is a {codec_family.name} model, not a VQ-VAE")
        if codec_family.data.dataset != self.data.dataset:
            raise UserError(
                f"{where} was trained on {codec_family.data.dataset}, not {self.data.dataset}"
            )
        if codec_family.data.speakers != self.data.speakers:
            raise UserError(
                f"{where} knows other speakers than the stored {self.data.dataset} data: "
                "train the prior on the data its VQ-VAE was trained on"
            )

    def check_upstream(self, upstream: Family, where: str) -> None:
        """The VQ-VAE at `where` must be one whose codes this prior learned: a VQ-VAE of the
        same data with the configuration pinned when the prior was trained."""
        self._check_codec(upstream, where)
        if upstream.config != self.config.codec:
            raise UserError(
                f"{where} is not the VQ-VAE this prior was trained on ({self.config.codec_model} "
                f"version {self.config.codec_version}): its configuration differs"
            )

    def upstream(self) -> dict[str, str]:
        c = self.config
        return {
            tracking.TAG_CODEC_MODEL: c.codec_model,
            tracking.TAG_CODEC_VERSION: str(c.codec_version),
            tracking.TAG_CODEC_RUN_ID: c.codec_run_id,
        }

    @property
    def hop_length(self) -> int:
        """Audio samples per code."""
        return self.config.codec.hop_length

    @property
    def segment_length(self) -> int:
        return (self.config.block_size - 1) * self.hop_length

    def build(self) -> dict[str, nn.Module]:
        prior = CodePrior(self.config)
        if self.codec_state is not None:
            prior.codec.load_state_dict(self.codec_state)
        return {"prior": prior}

    def optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """AdamW as nanoGPT: weight decay on the matrices only; the VQ-VAE is not trained."""
        c = self.config
        trained = [p for p in nets["prior"].parameters() if p.requires_grad]
        groups = [
            {"params": [p for p in trained if p.dim() >= 2], "weight_decay": c.weight_decay},
            {"params": [p for p in trained if p.dim() < 2], "weight_decay": 0.0},
        ]
        return {"prior": torch.optim.AdamW(groups, lr=c.learning_rate, betas=c.adam_betas)}

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        prepared = {"audio": batch["audio"].to(device, torch.float32)}
        label = self._labels(batch)
        if label is not None:
            prepared["label"] = label.to(device)
        return prepared

    def _labels(self, batch: dict[str, Any]) -> torch.Tensor | None:
        c = self.config
        if c.speakers:
            return self.data.speaker_index(batch["speaker"])
        if c.pitches:
            return torch.as_tensor(batch["pitch"]).long().clamp(0, c.pitches - 1)
        return None

    def _cross_entropy(self, net: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean cross-entropy (nats) of every code of the batch's audio, read in windows of
        `block_size - 1` codes, each after the label token."""
        model = unwrap(net)
        codes = model.encode(batch["audio"])
        first = model.label_tokens(batch.get("label"), codes.shape[0])[:, None]
        window = self.config.block_size - 1
        total = codes.new_zeros((), dtype=torch.float32)
        for start in range(0, codes.shape[1], window):
            part = codes[:, start : start + window]
            logits, _ = net(torch.cat([first, part[:, :-1]], dim=1))
            loss = F.cross_entropy(logits.float().transpose(1, 2), part, reduction="sum")
            total = total + loss
        return total / codes.numel()

    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        with step.autocast():
            loss = self._cross_entropy(nets["prior"], batch)
        step.optimize("prior", loss)
        return {"loss": loss.item(), "bits_per_code": bits(loss.item())}

    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        loss = self._cross_entropy(nets["prior"], batch).item()
        return {"loss": loss, "bits_per_code": bits(loss)}

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Two examples of up to 4,000 samples: codes sampled after the first items' labels,
        decoded by the VQ-VAE."""
        model = unwrap(nets["prior"])
        audio = batch["audio"][:2]
        label = batch["label"][:2] if "label" in batch else None
        n_codes = max(1, min(self.config.block_size - 1, 4000 // self.hop_length))
        codes = model.generate(n_codes, label, batch=len(audio))
        generated = model.codec.decode(codes, self._decoder_speaker(label))
        return audio[:, : generated.shape[1]], generated.float().clamp(-1.0, 1.0)

    def _decoder_speaker(self, label: torch.Tensor | None) -> torch.Tensor | None:
        """The VQ-VAE decodes with the speaker the codes were sampled for (VCTK only)."""
        return label if self.config.speakers else None

    def _request(self, conditions: dict[str, Any], device: torch.device) -> torch.Tensor | None:
        c = self.config
        if c.speakers:
            return torch.tensor([self.data.speaker_id(conditions.get("speaker"))], device=device)
        if c.pitches:
            return torch.tensor([requested_pitch(conditions, c.pitches)], device=device)
        return None

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        """conditions.get("seconds", 1.0) seconds: codes sampled with the key/value cache after
        the label token ("speaker" name on VCTK, "pitch" MIDI on NSynth), decoded by the VQ-VAE
        with that speaker. Also read: "temperature", "top_k", "seed". `audio` is ignored."""
        model = unwrap(net)
        device = next(model.parameters()).device
        n_samples = max(1, round(float(conditions.get("seconds", 1.0)) * self.data.sample_rate))
        label = self._request(conditions, device)
        generator = seeded_generator(conditions, device)
        top_k = conditions.get("top_k")
        codes = model.generate(
            -(-n_samples // self.hop_length),
            label,
            temperature=float(conditions.get("temperature", 1.0)),
            top_k=None if top_k is None else int(top_k),
            generator=generator,
        )
        decoded = model.codec.decode(codes, self._decoder_speaker(label))
        return decoded[0, :n_samples].float().clamp(-1.0, 1.0)

    @torch.no_grad()
    def clip_metrics(
        self, net: nn.Module, audio: torch.Tensor, conditions: dict[str, Any]
    ) -> dict[str, float]:
        """The held-out clip's codes' cross-entropy under the prior, in bits per code."""
        model = unwrap(net)
        device = next(model.parameters()).device
        batch = {"audio": audio.to(device, torch.float32).reshape(1, -1)}
        label = self._request(conditions, device)
        if label is not None:
            batch["label"] = label
        return {"bits_per_code": bits(self._cross_entropy(model, batch).item())}
