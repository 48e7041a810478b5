"""A pitch and instrument-family classifier for NSynth notes: the "inception network" of the
NSynth scores (as in Engel et al., "GANSynth", 2019, after Salimans et al.'s Inception Score).

Trained by the project on the stored NSynth train split. Its pitch head tells whether a
generated note has the pitch it was asked for; its penultimate features are the embedding
whose Fréchet distance between generated and held-out notes scores a generator.

Few notes are enough because training changes them while keeping what they are: a note read
2**(k/12) times faster is k semitones higher, and a random smooth equaliser changes its timbre
but not its pitch or (mostly) its family.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from wavefoundry.audio import MelConfig, log_mel
from wavefoundry.config import Config
from wavefoundry.data.stored import data_version
from wavefoundry.errors import UserError
from wavefoundry.progress import progress_bar

RUN_NAME = "nsynth-note-classifier"
HELD_SECONDS = 3.0  # NSynth holds every note for 3 s, then releases it
TILT_DB_PER_OCTAVE = (-24.0, 6.0)  # from a near-sine version of a note to a brighter one


@dataclass(frozen=True)
class NoteClassifierConfig:
    sample_rate: int = 16000
    segment_length: int = 16384  # samples from each note's onset; what WaveGAN generates
    n_mels: int = 64
    n_fft: int = 1024
    hop_length: int = 256
    channels: int = 32
    embedding_dim: int = 32
    pitches: int = 128  # MIDI classes
    families: int = 11  # NSynth instrument families
    steps: int = 500
    batch_size: int = 16
    learning_rate: float = 3e-3
    max_shift: int = 12  # pitch-shift augmentation, semitones each way
    eq_db: float = 12.0  # depth of the random equaliser's bumps, dB either way
    pitch_sigma: float = 0.7  # semitones: neighbouring pitches share the target a little
    seed: int = 0

    @property
    def mel(self) -> MelConfig:
        return MelConfig(
            sample_rate=self.sample_rate,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.n_fft,
            n_mels=self.n_mels,
            f_max=self.sample_rate / 2,
        )


@dataclass
class NoteClassification:
    pitch_logits: torch.Tensor  # (B, pitches)
    family_logits: torch.Tensor  # (B, families)
    embedding: torch.Tensor  # (B, embedding_dim): the penultimate features, for Fréchet distance


class NoteClassifier(nn.Module):
    """Log-mel frames, convolutions over time with the mel bands as channels (so the absolute
    frequency, which is the pitch, stays visible), a mean over time, then two heads."""

    def __init__(self, config: NoteClassifierConfig):
        super().__init__()
        self.config = config
        width = 4 * config.channels
        self.convs = nn.Sequential(
            nn.Conv1d(config.n_mels, width, 3, padding=1),
            nn.GELU(),
            nn.Conv1d(width, width, 3, padding=2, dilation=2),
            nn.GELU(),
            nn.Conv1d(width, width, 3, padding=4, dilation=4),
            nn.GELU(),
        )
        self.embed = nn.Linear(width, config.embedding_dim)
        self.pitch_head = nn.Linear(config.embedding_dim, config.pitches)
        self.family_head = nn.Linear(config.embedding_dim, config.families)

    def forward(self, audio: torch.Tensor) -> NoteClassification:
        peak = audio.abs().amax(dim=-1, keepdim=True).clamp(min=1e-6)
        mel = log_mel(audio / peak, self.config.mel)
        mel = (mel - mel.mean(dim=(1, 2), keepdim=True)) / (
            mel.std(dim=(1, 2), keepdim=True).clamp(min=1e-3)
        )
        embedding = F.gelu(self.embed(self.convs(mel).mean(dim=-1)))
        return NoteClassification(
            self.pitch_head(embedding), self.family_head(embedding), embedding
        )


def load_notes(split_dir: Path, length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(audio (N, length) from each note's onset, zero-padded; pitches (N,) long; families (N,) long)"""
    index = pd.read_parquet(split_dir / "index.parquet")
    samples = np.load(split_dir / "audio.npy", mmap_mode="r")
    audio = torch.zeros(len(index), length)
    for i, (offset, n) in enumerate(zip(index["offset"], index["length"], strict=True)):
        n = min(int(n), length)
        audio[i, :n] = torch.from_numpy(samples[offset : offset + n] / np.float32(32768))
    pitches = torch.tensor(index["pitch"].to_numpy(), dtype=torch.long)
    families = torch.tensor(index["instrument_family"].to_numpy(), dtype=torch.long)
    return audio, pitches, families


def _shifted(note: np.ndarray, length: int, ratio: float, start: int) -> torch.Tensor:
    """`length` samples of the note from `start`, read `ratio` times faster (linear
    interpolation), which raises its pitch by 12 * log2(ratio) semitones."""
    span = math.ceil(length * ratio) + 2
    window = torch.zeros(span)
    piece = torch.from_numpy(note[start : start + span] / np.float32(32768))
    window[: len(piece)] = piece
    t = torch.arange(length) * ratio
    left = t.long()
    frac = t - left
    return window[left] * (1 - frac) + window[left + 1] * frac


def _equalised(
    audio: torch.Tensor, config: NoteClassifierConfig, generator: torch.Generator
) -> torch.Tensor:
    """Each example through its own random equaliser: a tilt plus cosines over log frequency
    with periods of 8, 4 and 8/3 octaves, each up to eq_db deep."""
    batch = len(audio)
    freqs = torch.fft.rfftfreq(audio.shape[-1], 1 / config.sample_rate)
    octaves = torch.log2(freqs.clamp(min=50) / 50)
    low, high = TILT_DB_PER_OCTAVE
    gain_db = (low + (high - low) * torch.rand(batch, 1, generator=generator)) * octaves
    depths = config.eq_db * (2 * torch.rand(batch, 3, 1, generator=generator) - 1)
    phases = 2 * math.pi * torch.rand(batch, 3, 1, generator=generator)
    cycles = torch.arange(1, 4)[None, :, None] * 2 * math.pi * octaves / 8
    gain_db = gain_db + (depths * torch.cos(cycles + phases)).sum(dim=1)
    spectrum = torch.fft.rfft(audio) * 10 ** (gain_db / 20)
    return torch.fft.irfft(spectrum, n=audio.shape[-1])


