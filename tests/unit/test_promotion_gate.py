"""The promotion gate's decision table, on candidates with chosen scores."""

from __future__ import annotations

import pytest

from wavefoundry.config import PromotionConfig
from wavefoundry.errors import UserError
from wavefoundry.registry.candidates import Candidate, score_tags
from wavefoundry.registry.promotion import gate, relative_gain

RULES = PromotionConfig(
    min_relative_improvement=0.02, max_real_time_factor=1.0, secondary_tolerance=0.05
)


def vocoder(version: str, mel_l1: float, mrstft: float = 3.0, rtf: float = 0.1) -> Candidate:
    tags = {"family": "hifigan", "task": "vocoder"}
    tags.update(score_tags({"mel_l1": mel_l1, "mrstft": mrstft, "rtf": rtf}, "set", "data"))
    return Candidate("wavefoundry-ljspeech-vocoder", version, f"run{version}", "models:/m", tags)


def failed(decision) -> list[str]:
    return [check.name for check in decision.checks if not check.passed]


def test_the_first_candidate_with_finite_scores_passes() -> None:
    decision = gate(vocoder("1", 2.0), None, RULES)
    assert decision.passed and not failed(decision)


def test_a_clearly_better_challenger_passes() -> None:
    assert gate(vocoder("2", 1.9), vocoder("1", 2.0), RULES).passed


def test_a_challenger_better_by_less_than_the_minimum_is_refused() -> None:
    decision = gate(vocoder("2", 1.99), vocoder("1", 2.0), RULES)
    assert failed(decision) == ["primary mel_l1"]


def test_a_worse_challenger_is_refused() -> None:
    assert failed(gate(vocoder("2", 2.5), vocoder("1", 2.0), RULES)) == ["primary mel_l1"]


def test_a_non_finite_metric_is_refused_whatever_else() -> None:
    decision = gate(vocoder("2", float("nan")), vocoder("1", 2.0), RULES)
    assert "finite metrics" in failed(decision)
    assert any("mel_l1" in reason for reason in decision.reasons)
    assert not gate(vocoder("2", 1.0, mrstft=float("inf")), None, RULES).passed


def test_too_slow_for_real_time_is_refused() -> None:
    assert failed(gate(vocoder("2", 1.0, rtf=1.5), vocoder("1", 2.0), RULES)) == [
        "real-time factor"
    ]


def test_a_secondary_metric_may_slip_only_within_tolerance() -> None:
    champion = vocoder("1", 2.0, mrstft=3.0)
    assert gate(vocoder("2", 1.8, mrstft=3.1), champion, RULES).passed  # 3.3 % worse
    decision = gate(vocoder("2", 1.8, mrstft=3.3), champion, RULES)  # 10 % worse
    assert failed(decision) == ["secondary mrstft"]


def test_the_champion_cannot_challenge_itself() -> None:
    assert not gate(vocoder("1", 2.0), vocoder("1", 2.0), RULES).passed


def test_higher_is_better_metrics_count_the_other_way() -> None:
    assert relative_gain(0.9, 0.8, higher_is_better=True) == pytest.approx(0.125)
    assert relative_gain(-10.0, -12.0, higher_is_better=True) == pytest.approx(1 / 6)
    assert relative_gain(1.8, 2.0, higher_is_better=False) == pytest.approx(0.1)


def test_rules_naming_an_unknown_metric_are_one_clear_error() -> None:
    rules = PromotionConfig.model_validate(
        {"tasks": {"vocoder": {"primary": "mel_l2", "secondary": []}}}
    )
    with pytest.raises(UserError, match="unknown metric 'mel_l2'"):
        gate(vocoder("1", 2.0), None, rules)
