"""The promotion gate's decision table, on candidates with chosen scores."""

from __future__ import annotations

import pytest

from wavefoundry.config import PromotionConfig
from wavefoundry.errors import UserError
from wavefoundry.registry.candidates import Candidate, score_tags
from wavefoundry.registry.promotion import gate, relative_gain

# The champion-against-challenger checks; the floor has tests of its own below.
RULES = PromotionConfig(
    min_relative_improvement=0.02, max_real_time_factor=1.0, secondary_tolerance=0.05, floor=None
)
FLOORED = RULES.model_copy(update={"floor": "griffin_lim", "floor_metrics": ["mrstft", "pesq"]})
GRIFFIN_LIM = {"mel_l1": 0.16, "mrstft": 1.75, "pesq": 2.8}


def vocoder(
    version: str, mel_l1: float, mrstft: float = 3.0, rtf: float = 0.1, **more: float
) -> Candidate:
    tags = {"family": "hifigan", "task": "vocoder"}
    scores = {"mel_l1": mel_l1, "mrstft": mrstft, "rtf": rtf, **more}
    tags.update(score_tags(scores, "set", "data"))
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


def test_a_vocoder_below_the_griffin_lim_floor_is_refused_even_without_a_champion() -> None:
    decision = gate(vocoder("1", 1.8, mrstft=2.7, pesq=1.1), None, FLOORED, GRIFFIN_LIM)
    assert not decision.passed
    assert failed(decision) == ["griffin_lim floor mrstft", "griffin_lim floor pesq"]
    assert decision.reasons == [
        "below the griffin_lim floor: mrstft 2.7 against griffin_lim's 1.75",
        "below the griffin_lim floor: pesq 1.1 against griffin_lim's 2.8",
    ]


def test_beating_the_floor_on_its_metrics_is_enough_whatever_the_mel_l1() -> None:
    # mel-L1 favours Griffin-Lim, which re-creates the mel it is given: not a floor metric.
    decision = gate(vocoder("1", 0.3, mrstft=1.2, pesq=3.1), None, FLOORED, GRIFFIN_LIM)
    assert decision.passed, decision.reasons


def test_beating_the_floor_on_one_metric_of_two_is_not_enough() -> None:
    decision = gate(vocoder("1", 0.3, mrstft=1.2, pesq=2.0), None, FLOORED, GRIFFIN_LIM)
    assert failed(decision) == ["griffin_lim floor pesq"]


def test_without_the_floor_s_scores_the_gate_refuses_rather_than_guess() -> None:
    decision = gate(vocoder("1", 0.3, mrstft=1.2, pesq=3.1), None, FLOORED, None)
    assert not decision.passed
    assert all("cannot be checked" in reason for reason in decision.reasons)


def test_the_floor_turned_off_says_so_in_the_decision() -> None:
    decision = gate(vocoder("1", 1.8, mrstft=2.7), None, RULES)
    assert decision.passed
    [off] = [check for check in decision.checks if check.name == "floor"]
    assert off.challenger == "off" and "promotion.floor: null" in off.requirement


def test_the_floor_is_for_vocoders_and_codecs_only() -> None:
    generator = Candidate(
        "wavefoundry-nsynth-generator",
        "1",
        "run1",
        "models:/m",
        {
            "family": "wavegan",
            "task": "generator",
            **score_tags(
                {"frechet_distance": 3.0, "pitch_accuracy": 0.5, "rtf": 0.1}, "set", "data"
            ),
        },
    )
    decision = gate(generator, None, FLOORED, None)
    assert decision.passed and not any("floor" in c.name for c in decision.checks)


def generator(dataset: str, family: str, version: str, **scores: float) -> Candidate:
    tags = {"family": family, "task": "generator", "dataset": dataset}
    tags.update(score_tags({"rtf": 0.1, **scores}, "set", "data"))
    return Candidate(f"wavefoundry-{dataset}-generator", version, f"run{version}", "m", tags)


def test_generators_on_speech_are_judged_by_dnsmos_with_the_default_rules() -> None:
    # SampleRNN's bits per sample and the code prior's bits per code measure different things;
    # DNSMOS of the generated speech is what both report.
    samplernn = generator("vctk", "samplernn", "1", dnsmos_ovrl=1.6, bits_per_sample=6.9)
    prior = generator("vctk", "code_prior", "2", dnsmos_ovrl=1.9, bits_per_code=5.2)
    first = gate(samplernn, None, PromotionConfig())
    assert first.passed, first.reasons
    assert first.rules_key == "promotion.datasets.vctk.generator"
    assert first.primary == "dnsmos_ovrl"
    assert gate(prior, samplernn, PromotionConfig()).passed  # higher DNSMOS is better
    worse = gate(samplernn, prior, PromotionConfig())
    assert failed(worse) == ["primary dnsmos_ovrl"]
    lj = gate(generator("ljspeech", "samplernn", "1", dnsmos_ovrl=1.6), None, PromotionConfig())
    assert lj.passed and lj.rules_key == "promotion.datasets.ljspeech.generator"


def test_generators_on_nsynth_keep_the_task_s_frechet_distance() -> None:
    note = generator("nsynth", "wavegan", "1", frechet_distance=3.0, pitch_accuracy=0.5)
    decision = gate(note, None, PromotionConfig())
    assert decision.passed and decision.rules_key == "promotion.tasks.generator"
    assert [c.name for c in decision.checks if c.name.startswith(("primary", "secondary"))] == [
        "primary frechet_distance",
        "secondary pitch_accuracy",
    ]
    # The speech rules do not reach NSynth: DNSMOS alone is no score for a note generator.
    assert not gate(
        generator("nsynth", "wavegan", "1", dnsmos_ovrl=3.0), None, PromotionConfig()
    ).passed


def test_a_speech_generator_without_the_judge_s_score_is_refused_saying_why() -> None:
    decision = gate(
        generator("vctk", "samplernn", "1", bits_per_sample=6.9), None, PromotionConfig()
    )
    assert failed(decision) == ["primary dnsmos_ovrl"]
    [reason] = decision.reasons
    assert "promotion.datasets.vctk.generator" in reason and "evaluation.judges" in reason


def test_a_dataset_s_override_can_be_dropped_for_the_task_s_rules() -> None:
    rules = PromotionConfig.model_validate({"datasets": {"vctk": {"generator": None}}})
    decision = gate(generator("vctk", "samplernn", "1", dnsmos_ovrl=1.6), None, rules)
    assert decision.rules_key == "promotion.tasks.generator"
    assert "primary frechet_distance" in failed(decision)
    with pytest.raises(ValueError, match="unknown task 'speaker'"):
        PromotionConfig.model_validate({"datasets": {"vctk": {"speaker": {"primary": "pesq"}}}})
