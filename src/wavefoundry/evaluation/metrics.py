"""Metrics that need no downloaded weights, on one reference/generated pair or a set of embeddings.

Every function returns a plain float, so a score is a dict a registry tag or an MLflow metric
can hold. `METRICS` says which way is better for each reported name; the promotion gate reads
it. SNR and SI-SDR of identical signals are capped at `MAX_DB` rather than infinite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from wavefoundry.audio import MelConfig, log_mel
from wavefoundry.models.losses import multi_resolution_stft_loss

MAX_DB = 100.0  # SNR / SI-SDR of a perfect reconstruction: finite, so every store can hold it


@dataclass(frozen=True)
class Metric:
    name: str
    higher_is_better: bool
    description: str


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("mel_l1", False, "mean |log-mel difference| (what HiFi-GAN selects by)"),
        Metric("mrstft", False, "spectral convergence + log magnitude, FFT 512/1024/2048"),
        Metric("snr_db", True, "signal-to-noise ratio of the reconstruction, dB"),
        Metric("si_sdr_db", True, "scale-invariant signal-to-distortion ratio, dB"),
        Metric("bits_per_sample", False, "teacher-forced NLL on held-out audio, bits"),
        Metric("bits_per_code", False, "a code prior's cross-entropy of held-out codes, bits"),
        Metric("perplexity", True, "exp(entropy) of the codes used on held-out audio"),
        Metric("codebook_usage", True, "fraction of the codebook used on held-out audio"),
        Metric("latent_kbps", False, "VAE: KL of the latent to its prior, kbit per second"),
        Metric(
            "rtf",
            False,
            "seconds of compute per second of audio: the process's CPU seconds when scored on a "
            "CPU (load elsewhere does not inflate them), wall seconds on a GPU",
        ),
        Metric("rtf_wall", False, "wall-clock seconds per second of audio, as scored"),
        Metric("pitch_accuracy", True, "generated notes recognised at their requested pitch"),
        Metric("frechet_distance", False, "Fréchet distance of classifier embeddings"),
        # The offline judges (evaluation/judges.py runs their packages).
        Metric("pesq", True, "wide-band PESQ MOS-LQO at 16 kHz, 1.04-4.64 (package pesq)"),
        Metric("stoi", True, "short-time objective intelligibility, 0-1 (package pystoi)"),
        Metric("estoi", True, "extended STOI, 0-1 (package pystoi)"),
        Metric("voicing_error", False, "fraction of frames voiced in only one (WORLD)"),
        Metric("dnsmos_ovrl", True, "DNSMOS P.835 overall, 1-5, output only (speechmos)"),
        Metric("dnsmos_sig", True, "DNSMOS P.835 speech signal, 1-5 (speechmos)"),
        Metric("dnsmos_bak", True, "DNSMOS P.835 background, 1-5 (speechmos)"),
        Metric("mcd_dtw", False, "mel-cepstral distortion c1-c24 after DTW, dB (WORLD)"),
        Metric("f0_rmse_cents", False, "F0 RMSE over frames voiced in both, after DTW, cents"),
        Metric("duration_ratio", False, "|log(generated / reference duration)|, 0 is exact"),
        Metric("attention_focus", True, "mean of each decoder step's largest attention weight"),
        Metric("attention_diagonality", True, "attention mass near the diagonal (g = 0.2)"),
        Metric("decoder_limit_share", False, "share of sentences that hit max_decoder_steps"),
        Metric(
            "classifier_pitch_accuracy",
            True,
            "the note classifier's own accuracy on held-out notes: how far to trust the above",
        ),
    )
}


def _pair(reference: torch.Tensor, generated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two 1-D float64 signals cut to the shorter one (a vocoder may drop a partial frame)."""
    reference = torch.as_tensor(reference).detach().flatten().cpu().double()
    generated = torch.as_tensor(generated).detach().flatten().cpu().double()
    length = min(reference.numel(), generated.numel())
    return reference[:length], generated[:length]


def log_mel_l1(reference: torch.Tensor, generated: torch.Tensor, mel: MelConfig) -> float:
    reference, generated = _pair(reference, generated)
    return (log_mel(generated.float(), mel) - log_mel(reference.float(), mel)).abs().mean().item()


