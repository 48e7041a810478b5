"""The held-out set and the scorer, for every family, on the stored sample corpora."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from wavefoundry.config import Config, load_config, model_config
from wavefoundry.data.stored import stored_dataset
from wavefoundry.errors import UserError
from wavefoundry.evaluation.judges import JUDGES
from wavefoundry.evaluation.note_classifier import NoteClassifierConfig, train_note_classifier
from wavefoundry.evaluation.scorer import held_out_set, score
from wavefoundry.families.registry import get_family

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def configure(stored_samples: Path, tmp_path: Path, *overrides: str) -> Config:
    return load_config(
        REPO / "params.yaml",
        overrides=[f"paths.data={stored_samples}", f"paths.runs={tmp_path}", *overrides],
    )


def untrained(cfg: Config, model: str, dataset: str):
    family_class = get_family(model)
    spec, _ = stored_dataset(cfg, dataset)
    torch.manual_seed(0)
    family = family_class(model_config(cfg, model, family_class.config_class), spec)
    return family, family.for_inference(family.build()[family.inference_net]).eval()


def test_the_held_out_set_is_fixed_by_data_and_settings(
    stored_samples: Path, tmp_path: Path
) -> None:
    cfg = configure(stored_samples, tmp_path, "evaluation.split=valid", "evaluation.clips=3")
    first, again = held_out_set(cfg, "ljspeech"), held_out_set(cfg, "ljspeech")
    assert [c.clip_id for c in first.clips] == [c.clip_id for c in again.clips]
    assert first.fingerprint == again.fingerprint and len(first.clips) == 3
    assert all(len(c.audio) <= cfg.evaluation.max_seconds * first.sample_rate for c in first.clips)

    others = {
        tuple(
            c.clip_id
            for c in held_out_set(
                configure(
                    stored_samples,
                    tmp_path,
                    "evaluation.split=valid",
                    "evaluation.clips=3",
                    f"evaluation.seed={seed}",
                ),
                "ljspeech",
            ).clips
        )
        for seed in range(1, 6)
    }
    assert len(others | {tuple(c.clip_id for c in first.clips)}) > 1  # the seed picks the clips
    shorter = held_out_set(
        configure(
            stored_samples,
            tmp_path,
            "evaluation.split=valid",
            "evaluation.clips=3",
            "evaluation.max_seconds=0.25",
        ),
        "ljspeech",
    )
    assert shorter.fingerprint != first.fingerprint
    assert dataclasses.replace(first, data_version="other").fingerprint != first.fingerprint


@pytest.mark.parametrize(
    ("model", "dataset", "expected"),
    [
        ("hifigan", "ljspeech", {"mel_l1", "mrstft", "snr_db", "si_sdr_db", "rtf", "rtf_wall"}),
        (
            "wavenet",
            "ljspeech",
            {"mel_l1", "mrstft", "snr_db", "si_sdr_db", "rtf", "rtf_wall", "bits_per_sample"},
        ),
        (
            "vqvae",
            "vctk",
            {
                "mel_l1",
                "mrstft",
                "snr_db",
                "si_sdr_db",
                "rtf",
                "rtf_wall",
                "perplexity",
                "codebook_usage",
            },
        ),
        ("waveglow", "ljspeech", {"mel_l1", "mrstft", "snr_db", "si_sdr_db", "rtf", "rtf_wall"}),
        (
            "vae",
            "vctk",
            {"mel_l1", "mrstft", "snr_db", "si_sdr_db", "rtf", "rtf_wall", "latent_kbps"},
        ),
    ],
)
def test_every_reconstruction_family_is_scored_on_the_clips(
    stored_samples: Path, tmp_path: Path, model: str, dataset: str, expected: set[str]
) -> None:
    cfg = configure(stored_samples, tmp_path, "evaluation.clips=2", "evaluation.max_seconds=0.25")
    family, net = untrained(cfg, model, dataset)
    held_out = held_out_set(cfg, dataset)
    result = score(family, net, held_out, audio_examples=1)
    judged = {name for judge in JUDGES.values() for name in judge.scores}
    assert set(result.metrics) - judged == expected
    assert all(math.isfinite(v) for v in result.metrics.values()), result.metrics
    # Every judge's scores are in the per-clip table; 0.25 s is too short for STOI's 30
    # frames, which the table says on every clip, and the run's metrics leave out.
    assert judged <= set(result.clips.columns)
    assert all("stoi: clip shorter than 30 STOI frames" in n for n in result.clips["judge_notes"])
    assert "stoi" not in result.metrics
    # A judge's score is averaged over the clips it could score, or left out of the metrics.
    for name in judged - set(result.metrics):
        assert result.clips[name].isna().all(), name
    assert list(result.clips["clip_id"]) == [c.clip_id for c in held_out.clips]
    assert result.fingerprint == held_out.fingerprint and len(result.examples) == 1
    assert len(result.examples[0].generated) == len(held_out.clips[0].audio)
    if model == "wavenet":  # an untrained 256-way softmax: close to log2(256) = 8 bits
        assert 6.0 < result.metrics["bits_per_sample"] < 10.0
    if model == "vqvae":
        assert result.metrics["perplexity"] >= 1.0 and 0 < result.metrics["codebook_usage"] <= 1
    if model == "vae":  # an untrained posterior is not the prior: its latent carries bits
        assert result.metrics["latent_kbps"] > 0


def test_one_non_finite_clip_makes_the_metric_non_finite(
    stored_samples: Path, tmp_path: Path
) -> None:
    """Averaging must not skip a broken clip: the gate refuses what it cannot measure."""
    cfg = configure(stored_samples, tmp_path, "evaluation.split=valid", "evaluation.clips=3")
    family, net = untrained(cfg, "hifigan", "ljspeech")
    held_out = held_out_set(cfg, "ljspeech")
    broken = held_out.clips[1].audio.copy()
    broken[10] = float("nan")
    clips = (
        held_out.clips[0],
        dataclasses.replace(held_out.clips[1], audio=broken),
        *held_out.clips[2:],
    )
    result = score(family, net, dataclasses.replace(held_out, clips=clips))
    assert math.isnan(result.metrics["snr_db"]) and math.isnan(result.metrics["mel_l1"])
    assert result.clips["snr_db"].isna().sum() == 1


def test_a_generator_is_judged_by_the_note_classifier(stored_samples: Path, tmp_path: Path) -> None:
    cfg = configure(stored_samples, tmp_path, "evaluation.audio_examples=2")
    family, net = untrained(cfg, "wavegan", "nsynth")
    held_out = held_out_set(cfg, "nsynth")
    classifier = train_note_classifier(
        cfg.paths.processed("nsynth") / "train", NoteClassifierConfig(steps=10)
    )
    result = score(family, net, held_out, classifier, audio_examples=2)
    assert {"pitch_accuracy", "frechet_distance", "rtf"} <= set(result.metrics)
    assert 0.0 <= result.metrics["pitch_accuracy"] <= 1.0
    assert result.metrics["frechet_distance"] > 0.0
    assert list(result.clips["requested_pitch"]) == [c.conditions["pitch"] for c in held_out.clips]
    assert "predicted_pitch" in result.clips

    requested = configure(stored_samples, tmp_path, "evaluation.pitches=[60]")
    again = score(family, net, held_out_set(requested, "nsynth"), classifier)
    assert set(again.clips["requested_pitch"]) == {60}

    with pytest.raises(UserError, match="note classifier"):
        score(family, net, held_out)


def test_a_model_is_only_scored_on_its_own_dataset(stored_samples: Path, tmp_path: Path) -> None:
    cfg = configure(stored_samples, tmp_path, "evaluation.clips=1")
    family, net = untrained(cfg, "hifigan", "ljspeech")
    with pytest.raises(UserError, match="trained on ljspeech cannot be scored on vctk"):
        score(family, net, held_out_set(cfg, "vctk"))
