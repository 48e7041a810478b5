"""Offline quality judges: scores a listener would trust, each from a well-kept package, none
downloading anything at run time. What each score means (its name, which way is better) is
in metrics.METRICS; this module only runs the packages.

| judge    | package                    | scores                                  | needs              |
|----------|----------------------------|-----------------------------------------|--------------------|
| `pesq`   | pesq (ITU-T P.862.2)       | pesq: wide-band MOS-LQO, 1.04 .. 4.64   | reference, 16 kHz  |
| `stoi`   | pystoi (Taal 2011, Jensen 2016) | stoi, estoi: 0 .. 1                | reference, 10 kHz  |
| `mcd`    | pyworld + librosa DTW      | mcd_dtw: mel-cepstral distortion, dB    | reference          |
| `f0`     | pyworld (DIO + StoneMask)  | f0_rmse_cents, voicing_error            | reference          |
| `dnsmos` | speechmos (ONNX in the wheel) | dnsmos_ovrl, dnsmos_sig, dnsmos_bak: 1 .. 5 | output only, 16 kHz |

PESQ and STOI compare sample-aligned signals (a vocoder's or codec's reconstruction). MCD and
the F0 scores align the two by dynamic time warping of their mel-cepstra first (Kubichek 1993),
so they also judge output that is not sample-aligned (text-to-speech). DNSMOS (Reddy et al.
2022) predicts a listener's opinion from the output alone: built for noise suppression, a rough
naturalness signal.

A judge that cannot run on a clip (its package missing, the clip too short) gives NaN scores
and says why in `JudgeResult.notes`; it never fails the evaluation.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wavefoundry.audio import resample

PESQ_RATE = 16000  # wide-band PESQ and DNSMOS take 16 kHz
FRAME_PERIOD_MS = 5.0  # WORLD analysis frames for MCD and F0
MEL_CEPSTRUM_ORDER = 24  # c1 .. c24 (c0, the frame energy, is left out of MCD)
MIN_PESQ_SECONDS = 0.25  # the P.862 implementation refuses anything shorter
MIN_STOI_FRAMES = 30  # pystoi's own minimum: 30 frames of 25.6 ms after silence removal


class CannotJudge(Exception):
    """A judge cannot score this clip; the message says why, in a few words."""


@dataclass(frozen=True)
class Judge:
    name: str
    package: str  # the import that must be present
    scores: tuple[str, ...]  # metric names (metrics.METRICS) it gives
    needs_reference: bool
    measure: Callable[[np.ndarray | None, np.ndarray, int], dict[str, float]]


@dataclass
class JudgeResult:
    scores: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # "pesq: clip shorter than 0.25 s", ...


def _finite(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    if not np.isfinite(audio).all():
        raise CannotJudge("non-finite output")
    return audio


def _aligned(reference: np.ndarray | None, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if reference is None:
        raise CannotJudge("no reference")
    generated = _finite(generated)
    length = min(len(reference), len(generated))
    return np.asarray(reference[:length], dtype=np.float64), generated[:length]


def _at(audio: np.ndarray, sample_rate: int, rate: int) -> np.ndarray:
    return resample(audio.astype(np.float32), sample_rate, rate).astype(np.float64)


def pesq_wb(reference: np.ndarray | None, generated: np.ndarray, sample_rate: int):
    """Wide-band PESQ (ITU-T P.862.2) MOS-LQO of `generated` against `reference`, both
    resampled to 16 kHz; 4.64 for identical signals."""
    from pesq import PesqError, pesq

    reference, generated = _aligned(reference, generated)
    if len(reference) < MIN_PESQ_SECONDS * sample_rate:
        raise CannotJudge(f"clip shorter than {MIN_PESQ_SECONDS} s")
    try:
        value = pesq(
            PESQ_RATE,
            _at(reference, sample_rate, PESQ_RATE),
            _at(generated, sample_rate, PESQ_RATE),
            "wb",
        )
    except PesqError as err:  # e.g. no utterance detected in a silent reference
        raise CannotJudge(type(err).__name__) from None
    return {"pesq": float(value)}


def stoi_scores(reference: np.ndarray | None, generated: np.ndarray, sample_rate: int):
    """STOI (Taal et al. 2011) and extended STOI (Jensen and Taal 2016); pystoi resamples to
    10 kHz and drops silent frames itself; 1.0 for identical signals."""
    from pystoi import stoi

    reference, generated = _aligned(reference, generated)
    frames = len(reference) * 10000 / sample_rate / 128  # hop of 128 samples at 10 kHz
    if frames < MIN_STOI_FRAMES + 2:
        raise CannotJudge(f"clip shorter than {MIN_STOI_FRAMES} STOI frames")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pystoi warns and returns 1e-5 when too little is voiced
        try:
            return {
                "stoi": float(stoi(reference, generated, sample_rate, extended=False)),
                "estoi": float(stoi(reference, generated, sample_rate, extended=True)),
            }
        except RuntimeWarning as warning:
            raise CannotJudge(str(warning).split(".")[0]) from None


@functools.lru_cache(maxsize=1)
def _quiet_pyworld():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports pkg_resources, which warns
        import pyworld

    return pyworld


def world_features(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(f0 in Hz per 5 ms frame, 0 where unvoiced; mel-cepstra (frames, 1 + order)) from the
    WORLD analysis (Morise 2016): DIO + StoneMask for F0, CheapTrick's spectral envelope coded
    as a mel-cepstrum."""
    pyworld = _quiet_pyworld()
    audio = np.ascontiguousarray(audio, dtype=np.float64)
    f0, times = pyworld.dio(audio, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(audio, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(audio, f0, times, sample_rate)
    cepstra = pyworld.code_spectral_envelope(envelope, sample_rate, MEL_CEPSTRUM_ORDER + 1)
    return f0, cepstra


def dtw_path(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices (into a, into b) of the Euclidean DTW path between two (frames, dims)
    sequences, in time order (librosa.sequence.dtw)."""
    from librosa.sequence import dtw

    _, path = dtw(X=a.T, Y=b.T, metric="euclidean")
    path = path[::-1]
    return path[:, 0], path[:, 1]


def _world_pair(reference: np.ndarray | None, generated: np.ndarray, sample_rate: int):
    if reference is None:
        raise CannotJudge("no reference")
    generated = _finite(generated)
    shortest = min(len(reference), len(generated)) / sample_rate
    if shortest < 0.05:
        raise CannotJudge("clip shorter than 50 ms")
    f0_ref, mc_ref = world_features(np.asarray(reference), sample_rate)
    f0_gen, mc_gen = world_features(generated, sample_rate)
    i, j = dtw_path(mc_ref[:, 1:], mc_gen[:, 1:])
    return f0_ref[i], f0_gen[j], mc_ref[i, 1:], mc_gen[j, 1:]


def mcd_dtw(reference: np.ndarray | None, generated: np.ndarray, sample_rate: int):
    """Mel-cepstral distortion (Kubichek 1993), dB: (10 / ln 10) sqrt(2 sum_d (c_d - c'_d)^2)
    over c1 .. c24, averaged over the frames of the DTW path; 0 for identical signals."""
    _, _, ref, gen = _world_pair(reference, generated, sample_rate)
    per_frame = (10.0 / math.log(10.0)) * np.sqrt(2.0 * ((ref - gen) ** 2).sum(axis=1))
    return {"mcd_dtw": float(per_frame.mean())}


def f0_scores(reference: np.ndarray | None, generated: np.ndarray, sample_rate: int):
    """F0 RMSE in cents over the frames voiced in both (1200 log2 of the ratio), and the
    voicing error: the fraction of frames voiced in one but not the other; frames paired by
    the DTW path of the mel-cepstra."""
    f0_ref, f0_gen, _, _ = _world_pair(reference, generated, sample_rate)
    voiced_ref, voiced_gen = f0_ref > 0, f0_gen > 0
    both = voiced_ref & voiced_gen
    scores = {"voicing_error": float((voiced_ref != voiced_gen).mean())}
    if both.any():
        cents = 1200.0 * np.log2(f0_gen[both] / f0_ref[both])
        scores["f0_rmse_cents"] = float(np.sqrt((cents**2).mean()))
    else:
        scores["f0_rmse_cents"] = math.nan  # nothing voiced in both: no pitch to compare
    return scores


def dnsmos(reference: np.ndarray | None, generated: np.ndarray, sample_rate: int):
    """DNSMOS P.835 (Reddy et al. 2022) of `generated` alone at 16 kHz: overall, signal and
    background opinion scores, 1 .. 5, from speechmos's bundled ONNX models. It scores 9.01 s
    windows; a shorter clip is repeated to fill one, as speechmos does."""
    from speechmos import dnsmos as model

    generated = _finite(generated)
    if len(generated) < 0.1 * sample_rate:
        raise CannotJudge("clip shorter than 0.1 s")
    if not np.abs(generated).max() > 0:
        raise CannotJudge("silent output")
    # speechmos refuses samples outside [-1, 1]; resampling a full-scale clip can overshoot.
    result = model.run(np.clip(_at(generated, sample_rate, PESQ_RATE), -1.0, 1.0), PESQ_RATE)
    return {
        "dnsmos_ovrl": float(result["ovrl_mos"]),
        "dnsmos_sig": float(result["sig_mos"]),
        "dnsmos_bak": float(result["bak_mos"]),
    }


JUDGES: dict[str, Judge] = {
    j.name: j
    for j in (
        Judge("pesq", "pesq", ("pesq",), True, pesq_wb),
        Judge("stoi", "pystoi", ("stoi", "estoi"), True, stoi_scores),
        Judge("mcd", "pyworld", ("mcd_dtw",), True, mcd_dtw),
        Judge("f0", "pyworld", ("f0_rmse_cents", "voicing_error"), True, f0_scores),
        Judge("dnsmos", "speechmos", ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"), False, dnsmos),
    )
}


def unknown(names: list[str]) -> list[str]:
    return [name for name in names if name not in JUDGES]


def judge_clip(
    reference: np.ndarray | None, generated: np.ndarray, sample_rate: int, names: list[str]
) -> JudgeResult:
    """Every judge in `names` on one clip: its scores (NaN where it could not run) and one
    note per judge that could not, saying why."""
    result = JudgeResult()
    for name in names:
        judge = JUDGES[name]
        nan = dict.fromkeys(judge.scores, math.nan)
        if importlib.util.find_spec(judge.package) is None:
            result.scores.update(nan)
            result.notes.append(f"{name}: package {judge.package} not installed")
            continue
        try:
            result.scores.update({**nan, **judge.measure(reference, generated, sample_rate)})
        except CannotJudge as why:
            result.scores.update(nan)
            result.notes.append(f"{name}: {why}")
    return result
