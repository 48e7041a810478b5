"""Audio basics: read and write with soundfile, resample (libsoxr), mu-law, log-mel.

Files are read with soundfile, never torchaudio.load (that needs FFmpeg through torchcodec).
torch is imported only by the functions that need it, so data stages start fast.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import soundfile as sf

if TYPE_CHECKING:
    import torch


def read_audio(path: str | Path, target_sr: int | None = None) -> tuple[np.ndarray, int]:
    """A file as float32 mono in [-1, 1], resampled to `target_sr` when given."""
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    mono = audio.mean(axis=1) if audio.shape[1] > 1 else audio[:, 0]
    if target_sr is not None and target_sr != sr:
        mono = resample(mono, sr, target_sr)
        sr = target_sr
    return np.ascontiguousarray(mono, dtype=np.float32), sr


def write_wav(path: str | Path, audio: np.ndarray, sample_rate: int) -> Path:
    """Write 16-bit PCM WAV; samples outside [-1, 1] are clipped, not wrapped."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = np.clip(np.asarray(audio, dtype=np.float32), -1.0, 1.0)
    sf.write(str(path), samples, sample_rate, subtype="PCM_16", format="WAV")
    return path


def resampled_length(frames: int, orig_sr: int, target_sr: int) -> int:
    """The length `resample` returns for `frames` input samples: frames * target_sr / orig_sr,
    rounded half up (libsoxr's one-shot length), computed exactly in integers."""
    return (2 * frames * target_sr + orig_sr) // (2 * orig_sr)


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """(samples,) float32 at `orig_sr` Hz to (resampled_length(samples, ...),) at `target_sr` Hz.

    Band-limited resampling with libsoxr (the SoX resampler, "HQ": 20-bit precision, passband
    to 91% of the lower Nyquist frequency, linear phase). Its filters do not depend on the
    rates' greatest common divisor, so time and memory are linear in the input and output
    lengths for any pair of rates (8,009 Hz to 22,050 Hz costs what 8,000 Hz does). Raises
    ValueError for a rate that is not a positive number.
    """
    import soxr

    if orig_sr <= 0 or target_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} Hz and {target_sr} Hz")
    if orig_sr == target_sr:
        return audio
    return soxr.resample(np.ascontiguousarray(audio, dtype=np.float32), orig_sr, target_sr)


# --- mu-law companding (WaveNet, section 2.2) ------------------------------------------------


