"""A dataset's Great Expectations suite, built in code from its `ValidationRules`.

Each expectation comes with a `Check`: a stable key, a human name, the thresholds it applies
and a function that words the reason a failing clip gets in the quarantine list, from that
clip's own values. Which rows fail is decided by Great Expectations; the `Check` only words it.

Expectations on what was measured from the audio (rate, channels, duration, ...) and on the
clip's metadata (transcript, pitch, velocity) carry the row condition `status == "ok"`, so they
judge only the clips that could be read: an unreadable or missing file is quarantined once, for
being unreadable, not a second time for its sample rate of 0. Their `mostly` fraction is
therefore a fraction of the readable clips.

Great Expectations is slow to import, so it is imported inside `build_suite` only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import wavefoundry.data.schema as schema
from wavefoundry.config import ValidationRules

# Every manifest column the suite or the quarantine list reads, whatever the rules.
BASE_COLUMNS: tuple[str, ...] = (
    "clip_id",
    "path",
    "split",
    "status",
    "reason",
    "sample_rate",
    "channels",
    "subtype",
    "duration",
    "clipping",
    "silence",
    "dc_offset",
    "non_finite",
)

# The condition on every per-clip expectation except readability and uniqueness.
READABLE_CONDITION = f'status == "{schema.OK}"'

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Check:
    """One expectation of the suite, as people read it."""

    key: str  # stable identifier, e.g. "sample_rate"
    name: str  # what is expected, e.g. "sample rate 22050 Hz"
    expectation_type: str  # GX's snake-case type, e.g. "expect_column_values_to_be_in_set"
    column: str | None  # None for table-level expectations
    mostly: float | None  # fraction of rows that must pass; None when every row must
    thresholds: dict[str, Any] = field(default_factory=dict)
    row_condition: str | None = None  # as text, for the report
    reason: Callable[[Row], str] | None = None  # None for table-level expectations


# Formatting of values into reasons --------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(value != value)  # NaN, pd.NA raises TypeError in bool()
    except TypeError:
        return True


def fmt_number(value: Any, digits: int = 3) -> str:
    """A number as a person writes it: 16000, 0.21, 4.005; "missing" for None/NaN."""
    if _is_missing(value):
        return "missing"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isinf(number):
        return "inf" if number > 0 else "-inf"
    if number.is_integer():
        return str(int(number))
    return f"{number:.{digits}f}".rstrip("0").rstrip(".")


def fmt_bound(value: float) -> str:
    """A configured bound as written in the config: 0.5, 12.0, 3.99."""
    return str(float(value))


def fmt_percent(fraction: Any) -> str:
    """0.032 -> "3.2%", 0.001 -> "0.1%", 0.85 -> "85%"."""
    if _is_missing(fraction):
        return "missing"
    return f"{float(fraction) * 100:.3g}%"


def _plural(count: Any, word: str) -> str:
    text = fmt_number(count)
    return f"{text} {word}" if text == "1" else f"{text} {word}s"


def _join(values: list[Any]) -> str:
    return ", ".join(fmt_number(v) if not isinstance(v, str) else v for v in values)


def _text(value: Any) -> str:
    return "missing" if _is_missing(value) or not str(value).strip() else str(value)


def _status_reason(row: Row) -> str:
    status = str(row.get("status", ""))
    reason = row.get("reason")
    reason = "" if _is_missing(reason) else str(reason).strip()
    return f"{status}: {reason}" if reason else status


# The checks -------------------------------------------------------------------------------


def checks_for(rules: ValidationRules) -> list[Check]:
    """The suite's checks, in the order they run and are reported."""
    readable = READABLE_CONDITION
    range_text = f"{fmt_bound(rules.min_duration)}–{fmt_bound(rules.max_duration)} s"
    checks = [
        Check(
            key="row_count",
            name=f"at least {_plural(rules.min_clips, 'clip')}",
            expectation_type="expect_table_row_count_to_be_between",
            column=None,
            mostly=None,
            thresholds={"min_value": rules.min_clips},
        ),
        Check(
            key="unique_clip_id",
            name="unique clip ids",
            expectation_type="expect_column_values_to_be_unique",
            column="clip_id",
            mostly=None,
            reason=lambda row: "duplicate clip id",
        ),
        Check(
            key="readable",
            name=f"readable (status {schema.OK})",
            expectation_type="expect_column_values_to_be_in_set",
            column="status",
            mostly=rules.readable_mostly,
            thresholds={"value_set": [schema.OK]},
            reason=_status_reason,
        ),
        Check(
            key="sample_rate",
            name=f"sample rate {rules.sample_rate} Hz",
            expectation_type="expect_column_values_to_be_in_set",
            column="sample_rate",
            mostly=rules.format_mostly,
            thresholds={"value_set": [rules.sample_rate]},
            row_condition=readable,
            reason=lambda row: (
                f"sample rate {fmt_number(row['sample_rate'])} Hz, expected {rules.sample_rate} Hz"
            ),
        ),
        Check(
            key="channels",
            name=_plural(rules.channels, "channel"),
            expectation_type="expect_column_values_to_be_in_set",
            column="channels",
            mostly=rules.format_mostly,
            thresholds={"value_set": [rules.channels]},
            row_condition=readable,
            reason=lambda row: f"{_plural(row['channels'], 'channel')}, expected {rules.channels}",
        ),
        Check(
            key="subtype",
            name=f"subtype {' or '.join(rules.subtypes)}",
            expectation_type="expect_column_values_to_be_in_set",
            column="subtype",
            mostly=rules.format_mostly,
            thresholds={"value_set": list(rules.subtypes)},
            row_condition=readable,
            reason=lambda row: (
                f"subtype {_text(row['subtype'])}, expected one of {_join(rules.subtypes)}"
            ),
        ),
        Check(
            key="duration",
            name=f"duration {range_text}",
            expectation_type="expect_column_values_to_be_between",
            column="duration",
            mostly=rules.duration_mostly,
            thresholds={"min_value": rules.min_duration, "max_value": rules.max_duration},
            row_condition=readable,
            reason=lambda row: f"duration {fmt_number(row['duration'])} s outside {range_text}",
        ),
        Check(
            key="clipping",
            name=f"clipping at most {fmt_percent(rules.max_clipping)} of samples",
            expectation_type="expect_column_values_to_be_between",
            column="clipping",
            mostly=rules.clipping_mostly,
            thresholds={"max_value": rules.max_clipping},
            row_condition=readable,
            reason=lambda row: (
                f"clipping {fmt_percent(row['clipping'])} of samples, "
                f"limit {fmt_percent(rules.max_clipping)}"
            ),
        ),
        Check(
            key="silence",
            name=f"silence at most {fmt_percent(rules.max_silence)} of frames",
            expectation_type="expect_column_values_to_be_between",
            column="silence",
            mostly=rules.silence_mostly,
            thresholds={"max_value": rules.max_silence},
            row_condition=readable,
            reason=lambda row: (
                f"silence {fmt_percent(row['silence'])} of frames, "
                f"limit {fmt_percent(rules.max_silence)}"
            ),
        ),
        Check(
            key="dc_offset",
            name=f"DC offset within ±{fmt_bound(rules.max_dc_offset)}",
            expectation_type="expect_column_values_to_be_between",
            column="dc_offset",
            mostly=rules.dc_offset_mostly,
            thresholds={"min_value": -rules.max_dc_offset, "max_value": rules.max_dc_offset},
            row_condition=readable,
            reason=lambda row: (
                f"DC offset {fmt_number(row['dc_offset'])}, limit ±{fmt_bound(rules.max_dc_offset)}"
            ),
        ),
        Check(
            key="finite",
            name="no NaN or inf samples",
            expectation_type="expect_column_values_to_be_in_set",
            column="non_finite",
            mostly=rules.readable_mostly,
            thresholds={"value_set": [False]},
            row_condition=readable,
            reason=lambda row: "contains NaN or inf samples",
        ),
    ]
    if rules.require_text:
        checks += [
            Check(
                key="text_present",
                name="transcript present",
                expectation_type="expect_column_values_to_not_be_null",
                column="text",
                mostly=rules.text_mostly,
                row_condition=readable,
                reason=lambda row: "no transcript",
            ),
            Check(
                key="text_not_empty",
                name="transcript not empty",
                expectation_type="expect_column_values_to_match_regex",
                column="text",
                mostly=rules.text_mostly,
                thresholds={"regex": r"\S"},
                row_condition=readable,
                reason=lambda row: "empty transcript",
            ),
        ]
    if rules.pitch_range is not None:
        low, high = rules.pitch_range
        checks.append(
            Check(
                key="pitch",
                name=f"pitch {low}–{high}",
                expectation_type="expect_column_values_to_be_between",
                column="pitch",
                mostly=rules.format_mostly,
                thresholds={"min_value": low, "max_value": high},
                row_condition=readable,
                reason=lambda row: f"pitch {fmt_number(row['pitch'])} outside {low}–{high}",
            )
        )
    if rules.velocities is not None:
        velocities = list(rules.velocities)
        checks.append(
            Check(
                key="velocity",
                name=f"velocity in {_join(velocities)}",
                expectation_type="expect_column_values_to_be_in_set",
                column="velocity",
                mostly=rules.format_mostly,
                thresholds={"value_set": velocities},
                row_condition=readable,
                reason=lambda row: (
                    f"velocity {fmt_number(row['velocity'])} not in {_join(velocities)}"
                ),
            )
        )
    return checks