def _batch(
    samples: np.ndarray,
    index: pd.DataFrame,
    config: NoteClassifierConfig,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random notes, each shifted by up to max_shift semitones and equalised, from its onset
    or (half the time) anywhere in its held part; their pitch and family labels."""
    shape = (config.batch_size,)
    notes = torch.randint(len(index), shape, generator=generator).numpy()
    shifts = torch.randint(-config.max_shift, config.max_shift + 1, shape, generator=generator)
    starts = torch.rand(shape, generator=generator) * (torch.rand(shape, generator=generator) < 0.5)
    pitches = index["pitch"].to_numpy()[notes]
    shifts = np.clip(shifts.numpy(), -pitches, config.pitches - 1 - pitches)
    held = int(HELD_SECONDS * config.sample_rate)
    audio = []
    for note, shift, start in zip(notes, shifts, starts.tolist(), strict=True):
        offset, length = index["offset"].iat[note], index["length"].iat[note]
        ratio = 2 ** (shift / 12)
        latest = max(min(length, held) - math.ceil(config.segment_length * ratio), 0)
        note_samples = samples[offset : offset + length]
        audio.append(_shifted(note_samples, config.segment_length, ratio, int(start * latest)))
    families = index["instrument_family"].to_numpy()[notes]
    return (
        _equalised(torch.stack(audio), config, generator),
        torch.tensor(pitches + shifts, dtype=torch.long),
        torch.tensor(families, dtype=torch.long),
    )


def train_note_classifier(
    train_dir: Path, config: NoteClassifierConfig = NoteClassifierConfig()
) -> NoteClassifier:
    """Deterministic given config.seed; in eval() mode on return."""
    index = pd.read_parquet(train_dir / "index.parquet")
    samples = np.load(train_dir / "audio.npy", mmap_mode="r")
    generator = torch.Generator().manual_seed(config.seed)
    with torch.random.fork_rng(devices=[]):  # seed the initial weights, not the caller's RNG
        torch.manual_seed(config.seed)
        model = NoteClassifier(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, config.learning_rate, total_steps=config.steps
    )
    classes = torch.arange(config.pitches)
    model.train()
    with progress_bar("training the NSynth note classifier", config.steps) as advance:
        for _ in range(config.steps):
            audio, pitches, families = _batch(samples, index, config, generator)
            out = model(audio)
            distance = (classes[None, :] - pitches[:, None]) / config.pitch_sigma
            pitch_targets = torch.softmax(-0.5 * distance**2, dim=-1)
            loss = F.cross_entropy(out.pitch_logits, pitch_targets) + F.cross_entropy(
                out.family_logits, families
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            advance(1)
    return model.eval()


@torch.no_grad()
def accuracy(
    classifier: NoteClassifier,
    audio: torch.Tensor,
    pitches: torch.Tensor,
    families: torch.Tensor,
    batch_size: int = 64,
) -> dict[str, float]:
    """Top-1 pitch and family accuracy over the notes."""
    pitch_hits = family_hits = 0
    for i in range(0, len(audio), batch_size):
        out = classifier(audio[i : i + batch_size])
        pitch_hits += int((out.pitch_logits.argmax(-1) == pitches[i : i + batch_size]).sum())
        family_hits += int((out.family_logits.argmax(-1) == families[i : i + batch_size]).sum())
    n = max(len(audio), 1)
    return {"pitch_accuracy": pitch_hits / n, "family_accuracy": family_hits / n}


def note_classifier(
    cfg: Config, config: NoteClassifierConfig = NoteClassifierConfig()
) -> tuple[NoteClassifier, dict[str, float]]:
    """The classifier for the stored NSynth data and its accuracy on the stored test split.

    Kept in `<runs>/nsynth-note-classifier` (model.safetensors + config.json) and trained
    again only when the data version or the classifier config changed.
    """
    processed, version_path = cfg.paths.processed("nsynth"), cfg.paths.data_version("nsynth")
    train_dir, test_dir = processed / "train", processed / "test"
    if not all(
        path.is_file()
        for path in (version_path, train_dir / "index.parquet", test_dir / "index.parquet")
    ):
        raise UserError(
            f"no stored NSynth train and test splits at {processed}: "
            "run `wavefoundry prepare -d nsynth` first"
        )
    description = {
        "data_version": data_version(cfg, "nsynth"),
        "config": dataclasses.asdict(config),
    }
    folder = cfg.paths.runs / RUN_NAME
    if (folder / "config.json").is_file():
        saved = json.loads((folder / "config.json").read_text())
        if {key: saved.get(key) for key in description} == description:
            classifier = NoteClassifier(config)
            classifier.load_state_dict(load_file(folder / "model.safetensors"))
            return classifier.eval(), saved["accuracy"]
    classifier = train_note_classifier(train_dir, config)
    scores = accuracy(classifier, *load_notes(test_dir, config.segment_length))
    temporary = folder.with_name(f".{folder.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    save_file(
        {key: value.contiguous() for key, value in classifier.state_dict().items()},
        temporary / "model.safetensors",
    )
    (temporary / "config.json").write_text(
        json.dumps({**description, "accuracy": scores}, indent=2)
    )
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(temporary, folder)
    return classifier, scores
