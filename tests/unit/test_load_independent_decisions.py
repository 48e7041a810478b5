"""Decisions that must not flip with machine load (issue 12, item 1), and the one-line disk
errors (item 4), at the level of the functions that make them."""

import errno
import math

import pytest

from wavefoundry.config import PromotionConfig
from wavefoundry.errors import UserError, disk_error, writing
from wavefoundry.registry.candidates import Candidate, score_tags
from wavefoundry.registry.promotion import gate, speed_rules

RULES = PromotionConfig(max_real_time_factor=1.0, floor="off")  # the floor: test_promotion_gate


def scored(version: str, rtf: float, device: str) -> Candidate:
    tags = {"family": "hifigan", "task": "vocoder", "dataset": "ljspeech"}
    tags.update(score_tags({"mel_l1": 1.0, "mrstft": 2.0, "rtf": rtf}, "set", "data", device))
    return Candidate("wavefoundry-ljspeech-vocoder", version, "run", "models:/m", tags)


@pytest.mark.parametrize("rtf", [0.5, 2.39, 24.3])  # idle, and the two loaded figures
def test_a_cpu_score_is_not_held_to_the_gpu_speed_target_whatever_the_load(rtf):
    candidate = scored("1", rtf, "cpu")
    rules, note = speed_rules(RULES, candidate)
    assert rules.max_real_time_factor == math.inf
    assert note == (
        "speed target off: scored on cpu, and promotion.max_real_time_factor (1) is for cuda"
    )
    assert gate(candidate, None, rules).passed


def test_a_gpu_score_and_an_unrecorded_device_are_held_to_it_and_the_refusal_says_so():
    for device in ("cuda", ""):
        candidate = scored("1", 2.39, device)
        rules, note = speed_rules(RULES, candidate)
        assert note == "" and rules.max_real_time_factor == 1.0
        decision = gate(candidate, None, rules)
        assert not decision.passed
        assert decision.reasons == ["real-time factor: 2.39 (needs <= 1)"]


def test_the_target_can_name_the_cpu():
    rules, note = speed_rules(
        PromotionConfig(max_real_time_factor=1.0, real_time_factor_device="cpu", floor="off"),
        scored("1", 2.39, "cpu"),
    )
    assert note == "" and not gate(scored("1", 2.39, "cpu"), None, rules).passed


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left on the device (ENOSPC)"),
        (errno.EDQUOT, "the disk quota is used up (EDQUOT)"),
        (errno.EACCES, "permission denied (EACCES)"),
        (errno.EPERM, "operation not permitted (EPERM)"),
        (errno.EROFS, "the file system is read-only (EROFS)"),
    ],
)
def test_out_of_space_and_permission_errors_are_one_line_naming_the_path(code, words):
    with pytest.raises(OSError) as raised, writing("data/processed/ljspeech"):
        raise OSError(code, "from the OS")  # a write() names no file
    error = disk_error(raised.value)
    assert isinstance(error, UserError)
    assert str(error) == f"cannot write data/processed/ljspeech: {words}"
    # The path the OS names wins over the folder it was written in.
    named = disk_error(OSError(code, "from the OS", "data/manifest/x.parquet"))
    assert str(named).startswith("cannot write data/manifest/x.parquet: ")


def test_other_os_errors_stay_bugs():
    assert disk_error(OSError(errno.EIO, "input/output error")) is None
    assert disk_error(FileNotFoundError(errno.ENOENT, "gone", "x")) is None
