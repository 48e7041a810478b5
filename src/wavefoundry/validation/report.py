"""Run a dataset's suite over its manifest; write the report, the summary and the quarantine list.

`validate_manifest` reads the manifest and writes three files into `out_dir`, nothing else:

- `report.json`: the verdict, every expectation's outcome and thresholds, the GX version;
- `summary.txt`: the same in a few lines for a person (what `render_summary` returns);
- `quarantine.csv`: every clip that failed any expectation, once, with concrete reasons.

Failing clips are never deleted or modified: the store stage leaves out `quarantined_ids`.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wavefoundry.config import ValidationRules
from wavefoundry.data.schema import stable_text
from wavefoundry.errors import UserError
from wavefoundry.validation.suite import Check, build_suite, import_gx, required_columns

REPORT_NAME = "report.json"
SUMMARY_NAME = "summary.txt"
QUARANTINE_NAME = "quarantine.csv"
QUARANTINE_COLUMNS = ("clip_id", "path", "split", "status", "reasons", "expectations")

_JOIN = "; "


class ManifestError(UserError):
    """A manifest the suite cannot be run on (a column missing), or a quarantine list unreadable."""


@dataclass
class ExpectationOutcome:
    """How one expectation of the suite fared."""

    key: str
    name: str
    expectation_type: str
    column: str | None
    success: bool
    element_count: int | None  # rows judged (after the row condition)
    unexpected_count: int | None
    unexpected_percent: float | None
    mostly: float | None
    thresholds: dict[str, Any]
    row_condition: str | None
    observed_value: Any = None  # table-level expectations only
    error: str | None = None  # the exception GX caught, if any


@dataclass
class ValidationResult:
    success: bool
    clips: int
    quarantined: int
    failed_expectations: list[str]  # human names of the expectations that failed the suite
    report_path: Path
    summary_path: Path
    quarantine_path: Path
    dataset: str = ""
    expectations: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return self.clips - self.quarantined


# Running the suite ------------------------------------------------------------------------


def _check_columns(manifest: pd.DataFrame, dataset: str, rules: ValidationRules) -> None:
    missing = [c for c in required_columns(rules) if c not in manifest.columns]
    if missing:
        raise ManifestError(
            f"{dataset} manifest lacks column(s) {', '.join(missing)}: "
            "rebuild it with `wavefoundry ingest`"
        )


def _run_suite(
    frame: pd.DataFrame, dataset: str, rules: ValidationRules
) -> tuple[Any, list[Check]]:
    """Run the suite on `frame` (RangeIndex) in a fresh ephemeral context: (GX result, checks)."""
    gx = import_gx()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas(name="manifests")
    asset = source.add_dataframe_asset(name=dataset)
    batch = asset.add_batch_definition_whole_dataframe(name="manifest")
    suite, checks = build_suite(dataset, rules)
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{dataset}_manifest", data=batch, suite=suite)
    )
    # COMPLETE returns every failing row's index (a position here: the frame has a RangeIndex;
    # clip ids are not used as the row key because duplicated ids are one of the failures).
    result_format = {
        "result_format": "COMPLETE",
        "include_unexpected_rows": False,
        "return_unexpected_index_query": False,
    }
    result = definition.run(batch_parameters={"dataframe": frame}, result_format=result_format)
    return result, checks


def _error_text(result: Any) -> str | None:
    info = result.exception_info or {}
    if "raised_exception" not in info:  # several metrics: {metric_id: {...}}
        info = next((v for v in info.values() if isinstance(v, dict)), {})
    if info.get("raised_exception"):
        return stable_text(str(info.get("exception_message") or "exception raised"))
    return None


def _outcome(check: Check, result: Any) -> ExpectationOutcome:
    values = result.result or {}
    percent = values.get("unexpected_percent")
    return ExpectationOutcome(
        key=check.key,
        name=check.name,
        expectation_type=check.expectation_type,
        column=check.column,
        success=bool(result.success),
        element_count=_int_or_none(values.get("element_count")),
        unexpected_count=_int_or_none(values.get("unexpected_count")),
        unexpected_percent=None if percent is None else round(float(percent), 4),
        mostly=check.mostly,
        thresholds=check.thresholds,
        row_condition=check.row_condition,
        observed_value=_jsonable(values.get("observed_value")),
        error=_error_text(result),
    )


def _int_or_none(value: Any) -> int | None:
    return None if value is None else int(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return str(value)


def _quarantine(frame: pd.DataFrame, failing: dict[int, list[Check]]) -> pd.DataFrame:
    positions = sorted(failing)
    rows = []
    for position, row in zip(positions, frame.iloc[positions].to_dict("records"), strict=True):
        checks = failing[position]
        rows.append(
            {
                "clip_id": row["clip_id"],
                "path": row["path"],
                "split": row["split"],
                "status": row["status"],
                "reasons": _JOIN.join(c.reason(row) for c in checks if c.reason is not None),
                "expectations": _JOIN.join(c.name for c in checks),
            }
        )
    return pd.DataFrame(rows, columns=list(QUARANTINE_COLUMNS))


def validate_manifest(
    manifest: pd.DataFrame, dataset: str, rules: ValidationRules, out_dir: Path
) -> ValidationResult:
    """Run `dataset`'s suite over `manifest`; write report, summary and quarantine into `out_dir`.

    The manifest is only read. Every clip failing any expectation is quarantined, whether or
    not the suite as a whole passes (`mostly` decides the latter).
    """
    _check_columns(manifest, dataset, rules)
    # A copy with positions as index: GX's unexpected_index_list then names rows unambiguously.
    frame = manifest.reset_index(drop=True).copy(deep=True)
    gx_result, checks = _run_suite(frame, dataset, rules)

    by_key = {check.key: check for check in checks}
    outcomes: dict[str, ExpectationOutcome] = {}
    failing: dict[int, list[Check]] = {}
    for item in gx_result.results:
        check = by_key[(item.expectation_config.meta or {})["check"]]
        outcomes[check.key] = _outcome(check, item)
        for position in (item.result or {}).get("unexpected_index_list") or []:
            failing.setdefault(int(position), []).append(check)
    ordered = [outcomes[c.key] for c in checks if c.key in outcomes]
    for position in failing:  # report order, not GX's result order
        failing[position].sort(key=checks.index)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    quarantine = _quarantine(frame, failing)
    quarantine_path = out_dir / QUARANTINE_NAME
    _write_atomic(quarantine_path, quarantine.to_csv(index=False, lineterminator="\n"))

    failed = [o.name for o in ordered if not o.success]
    result = ValidationResult(
        success=bool(gx_result.success) and not failed,
        clips=len(frame),
        quarantined=len(quarantine),
        failed_expectations=failed,
        report_path=out_dir / REPORT_NAME,
        summary_path=out_dir / SUMMARY_NAME,
        quarantine_path=quarantine_path,
        dataset=dataset,
        expectations=ordered,
    )
    report = {
        "dataset": dataset,
        "success": result.success,
        "clips": result.clips,
        "passed": result.passed,
        "quarantined": result.quarantined,
        "failed_expectations": failed,
        "expectations": [asdict(o) for o in ordered],
        # Beside the report: no folder of this run (a pipeline task's is temporary) in the file.
        "quarantine": {"count": result.quarantined, "path": QUARANTINE_NAME},
        "rules": rules.model_dump(mode="json"),
        "great_expectations_version": import_gx().__version__,
    }
    _write_atomic(result.report_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _write_atomic(result.summary_path, render_summary(result, QUARANTINE_NAME) + "\n")
    return result


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# Reading it back --------------------------------------------------------------------------


def _describe_failure(outcome: ExpectationOutcome) -> str:
    if outcome.error:
        return f"error: {outcome.error}"
    if outcome.unexpected_count is None:
        return f"found {outcome.observed_value}"
    judged = outcome.element_count if outcome.element_count is not None else "?"
    text = f"{outcome.unexpected_count} of {judged} clips unexpected"
    if outcome.unexpected_percent is not None:
        text += f" ({outcome.unexpected_percent:.3g}%)"
    if outcome.mostly is not None:
        text += f", at most {(1 - outcome.mostly) * 100:.3g}% allowed"
    return text


def failures(result: ValidationResult) -> list[str]:
    """Each expectation that failed the suite, with how: `name: 3 of 40 clips unexpected ...`."""
    by_name = {o.name: o for o in result.expectations}
    return [
        f"{name}: {_describe_failure(by_name[name])}" if name in by_name else name
        for name in result.failed_expectations
    ]


def render_summary(result: ValidationResult, quarantine: str | None = None) -> str:
    """A few plain-text lines: the verdict, each failed expectation, where the quarantine is
    (`quarantine`, or the full path of the quarantine list)."""
    verdict = "PASSED" if result.success else "FAILED"
    lines = [
        f"{result.dataset or 'dataset'}: {result.clips} clips, {result.passed} pass, "
        f"{result.quarantined} quarantined — suite {verdict}"
    ]
    lines += [f"  failed: {failure}" for failure in failures(result)]
    if result.quarantined:
        lines.append(f"quarantine: {quarantine or result.quarantine_path}")
    return "\n".join(lines)


def render_html(result: ValidationResult, max_rows: int = 500) -> str:
    """The report as one self-contained HTML page (what a pipeline UI shows): the verdict,
    every expectation with its outcome, and the quarantine list (its first `max_rows` rows)."""
    from html import escape

    def cells(values: list[Any], tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{escape(str(v))}</{tag}>" for v in values) + "</tr>"

    verdict = "PASSED" if result.success else "FAILED"
    expectations = [
        cells(["expectation", "column", "result", "unexpected", "allowed", "detail"], "th")
    ]
    for o in result.expectations:
        allowed = "" if o.mostly is None else f"{(1 - o.mostly) * 100:.3g}%"
        unexpected = "" if o.unexpected_count is None else f"{o.unexpected_count}"
        detail = "" if o.success else _describe_failure(o)
        row = cells(
            [o.name, o.column or "", "pass" if o.success else "FAIL", unexpected, allowed, detail]
        )
        expectations.append(row if o.success else row.replace("<tr>", '<tr class="fail">', 1))
    quarantine = load_quarantine(result.quarantine_path)
    rows = [cells(list(QUARANTINE_COLUMNS), "th")]
    rows += [cells(list(r)) for r in quarantine.head(max_rows).itertuples(index=False)]
    more = len(quarantine) - max_rows
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{escape(result.dataset)} validation</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}} .fail{{background:#fdd}}</style>
</head><body>
<h1>{escape(result.dataset)}: suite {verdict}</h1>
<p>{result.clips} clips, {result.passed} pass, {result.quarantined} quarantined.</p>
<h2>Expectations</h2><table>{"".join(expectations)}</table>
<h2>Quarantine ({result.quarantined} clips, kept on disk, left out of the store)</h2>
<table>{"".join(rows)}</table>
{f"<p>… and {more} more in {escape(QUARANTINE_NAME)}</p>" if more > 0 else ""}
</body></html>
"""


def load_quarantine(path: Path) -> pd.DataFrame:
    """The quarantine list as written by `validate_manifest` (all columns as strings)."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise ManifestError(
            f"no quarantine list at {path}: run `wavefoundry validate` first"
        ) from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ManifestError(f"cannot read quarantine list {path}: {err}") from None
    missing = [c for c in QUARANTINE_COLUMNS if c not in frame.columns]
    if missing:
        raise ManifestError(f"{path}: not a quarantine list (lacks {', '.join(missing)})")
    return frame


def quarantined_ids(out_dir: Path) -> set[str]:
    """Clip ids listed in `out_dir`'s quarantine list, for the store stage to leave out."""
    return set(load_quarantine(Path(out_dir) / QUARANTINE_NAME)["clip_id"])
