"""The offline judges on answers known in advance: a clip against itself, against itself with
noise, time-stretched, against another sentence; a tone against the same tone a semitone up."""

from __future__ import annotations

import math

import numpy as np
import pytest

from wavefoundry.evaluation.judges import JUDGES, judge_clip, world_features
from wavefoundry.evaluation.metrics import METRICS
from wavefoundry.samples.speech import Voice, plan_utterance, render_speech

SR = 22050
VOICE = Voice(
    f0=205.0, formant_scale=1.16, open_quotient=0.62, breath=0.06, rate=1.0, accent_depth=1.0
)


def sentence(words: list[str], seed: int) -> np.ndarray:
    """A sentence from the sample corpora's formant synthesizer, 22,050 Hz."""
    rng = np.random.default_rng(seed)
    segs = plan_utterance(words, {1}, VOICE, rng, sr=SR, lead=0.1, tail=0.1)
    return render_speech(segs, VOICE, SR, rng, peak_dbfs=-3.0).astype(np.float32)


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return sentence(["the", "old", "printer", "made", "a", "book"], seed=0)


@pytest.fixture(scope="module")
def other() -> np.ndarray:
    return sentence(["seven", "quiet", "voices", "sang", "in", "rooms"], seed=1)


def noisy(clip: np.ndarray, snr_db: float) -> np.ndarray:
    noise = np.random.default_rng(0).standard_normal(len(clip))
    noise *= math.sqrt((clip**2).mean() / (noise**2).mean() / 10 ** (snr_db / 10))
    return (clip + noise).astype(np.float32)


def test_every_score_a_judge_gives_is_a_defined_metric() -> None:
    for judge in JUDGES.values():
        for name in judge.scores:
            assert name in METRICS, f"{judge.name} gives {name}, which metrics.METRICS lacks"


def test_pesq_and_stoi_peak_on_the_clip_itself_and_fall_as_noise_rises(
    speech: np.ndarray,
) -> None:
    scores = [judge_clip(speech, speech, SR, ["pesq", "stoi"])]
    scores += [
        judge_clip(speech, noisy(speech, snr), SR, ["pesq", "stoi"]) for snr in (30, 20, 10, 0)
    ]
    assert all(not result.notes for result in scores)
    for name, maximum in (("pesq", 4.64), ("stoi", 1.0), ("estoi", 1.0)):
        values = [result.scores[name] for result in scores]
        assert values[0] == pytest.approx(maximum, abs=0.01), (name, values)
        assert all(a > b for a, b in zip(values, values[1:], strict=False)), (name, values)
    assert scores[-1].scores["pesq"] < 1.5  # 0 dB of white noise: bad, by any listener


def test_mcd_with_dtw_forgives_a_change_of_tempo_but_not_another_sentence(
    speech: np.ndarray, other: np.ndarray
) -> None:
    import pyworld

    f0, envelope, aperiodicity = pyworld.wav2world(speech.astype(np.float64), SR)
    stretched = pyworld.synthesize(f0, envelope, aperiodicity, SR, frame_period=5.0 * 1.15)
    assert len(stretched) > 1.1 * len(speech)  # 15 % slower, same pitch and spectrum
    itself = judge_clip(speech, speech, SR, ["mcd"]).scores["mcd_dtw"]
    tempo = judge_clip(speech, stretched, SR, ["mcd"]).scores["mcd_dtw"]
    another = judge_clip(speech, other, SR, ["mcd"]).scores["mcd_dtw"]
    assert itself == pytest.approx(0.0, abs=1e-9)
    assert tempo < 0.6 * another, (tempo, another)


def test_f0_rmse_of_a_tone_against_a_semitone_up_is_100_cents() -> None:
    t = np.arange(SR) / SR
    tone = 0.5 * np.sin(2 * np.pi * 220.0 * t)
    up = 0.5 * np.sin(2 * np.pi * 220.0 * 2 ** (1 / 12) * t)
    f0, _ = world_features(tone, SR)
    assert np.median(f0[f0 > 0]) == pytest.approx(220.0, rel=0.01)
    scores = judge_clip(tone, up, SR, ["f0"]).scores
    assert scores["f0_rmse_cents"] == pytest.approx(100.0, abs=5.0)
    assert scores["voicing_error"] < 0.05
    assert judge_clip(tone, tone, SR, ["f0"]).scores["f0_rmse_cents"] == 0.0


def test_dnsmos_prefers_clean_speech_to_speech_in_noise(speech: np.ndarray) -> None:
    clean = judge_clip(None, speech, SR, ["dnsmos"]).scores
    drowned = judge_clip(None, noisy(speech, 0), SR, ["dnsmos"]).scores
    assert 1.0 <= drowned["dnsmos_ovrl"] < clean["dnsmos_ovrl"] <= 5.0
    assert drowned["dnsmos_bak"] < clean["dnsmos_bak"]


def test_a_judge_that_cannot_run_says_why_instead_of_failing(speech: np.ndarray) -> None:
    short = speech[: SR // 20]  # 45 ms
    result = judge_clip(short, short, SR, list(JUDGES))
    assert math.isnan(result.scores["pesq"]) and math.isnan(result.scores["stoi"])
    assert "pesq: clip shorter than 0.25 s" in result.notes
    assert any(note.startswith("stoi: clip shorter") for note in result.notes)
    broken = judge_clip(speech, np.full_like(speech, np.nan), SR, ["pesq"])
    assert broken.notes == ["pesq: non-finite output"]