def required_columns(rules: ValidationRules) -> list[str]:
    """The manifest columns the suite reads for these rules."""
    columns = list(BASE_COLUMNS)
    for check in checks_for(rules):
        if check.column is not None and check.column not in columns:
            columns.append(check.column)
    return columns


# Great Expectations -----------------------------------------------------------------------


def import_gx() -> Any:
    """Import Great Expectations with analytics off (it must never reach the network) and its
    logger at WARNING: at INFO (a pipeline task's level) it logs its context's internals, one
    record spilling a bare `[]` line into the task's output."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    for name in [*logging.root.manager.loggerDict, "great_expectations"]:
        if name.split(".")[0] == "great_expectations":  # some of its modules set INFO themselves
            logging.getLogger(name).setLevel(logging.WARNING)
    return gx


_EXPECTATION_CLASSES = {
    "expect_table_row_count_to_be_between": "ExpectTableRowCountToBeBetween",
    "expect_column_values_to_be_unique": "ExpectColumnValuesToBeUnique",
    "expect_column_values_to_be_in_set": "ExpectColumnValuesToBeInSet",
    "expect_column_values_to_be_between": "ExpectColumnValuesToBeBetween",
    "expect_column_values_to_not_be_null": "ExpectColumnValuesToNotBeNull",
    "expect_column_values_to_match_regex": "ExpectColumnValuesToMatchRegex",
}


def build_expectation(check: Check) -> Any:
    """The GX expectation object for one check; `meta["check"]` holds the check's key."""
    gx = import_gx()
    from great_expectations.expectations.row_conditions import Column

    kwargs: dict[str, Any] = dict(check.thresholds)
    if check.column is not None:
        kwargs["column"] = check.column
    if check.mostly is not None:
        kwargs["mostly"] = check.mostly
    if check.row_condition is not None:
        # Condition objects (GX >= 1.9); the string + condition_parser form is deprecated.
        kwargs["row_condition"] = Column("status") == schema.OK
    cls = getattr(gx.expectations, _EXPECTATION_CLASSES[check.expectation_type])
    return cls(**kwargs, description=check.name, meta={"check": check.key})


def build_suite(dataset: str, rules: ValidationRules) -> tuple[Any, list[Check]]:
    """The dataset's `gx.ExpectationSuite` (not yet added to a context) and its checks."""
    gx = import_gx()
    checks = checks_for(rules)
    suite = gx.ExpectationSuite(name=f"{dataset}_manifest")
    for check in checks:
        suite.add_expectation(build_expectation(check))
    return suite, checks
