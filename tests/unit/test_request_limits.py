"""The sizes a 413 names: never "16.0 MiB, more than the 16.0 MiB allowed"."""

from __future__ import annotations

from wavefoundry.serving.guard import sizes


def test_sizes_that_read_the_same_in_mib_are_given_in_bytes() -> None:
    mib = 2**20
    assert sizes(17 * mib + 8, 17 * mib) == ("17,825,800 bytes", "17,825,792 bytes")
    assert sizes(16 * mib + 20_000, 16 * mib) == ("16,797,216 bytes", "16,777,216 bytes")


def test_sizes_apart_in_mib_are_given_in_mib() -> None:
    assert sizes(20 * 2**20, 16 * 2**20) == ("20.0 MiB", "16.0 MiB")
    assert sizes(1_258_291, 2**20) == ("1.2 MiB", "1.0 MiB")