def mrstft_distance(reference: torch.Tensor, generated: torch.Tensor) -> float:
    """Multi-resolution STFT distance: spectral convergence + log STFT magnitude L1, each
    averaged over FFT sizes 512, 1024 and 2048 (models/losses.py)."""
    reference, generated = _pair(reference, generated)
    convergence, magnitude = multi_resolution_stft_loss(
        generated.float().unsqueeze(0), reference.float().unsqueeze(0)
    )
    return (convergence + magnitude).item()


def _ratio_db(signal: torch.Tensor, noise: torch.Tensor) -> float:
    signal_power, noise_power = signal.pow(2).sum().item(), noise.pow(2).sum().item()
    if not (math.isfinite(signal_power) and math.isfinite(noise_power)):
        return math.nan
    if noise_power <= signal_power * 10 ** (-MAX_DB / 10):
        return MAX_DB
    if signal_power == 0.0:
        return -MAX_DB
    return min(MAX_DB, 10 * math.log10(signal_power / noise_power))


def snr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """10 log10(|reference|^2 / |reference - estimate|^2), capped at MAX_DB."""
    reference, estimate = _pair(reference, estimate)
    return _ratio_db(reference, reference - estimate)


def si_sdr_db(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """Scale-invariant SDR (Le Roux et al. 2019): the estimate is split into its projection on
    the zero-mean reference (the target) and the rest; a gain on the estimate changes neither."""
    reference, estimate = _pair(reference, estimate)
    reference, estimate = reference - reference.mean(), estimate - estimate.mean()
    energy = reference.pow(2).sum()
    if energy == 0:
        return math.nan
    target = (estimate @ reference) / energy * reference
    return _ratio_db(target, estimate - target)


def bits_per_sample(nll_nats: float) -> float:
    return nll_nats / math.log(2)


def codebook_perplexity(codes: torch.Tensor, codebook_size: int) -> tuple[float, float]:
    """(perplexity, usage) of a set of code indices: exp(entropy) of their distribution, and
    the fraction of the codebook that appears."""
    counts = torch.bincount(codes.flatten().long(), minlength=codebook_size).double()
    probabilities = counts / counts.sum()
    entropy = -(probabilities[counts > 0] * probabilities[counts > 0].log()).sum()
    return math.exp(entropy.item()), (counts > 0).double().mean().item()


def real_time_factor(compute_seconds: float, audio_seconds: float) -> float:
    """Seconds of compute per second of audio made: below 1 is faster than real time."""
    return compute_seconds / audio_seconds if audio_seconds > 0 else math.inf


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^1/2) of Gaussians fitted to two sets of
    embeddings (rows). Tr((C_a C_b)^1/2) is taken as the sum of the square roots of the
    eigenvalues of C_a^1/2 C_b C_a^1/2, which is symmetric: stable without scipy's sqrtm."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan
    mean_gap = a.mean(axis=0) - b.mean(axis=0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(cross, 0, None)).sum()
    distance = mean_gap @ mean_gap + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def attention_focus_rate(alignment: torch.Tensor) -> float:
    """(decoder steps, characters) attention weights -> the mean over steps of each step's
    largest weight (the "focus rate" of FastSpeech, Ren et al. 2019): 1 when every step looks
    at one character, 1/characters when attention is spread evenly."""
    return alignment.detach().double().max(dim=-1).values.mean().item()


def attention_diagonality(alignment: torch.Tensor, sigma: float = 0.2) -> float:
    """Attention mass near the diagonal: mean over steps t < T of sum_n A[t, n] *
    exp(-(n/N - t/T)^2 / (2 sigma^2)), Tachibana et al. 2017's guide turned into a score in
    [0, 1]; 1 when attention walks the text at an even pace."""
    a = alignment.detach().double()
    steps, chars = a.shape
    t = torch.arange(steps, dtype=torch.float64)[:, None] / steps
    n = torch.arange(chars, dtype=torch.float64)[None, :] / chars
    return (a * torch.exp(-((n - t) ** 2) / (2 * sigma**2))).sum(-1).mean().item()


