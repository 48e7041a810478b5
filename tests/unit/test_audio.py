import numpy as np
import pytest
import soundfile as sf
import torch

from wavefoundry.audio import (
    MelConfig,
    log_mel,
    mu_law_decode,
    mu_law_encode,
    read_audio,
    resampled_length,
    write_wav,
)


def sine(freq, sr, seconds, amplitude=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def slaney_mel(hz):
    """Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above."""
    if hz < 1000:
        return hz * 3 / 200
    return 15 + np.log(hz / 1000) / (np.log(6.4) / 27)


def dominant_frequency(audio, sr):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return np.fft.rfftfreq(len(audio), 1 / sr)[spectrum.argmax()]


def test_write_then_read_is_16_bit_exact(tmp_path):
    audio = sine(440, 22050, 0.5)
    path = write_wav(tmp_path / "a.wav", audio, 22050)
    assert sf.info(str(path)).subtype == "PCM_16"
    back, sr = read_audio(path)
    assert sr == 22050
    assert np.max(np.abs(back - audio)) <= 1 / 32768 + 1e-6


def test_read_downmixes_stereo_and_resamples(tmp_path):
    left = sine(1000, 48000, 1.0)
    sf.write(str(tmp_path / "s.flac"), np.stack([left, left], axis=1), 48000, subtype="PCM_16")
    audio, sr = read_audio(tmp_path / "s.flac", target_sr=22050)
    assert sr == 22050
    assert audio.ndim == 1 and audio.dtype == np.float32
    assert len(audio) == resampled_length(48000, 48000, 22050) == 22050
    assert dominant_frequency(audio, sr) == pytest.approx(1000, abs=2)


def test_write_clips_instead_of_wrapping(tmp_path):
    write_wav(tmp_path / "loud.wav", np.array([2.0, -2.0, 0.5], dtype=np.float32), 16000)
    back, _ = read_audio(tmp_path / "loud.wav")
    assert back[0] > 0.99 and back[1] < -0.99


def test_mu_law_round_trip_and_range():
    x = torch.linspace(-1, 1, 10001)
    classes = mu_law_encode(x)
    assert classes.min() == 0 and classes.max() == 255
    assert torch.all(classes[1:] >= classes[:-1])
    # 8-bit mu-law: the error is small near zero and grows with the level.
    err = (mu_law_decode(classes) - x).abs()
    assert err[x.abs() < 0.01].max() < 0.001
    assert err.max() < 0.04


def test_log_mel_has_hifigan_frames_and_puts_a_tone_in_the_right_band():
    cfg = MelConfig()
    frames = 40
    mel = log_mel(sine(1000, cfg.sample_rate, frames * cfg.hop_length / cfg.sample_rate), cfg)
    assert mel.shape == (80, frames)
    quiet = log_mel(np.zeros(frames * cfg.hop_length, dtype=np.float32), cfg)
    assert torch.allclose(quiet, torch.full_like(quiet, np.log(cfg.log_floor)))
    # The strongest band of a 1 kHz tone is the one whose slaney-mel centre is nearest 1 kHz.
    centres = np.linspace(0, slaney_mel(cfg.f_max), cfg.n_mels + 2)[1:-1]
    expected = int(np.abs(centres - slaney_mel(1000)).argmin())
    assert abs(int(mel.mean(dim=1).argmax()) - expected) <= 1
    batch = log_mel(torch.zeros(3, frames * cfg.hop_length), cfg)
    assert batch.shape == (3, 80, frames)
