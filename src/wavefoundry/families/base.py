"""How a model family plugs into the one trainer.

A family says which networks it has, how a batch of stored segments becomes model inputs,
what one training step does (it calls `step.optimize(name, loss)` once per network it
updates, so a GAN's discriminator and generator steps live in the family, not in a loop
of its own), how it is evaluated and how it makes audio. Everything else (devices, AMP,
DDP, clipping, schedules, EMA, checkpoints, MLflow) is the trainer's.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from wavefoundry.audio import MelConfig, log_mel
from wavefoundry.config import TrackingConfig
from wavefoundry.data.stored import DataSpec
from wavefoundry.errors import UserError


class Step(Protocol):
    """What the trainer lends a family's `train_step`."""

    step: int  # the global step being taken, from 0

    def autocast(self) -> AbstractContextManager[Any]:
        """Mixed precision on CUDA when `training.amp` is on; a no-op elsewhere."""
        ...

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """Zero `name`'s gradients, backpropagate `loss` (scaled under AMP), clip, step."""
        ...


class Family(ABC):
    """One model family. Subclasses set the class attributes and implement the methods.

    `nets` passed to the methods is the dict `build()` returned, each network possibly
    wrapped by DDP: call them, but reach attributes through `unwrap(nets[name])`.
    """

    name: ClassVar[str]  # "wavenet", ...: the --model name
    config_class: ClassVar[type]  # the model file's config dataclass
    datasets: ClassVar[tuple[str, ...]]  # datasets this family trains on
    inference_net: ClassVar[str]  # the network that makes audio; exported and EMA-averaged
    # "vocoder", "codec", "generator" or "acoustic" (config.TASKS): how its candidates are scored and which
    # registered model they join. WaveNet's depends on its config, so it is a property there.
    task: ClassVar[str]
    random_offset: ClassVar[bool] = True  # segments start anywhere (False: at the clip start)
    # Whole clips with their transcripts (text-to-speech), bucketed by length and padded,
    # instead of fixed segments; `segment_length` is then the longest clip taken, in samples.
    utterances: ClassVar[bool] = False
    # The inference net's submodule that is another registered model's inference net (the code
    # prior's frozen VQ-VAE, "codec"): a Bento carries that model as its own BentoModel.
    upstream_module: ClassVar[str | None] = None

    def __init__(self, config: Any, data: DataSpec):
        self.config = self.adapt(config, data)
        self.data = data

    def adapt(self, config: Any, data: DataSpec) -> Any:
        """Fill in what depends on the data (number of speakers, sample rate); default: as is."""
        return config

    @property
    def segment_length(self) -> int:
        """Samples per training example: the config's `segment_length`."""
        return self.config.segment_length

    @abstractmethod
    def build(self) -> dict[str, nn.Module]:
        """The named networks, freshly initialised (the trainer seeds torch first)."""

    def optimizers(self, nets: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        """One optimizer per network `train_step` updates. Default: Adam(W) from the config's
        `learning_rate`, `adam_betas` and `weight_decay` (when it has them) for every net."""
        lr = self.config.learning_rate
        betas = tuple(getattr(self.config, "adam_betas", (0.9, 0.999)))
        decay = getattr(self.config, "weight_decay", 0.0)
        return {
            name: torch.optim.AdamW(net.parameters(), lr=lr, betas=betas, weight_decay=decay)
            for name, net in nets.items()
        }

    def resolve(self, tracking: TrackingConfig) -> None:
        """Before a training run builds the networks: fetch the registered models this family
        builds on (the code prior's VQ-VAE) and pin their versions in `self.config`, so the
        exported model says exactly what it was trained on. Default: nothing."""
        return None

    def upstream(self) -> dict[str, str]:
        """The registered models this one is built on, as tracking.UPSTREAM_TAGS -> value: tagged
        on the run and its registered version, shown by the Bento's /info. Default: none."""
        return {}

    def check_upstream(self, upstream: Family, where: str) -> None:
        """UserError unless `upstream` (an exported model, found at `where`) is the model this
        one was trained on, as pinned in its config. Default: this family builds on none."""
        raise UserError(f"a {self.name} model is built on no other model ({where})")

    def for_inference(self, net: nn.Module) -> nn.Module:
        """The trained inference net made ready to serve (e.g. weight norm folded into the
        weights); outputs unchanged. Default: as is."""
        return net

    @abstractmethod
    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """A collated batch of `SegmentDataset` items ({"audio": (B, T) float, conditioning
        columns as lists}) to the tensors the model takes, on `device`."""

    @abstractmethod
    def train_step(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: Step
    ) -> dict[str, float]:
        """One optimisation step. Returns the loss terms to log (floats, already detached)."""

    @abstractmethod
    @torch.no_grad()
    def evaluate(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        """Validation losses on one batch, no gradients; the trainer averages over batches."""

    @abstractmethod
    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Audio to listen to at validation: (reference or None, generated), each (B, T) in
        [-1, 1]. Keep it cheap: a few examples, short."""

    @abstractmethod
    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        """Inference on the unwrapped inference net, batch of one, for MLflow models and the
        service: vocoders resynthesize `audio` (1-D float tensor at data.sample_rate) from its
        mel; VQ-VAE passes it through its codes, decoding with conditions.get("speaker") (a
        speaker name) when given; generators ignore `audio` and make audio from conditions
        (e.g. "pitch", "seed", "seconds"). Returns 1-D float audio in [-1, 1]."""

    @torch.no_grad()
    def figures(self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Matplotlib figures to log at validation beside the audio (name -> Figure), e.g. an
        attention alignment; none by default."""
        return {}

    @torch.no_grad()
    def clip_metrics(
        self, net: nn.Module, audio: torch.Tensor, conditions: dict[str, Any]
    ) -> dict[str, float]:
        """Metrics only this family can give on a held-out clip (1-D audio, its conditioning
        as `synthesize` takes it), such as WaveNet's likelihood; none by default."""
        return {}


def requested_pitch(conditions: dict[str, Any], pitches: int) -> int:
    """A request's "pitch" (MIDI, default 60); a ValueError naming the range when outside it."""
    pitch = int(conditions.get("pitch", 60))
    if not 0 <= pitch < pitches:
        raise ValueError(f"pitch {pitch} is outside the MIDI range 0-{pitches - 1}")
    return pitch


def seeded_generator(conditions: dict[str, Any], device: torch.device) -> torch.Generator | None:
    """A random generator seeded with the request's "seed", or None (torch's global one)."""
    if conditions.get("seed") is None:
        return None
    return torch.Generator(device).manual_seed(int(conditions["seed"]))


def unwrap(net: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (or the module itself)."""
    return getattr(net, "module", net)


def mel_config(sample_rate: int, config: Any) -> MelConfig:
    """A MelConfig from a model config's mel fields (n_fft, hop_length, win_length, n_mels,
    f_min, f_max) at the data's sample rate."""
    names = {f.name for f in dataclasses.fields(MelConfig)} - {"sample_rate"}
    values = {n: getattr(config, n) for n in names if hasattr(config, n)}
    return MelConfig(sample_rate=sample_rate, **values)


def whole_frames(audio: torch.Tensor, mel: MelConfig) -> torch.Tensor:
    """1-D audio zero-padded at its end to a whole number of mel frames, and to more samples
    than `log_mel`'s reflect padding of (n_fft - hop) / 2 needs: what a mel vocoder takes to
    resynthesize a clip of any length (cut its output back to the clip's)."""
    hop = mel.hop_length
    min_frames = ((mel.n_fft - hop) // 2) // hop + 1
    frames = max(math.ceil(len(audio) / hop), min_frames)
    return F.pad(audio, (0, frames * hop - len(audio)))


def audio_and_mel(batch: dict[str, Any], mel: MelConfig, device: torch.device) -> dict[str, Any]:
    """A mel vocoder's `prepare`: the batch's (B, T) audio cut to whole mel frames, float32 on
    `device`, and its (B, n_mels, T / hop) log-mel."""
    audio = batch["audio"].to(device, torch.float32)
    audio = audio[:, : audio.shape[-1] // mel.hop_length * mel.hop_length]
    return {"audio": audio, "mel": log_mel(audio, mel)}


class SpeakerCodecFamily(Family):
    """A codec whose one network, `inference_net`, reconstructs (B, T) audio through a latent
    decoded as a speaker (VQ-VAE, the waveform VAE). The network's `forward(audio, speaker)`
    returns an output with `.reconstruction` (B, T), and its `convert(audio, speaker)` the
    audio re-spoken as that speaker (B, T). Speakers are the dataset's training speakers (one
    for a dataset without speakers), indexed as `data.speakers`."""

    def adapt(self, config: Any, data: DataSpec) -> Any:
        return dataclasses.replace(config, speakers=max(1, len(data.speakers)))

    def prepare(self, batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
        """The batch's (B, T) audio, float32 on `device`, and its (B,) speaker indices into
        `data.speakers` (all 0 for a dataset without speakers)."""
        audio = batch["audio"].to(device, torch.float32)
        if "speaker" in batch:
            speaker = self.data.speaker_index(batch["speaker"])
        else:
            speaker = torch.zeros(audio.shape[0], dtype=torch.long)
        return {"audio": audio, "speaker": speaker.to(device)}

    @torch.no_grad()
    def sample(
        self, nets: dict[str, nn.Module], batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        audio = batch["audio"][:2]
        reconstruction = nets[self.inference_net](audio, batch["speaker"][:2]).reconstruction
        return audio, reconstruction.float().clamp(-1.0, 1.0)

    @torch.no_grad()
    def synthesize(
        self, net: nn.Module, audio: torch.Tensor | None, conditions: dict[str, Any]
    ) -> torch.Tensor:
        """`audio` through the latent, decoded as conditions.get("speaker") (a speaker name;
        None: the first): a reconstruction, or a voice conversion, of the input's length."""
        if audio is None:
            raise ValueError(f"{self.name} reconstructs `audio` through its latent: it is required")
        model = unwrap(net)
        device = next(model.parameters()).device
        speaker = torch.tensor([self.data.speaker_id(conditions.get("speaker"))], device=device)
        converted = model.convert(audio.to(device, torch.float32).reshape(1, -1), speaker)
        return converted.reshape(-1).float().clamp(-1.0, 1.0)