def attention_is_monotonic(alignment: torch.Tensor, slack: float = 1.0, reach: float = 0.9) -> bool:
    """Whether attention walks the text forwards: its centre (the weighted mean character
    position of each decoder step) never steps back by more than `slack` characters, starts in
    the first tenth of the text and ends past `reach` of it. The centre rather than the peak,
    so two neighbouring characters sharing a step's weight do not count as a step back."""
    a = alignment.detach().double()
    chars = a.shape[-1]
    centre = (a * torch.arange(chars, dtype=torch.float64)).sum(-1) / a.sum(-1).clamp(min=1e-12)
    backwards = (centre[:-1] - centre[1:]).max().item() if len(centre) > 1 else 0.0
    return bool(
        backwards <= slack
        and centre[0].item() <= max(1.0, chars / 10)
        and centre[-1].item() >= reach * (chars - 1)
    )


FRAME_PERIOD_MS = 5.0  # WORLD analysis frames for MCD and F0
MEL_CEPSTRUM_ORDER = 24  # c1 .. c24; c0 (the frame's energy) is left out of MCD


def _world_features(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """(F0 in Hz per 5 ms frame, 0 where unvoiced; mel-cepstra (frames, 1 + order)) from
    WORLD (Morise 2016): DIO + StoneMask for F0, CheapTrick's envelope as a mel-cepstrum."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pyworld imports pkg_resources, which warns
        import pyworld

    audio = np.ascontiguousarray(np.nan_to_num(audio), dtype=np.float64)
    f0, times = pyworld.dio(audio, sample_rate, frame_period=FRAME_PERIOD_MS)
    f0 = pyworld.stonemask(audio, f0, times, sample_rate)
    envelope = pyworld.cheaptrick(audio, f0, times, sample_rate)
    return f0, pyworld.code_spectral_envelope(envelope, sample_rate, MEL_CEPSTRUM_ORDER + 1)


def dtw_speech_scores(reference: np.ndarray, generated: np.ndarray, sample_rate: int) -> dict:
    """Speech that is not sample-aligned with its reference (text-to-speech) compared after
    dynamic time warping of the two mel-cepstra (Euclidean, librosa.sequence.dtw):

    - mcd_dtw: mel-cepstral distortion (Kubichek 1993), (10 / ln 10) sqrt(2 sum_d (c_d -
      c'_d)^2) over c1 .. c24, dB, averaged over the path; 0 for identical signals.
    - f0_rmse_cents: RMS of 1200 log2(F0_gen / F0_ref) over path frames voiced in both (NaN
      when none are).
    - duration_ratio: |ln(len(generated) / len(reference))|.
    """
    from librosa.sequence import dtw

    f0_ref, mc_ref = _world_features(reference, sample_rate)
    f0_gen, mc_gen = _world_features(generated, sample_rate)
    _, path = dtw(X=mc_ref[:, 1:].T, Y=mc_gen[:, 1:].T, metric="euclidean")
    i, j = path[::-1, 0], path[::-1, 1]
    per_frame = (10.0 / math.log(10.0)) * np.sqrt(
        2.0 * ((mc_ref[i, 1:] - mc_gen[j, 1:]) ** 2).sum(1)
    )
    voiced = (f0_ref[i] > 0) & (f0_gen[j] > 0)
    cents = 1200.0 * np.log2(f0_gen[j][voiced] / f0_ref[i][voiced])
    return {
        "mcd_dtw": float(per_frame.mean()),
        "f0_rmse_cents": float(np.sqrt((cents**2).mean())) if voiced.any() else math.nan,
        "duration_ratio": abs(math.log(max(len(generated), 1) / max(len(reference), 1))),
    }


def metric_text(value: float | None) -> str:
    """A score as shown to a user: 4 significant digits; None (not computed) as `-`."""
    return "-" if value is None else f"{value:.4g}"


def metric_line(metrics: dict[str, float | None]) -> str:
    """`mel_l1 0.3324, pesq 2.738, ...`: each score as `metric_text` shows it, on one line."""
    return ", ".join(f"{k} {metric_text(v)}" for k, v in metrics.items())
