"""The NSynth note classifier on the stored sample notes: what it recognises, where it is kept,
when it is trained again."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from wavefoundry.config import Config, load_config
from wavefoundry.errors import UserError
from wavefoundry.evaluation import note_classifier as nc
from wavefoundry.evaluation.note_classifier import (
    NoteClassifierConfig,
    accuracy,
    load_notes,
    note_classifier,
    train_note_classifier,
)

QUICK = NoteClassifierConfig(steps=20)
TONE_PITCHES = torch.arange(48, 85, 3)  # inside what the 9 train notes cover, shifted +-12


def _config(data: Path, runs: Path) -> Config:
    return load_config(None, overrides=[f"paths.data={data}", f"paths.runs={runs}"])


def _tones(partials: int, rolloff: float, sample_rate: int = 16000) -> torch.Tensor:
    """Steady tones at TONE_PITCHES: partial k at k * f0 with amplitude 1 / k**rolloff."""
    t = torch.arange(16384) / sample_rate
    f0 = 440 * 2 ** ((TONE_PITCHES[:, None, None] - 69) / 12)
    k = torch.arange(1, partials + 1)[None, :, None]
    waves = torch.sin(2 * math.pi * k * f0 * t + k) / k**rolloff * (k * f0 < 7500)
    return waves.sum(dim=1) * (t / 0.01).clamp(max=1.0)


def _spy_on_training(monkeypatch: pytest.MonkeyPatch) -> list[NoteClassifierConfig]:
    calls: list[NoteClassifierConfig] = []
    train = nc.train_note_classifier

    def counting(train_dir: Path, config: NoteClassifierConfig):
        calls.append(config)
        return train(train_dir, config)

    monkeypatch.setattr(nc, "train_note_classifier", counting)
    return calls


@pytest.fixture(scope="module")
def trained(stored_samples: Path, tmp_path_factory: pytest.TempPathFactory):
    """The classifier with the default config, as `note_classifier` trains it the first time."""
    cfg = _config(stored_samples, tmp_path_factory.mktemp("runs"))
    start = time.perf_counter()
    classifier, scores = note_classifier(cfg)
    return cfg, classifier, scores, time.perf_counter() - start


@pytest.mark.slow
def test_held_out_notes_are_recognised_far_above_chance(trained) -> None:
    cfg, classifier, scores, _ = trained
    processed = cfg.paths.processed("nsynth")
    assert set(scores) == {"pitch_accuracy", "family_accuracy"}
    assert scores == accuracy(classifier, *load_notes(processed / "test", 16384))
    # Chance is 1/128. Seeds 0-7 get 1, 2, 2, 2, 2, 2, 2, 2 of the 3 test notes (one guitar),
    # and 3, 4, 3, 3, 4, 4, 4, 3 of the 6 test and valid notes: two instruments, neither of
    # whose families is in the train split (so their family accuracy is 0 here).
    assert scores["pitch_accuracy"] >= 1 / 3
    held_out = [load_notes(processed / split, 16384) for split in ("test", "valid")]
    audio, pitches, families = (torch.cat(parts) for parts in zip(*held_out, strict=True))
    assert accuracy(classifier, audio, pitches, families)["pitch_accuracy"] >= 2 / 6
    # The train notes' families are known: they are told apart.
    train = accuracy(classifier, *load_notes(processed / "train", 16384))
    assert train["family_accuracy"] >= 2 / 3


@pytest.mark.slow
def test_synthetic_tones_get_their_pitch(trained) -> None:
    _, classifier, _, _ = trained
    tones = torch.cat([_tones(1, 1.0), _tones(8, 2.0), _tones(8, 1.0)])  # sine, mellow, sawtooth
    pitches = TONE_PITCHES.repeat(3)
    with torch.no_grad():
        out = classifier(tones)
        quiet = classifier(0.05 * tones)
        short = classifier(tones[:, :2048])
    errors = out.pitch_logits.argmax(-1) - pitches
    # Seeds 0-7: 36, 38, 36, 37, 36, 33, 38, 38 of the 39 tones within a semitone (the misses
    # are the lowest pitches, 48-54), and 25-34 exactly.
    assert (errors.abs() <= 1).float().mean() >= 0.8, errors.tolist()
    assert (errors == 0).float().mean() >= 0.5, errors.tolist()
    # Gain does not matter.
    torch.testing.assert_close(quiet.pitch_logits, out.pitch_logits, atol=1e-2, rtol=0)
    assert torch.equal(quiet.pitch_logits.argmax(-1), out.pitch_logits.argmax(-1))
    assert out.embedding.shape == (len(tones), NoteClassifierConfig().embedding_dim)
    assert out.family_logits.shape == (len(tones), 11)
    assert short.pitch_logits.shape == (len(tones), 128)


@pytest.mark.slow
def test_saved_as_safetensors_and_json_only(trained) -> None:
    cfg, classifier, scores, _ = trained
    folder = cfg.paths.runs / "nsynth-note-classifier"
    assert sorted(p.name for p in cfg.paths.runs.rglob("*")) == sorted(
        ["nsynth-note-classifier", "model.safetensors", "config.json"]
    )
    saved = json.loads((folder / "config.json").read_text())
    version = json.loads(cfg.paths.data_version("nsynth").read_text())["data_version"]
    assert saved == {
        "data_version": version,
        "config": dataclasses.asdict(NoteClassifierConfig()),
        "accuracy": scores,
    }
    weights = load_file(folder / "model.safetensors")
    for name, value in classifier.state_dict().items():
        assert torch.equal(weights[name], value)


@pytest.mark.slow
def test_second_call_loads_instead_of_training(trained, monkeypatch) -> None:
    cfg, classifier, scores, training_seconds = trained
    calls = _spy_on_training(monkeypatch)
    start = time.perf_counter()
    again, again_scores = note_classifier(cfg)
    assert time.perf_counter() - start < training_seconds / 5
    assert calls == []
    assert again_scores == scores
    assert not again.training
    for (name, value), (_, loaded) in zip(
        classifier.state_dict().items(), again.state_dict().items(), strict=True
    ):
        assert torch.equal(value, loaded), name


@pytest.mark.slow
def test_new_data_version_or_config_trains_again(stored_samples, tmp_path, monkeypatch) -> None:
    data = tmp_path / "data"
    shutil.copytree(stored_samples / "processed" / "nsynth", data / "processed" / "nsynth")
    version_path = data / "processed" / "nsynth.version.json"
    shutil.copy(stored_samples / "processed" / "nsynth.version.json", version_path)
    cfg = _config(data, tmp_path / "runs")
    calls = _spy_on_training(monkeypatch)

    note_classifier(cfg, QUICK)
    note_classifier(cfg, QUICK)
    assert len(calls) == 1

    version = json.loads(version_path.read_text())
    version["data_version"] = "0" * 32 + ".dir"
    version_path.write_text(json.dumps(version))
    note_classifier(cfg, QUICK)
    assert len(calls) == 2
    saved = json.loads((cfg.paths.runs / "nsynth-note-classifier" / "config.json").read_text())
    assert saved["data_version"] == "0" * 32 + ".dir"

    note_classifier(cfg, dataclasses.replace(QUICK, seed=1))
    assert [c.seed for c in calls] == [0, 0, 1]
    assert not list(cfg.paths.runs.glob(".*"))  # no temporary folder left behind


@pytest.mark.slow
def test_training_is_deterministic_and_leaves_the_global_rng_alone(stored_samples) -> None:
    train_dir = stored_samples / "processed" / "nsynth" / "train"
    tiny = NoteClassifierConfig(steps=3)
    state = torch.random.get_rng_state()
    first = train_note_classifier(train_dir, tiny).state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    second = train_note_classifier(train_dir, tiny).state_dict()
    other = train_note_classifier(train_dir, dataclasses.replace(tiny, seed=1)).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first)


def test_missing_dataset_says_to_prepare_it(tmp_path: Path) -> None:
    cfg = _config(tmp_path / "data", tmp_path / "runs")
    with pytest.raises(UserError, match=r"run `wavefoundry prepare -d nsynth`"):
        note_classifier(cfg)
    assert not cfg.paths.runs.exists()
