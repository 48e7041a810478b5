"""The evaluation metrics on signals whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wavefoundry.audio import MelConfig
from wavefoundry.evaluation import metrics

SR = 22050


def tone(seconds: float = 1.0, frequency: float = 220.0, seed: int = 0) -> torch.Tensor:
    """A harmonic tone with a little noise: a signal with energy across the spectrum."""
    t = torch.arange(int(seconds * SR), dtype=torch.float64) / SR
    signal = sum(0.3 / k * torch.sin(2 * math.pi * frequency * k * t) for k in range(1, 6))
    noise = torch.randn(len(t), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (signal + 0.01 * noise).float()


def test_identical_signals_give_zero_distances_and_capped_ratios() -> None:
    x = tone()
    mel = MelConfig(sample_rate=SR)
    assert metrics.log_mel_l1(x, x.clone(), mel) == 0.0
    assert metrics.mrstft_distance(x, x.clone()) == pytest.approx(0.0, abs=1e-6)
    assert metrics.snr_db(x, x.clone()) == metrics.MAX_DB
    assert metrics.si_sdr_db(x, x.clone()) == metrics.MAX_DB


def test_different_signals_give_positive_distances() -> None:
    x, y = tone(frequency=220.0), tone(frequency=330.0, seed=1)
    assert metrics.log_mel_l1(x, y, MelConfig(sample_rate=SR)) > 0.5
    assert metrics.mrstft_distance(x, y) > 0.5


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
def test_a_signal_plus_noise_at_a_set_level_gives_that_snr(snr: float) -> None:
    x = tone().double()
    noise = torch.randn(len(x), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    noise *= x.norm() / noise.norm() * 10 ** (-snr / 20)
    assert metrics.snr_db(x, x + noise) == pytest.approx(snr, abs=0.1)


@pytest.mark.parametrize("gain", [0.05, 0.5, 3.0])
def test_a_gain_change_leaves_si_sdr_unchanged_but_not_snr(gain: float) -> None:
    x = tone()
    noise = 0.05 * torch.randn(len(x), generator=torch.Generator().manual_seed(3))
    estimate = x + noise
    reference_value = metrics.si_sdr_db(x, estimate)
    assert metrics.si_sdr_db(x, gain * estimate) == pytest.approx(reference_value, abs=1e-6)
    assert abs(metrics.snr_db(x, gain * estimate) - metrics.snr_db(x, estimate)) > 0.5


def test_nan_audio_gives_nan_metrics_not_a_crash() -> None:
    x = tone()
    broken = x.clone()
    broken[100] = float("nan")
    assert math.isnan(metrics.snr_db(x, broken))
    assert math.isnan(metrics.si_sdr_db(x, broken))
    assert math.isnan(metrics.log_mel_l1(x, broken, MelConfig(sample_rate=SR)))


def test_metrics_take_the_common_length() -> None:
    x = tone()
    assert metrics.snr_db(x, x[:-100]) == metrics.MAX_DB


def test_codebook_perplexity_of_uniform_and_single_code_use() -> None:
    perplexity, usage = metrics.codebook_perplexity(torch.arange(16).repeat(10), 32)
    assert perplexity == pytest.approx(16.0) and usage == pytest.approx(0.5)
    perplexity, usage = metrics.codebook_perplexity(torch.full((50,), 3), 32)
    assert perplexity == pytest.approx(1.0) and usage == pytest.approx(1 / 32)


def test_bits_per_sample_and_real_time_factor() -> None:
    assert metrics.bits_per_sample(math.log(256)) == pytest.approx(8.0)
    assert metrics.real_time_factor(0.5, 2.0) == 0.25
    assert metrics.real_time_factor(1.0, 0.0) == math.inf


def test_frechet_distance_of_known_gaussians() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    # Same covariance, mean moved by (2, 0, 0): the distance is |shift|^2 = 4.
    assert metrics.frechet_distance(a, a + np.array([2.0, 0, 0])) == pytest.approx(4.0, abs=1e-6)
    # Unit vs doubled standard deviation in 3 dims: 3 * (1 + 4 - 2 * 2) = 3.
    b = rng.normal(size=(4000, 3)) * 2.0
    assert metrics.frechet_distance(a, b) == pytest.approx(3.0, rel=0.1)
    assert math.isnan(metrics.frechet_distance(a, np.full((10, 3), np.nan)))


def test_every_metric_says_which_way_is_better() -> None:
    assert not metrics.METRICS["mel_l1"].higher_is_better
    assert metrics.METRICS["si_sdr_db"].higher_is_better
    assert metrics.METRICS["pitch_accuracy"].higher_is_better
    assert not metrics.METRICS["frechet_distance"].higher_is_better


def test_scores_print_to_four_significant_digits_beside_griffin_lim_s():
    from rich.console import Console

    from wavefoundry.cli.common import metric_table
    from wavefoundry.evaluation.metrics import metric_line

    scores = {"mel_l1": 0.33241234567, "pesq": 2.7381234567, "f0_rmse": None}
    assert metric_line(scores) == "mel_l1 0.3324, pesq 2.738, f0_rmse -"
    console = Console(record=True, width=100)
    console.print(
        metric_table(
            "t", {"mel_l1": 0.3324123, "pesq": 2.73812}, beside=("griffin_lim", {"pesq": 2.79251})
        )
    )
    text = console.export_text()
    assert "griffin_lim" in text and "2.793" in text and "0.3324" in text
    assert "0.3324123" not in text