def mu_law_encode(audio: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Float audio in [-1, 1] to integer classes 0 .. quantization_channels - 1."""
    import torch

    mu = quantization_channels - 1
    x = audio.clamp(-1.0, 1.0)
    companded = torch.sign(x) * torch.log1p(mu * x.abs()) / math.log1p(mu)
    return ((companded + 1) / 2 * mu + 0.5).long()


def mu_law_decode(classes: torch.Tensor, quantization_channels: int = 256) -> torch.Tensor:
    """Integer classes back to float audio in [-1, 1]."""
    import torch

    mu = quantization_channels - 1
    companded = 2 * classes.float() / mu - 1
    return torch.sign(companded) * (torch.pow(1 + mu, companded.abs()) - 1) / mu


# --- linear quantisation (SampleRNN, section 3) ----------------------------------------------


def linear_quantize(audio: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Float audio in [-1, 1] to integer classes 0 .. levels - 1, evenly spaced."""
    x = audio.clamp(-1.0, 1.0)
    return ((x + 1) / 2 * (levels - 1) + 0.5).long()


def linear_dequantize(classes: torch.Tensor, levels: int = 256) -> torch.Tensor:
    """Integer classes back to float audio in [-1, 1]."""
    return 2 * classes.float() / (levels - 1) - 1


# --- log-mel spectrogram (HiFi-GAN's front end) -----------------------------------------------


@dataclass(frozen=True)
class MelConfig:
    """HiFi-GAN's defaults: 22,050 Hz, n_fft 1024, hop 256, window 1024, 80 mels up to 8 kHz."""

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    win_length: int = 1024
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = 8000.0
    log_floor: float = 1e-5


@functools.lru_cache(maxsize=16)
def _mel_transform(cfg: MelConfig):
    import torchaudio.transforms as T

    return T.MelSpectrogram(
        sample_rate=cfg.sample_rate,
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        f_min=cfg.f_min,
        f_max=cfg.f_max,
        n_mels=cfg.n_mels,
        power=1.0,  # magnitude, as HiFi-GAN
        center=False,
        norm="slaney",
        mel_scale="slaney",
    )


def log_mel(audio: torch.Tensor | np.ndarray, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """(..., samples) to (..., n_mels, samples // hop) natural-log magnitude mel frames.

    Like HiFi-GAN, the signal is reflect-padded by (n_fft - hop) / 2 on each side and the STFT
    is not centred, so a clip of N * hop samples gives exactly N frames.
    """
    import torch
    import torch.nn.functional as F

    x = torch.as_tensor(audio, dtype=torch.float32)
    squeeze = x.dim() == 1
    if squeeze:
        x = x.unsqueeze(0)
    pad = (cfg.n_fft - cfg.hop_length) // 2
    x = F.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
    transform = _mel_transform(cfg).to(x.device)
    mel = torch.log(torch.clamp(transform(x), min=cfg.log_floor))
    return mel[0] if squeeze else mel


@functools.lru_cache(maxsize=16)
def _griffin_lim_transforms(cfg: MelConfig, n_iter: int):
    import torch
    import torchaudio.functional as AF
    import torchaudio.transforms as T

    filterbank = AF.melscale_fbanks(
        cfg.n_fft // 2 + 1, cfg.f_min, cfg.f_max or cfg.sample_rate / 2, cfg.n_mels,
        cfg.sample_rate, norm="slaney", mel_scale="slaney",
    )  # fmt: skip
    inverse = torch.linalg.pinv(filterbank.T)  # (n_freqs, n_mels)
    griffin_lim = T.GriffinLim(
        n_fft=cfg.n_fft,
        win_length=cfg.win_length,
        hop_length=cfg.hop_length,
        power=1.0,
        n_iter=n_iter,
        rand_init=False,
    )
    return inverse, griffin_lim


def griffin_lim(mel: torch.Tensor, cfg: MelConfig = MelConfig(), n_iter: int = 32) -> torch.Tensor:
    """(n_mels, frames) `log_mel` frames back to (frames * hop,) audio in [-1, 1]: the mel
    filterbank inverted by its pseudo-inverse (the least-squares, least-norm magnitudes), then
    Griffin-Lim's phase (Griffin & Lim 1984) from a zero-phase start, so the same mel always
    gives the same audio. log_mel's frame t is centred on sample t * hop + hop / 2 and
    torchaudio's GriffinLim's on t * hop, so the output is delayed by half a hop to line up with
    the audio the mel came from. The floor any learned vocoder must beat
    (evaluation/baseline.py)."""
    import torch.nn.functional as F

    inverse, phase = _griffin_lim_transforms(cfg, n_iter)
    frames, hop = mel.shape[-1], cfg.hop_length
    # The STFT's centre padding needs more than n_fft / 2 samples: silence after a short mel.
    short = max(0, cfg.n_fft // hop + 1 - frames)
    mel = F.pad(mel.detach().float().cpu(), (0, short), value=math.log(cfg.log_floor))
    magnitude = (inverse @ mel.exp()).clamp(min=0.0)
    audio = F.pad(phase(magnitude), (hop // 2, 0))[: frames * hop]
    return F.pad(audio, (0, frames * hop - len(audio))).clamp(-1.0, 1.0)


def whole_frame_log_mel(audio: torch.Tensor, cfg: MelConfig = MelConfig()) -> torch.Tensor:
    """log_mel of 1-D `audio` zero-padded at the end to whole hops, and to more samples than
    the reflect padding of (n_fft - hop) / 2 needs: (n_mels, ceil(len / hop)) frames, what a
    vocoder resynthesizes a clip of any length from (its output then cut back to len)."""
    import torch.nn.functional as F

    hop = cfg.hop_length
    min_frames = ((cfg.n_fft - hop) // 2) // hop + 1
    frames = max(-(-len(audio) // hop), min_frames)
    return log_mel(F.pad(audio.float(), (0, frames * hop - len(audio))), cfg)
