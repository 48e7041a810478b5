"""Great Expectations 1.x suites over a dataset's manifest, and the quarantine report.

Importing this package does not import Great Expectations (it is slow to import); running
`validate_manifest` does.
"""

from wavefoundry.validation.report import (
    QUARANTINE_COLUMNS,
    QUARANTINE_NAME,
    REPORT_NAME,
    SUMMARY_NAME,
    ExpectationOutcome,
    ManifestError,
    ValidationResult,
    failures,
    load_quarantine,
    quarantined_ids,
    render_html,
    render_summary,
    validate_manifest,
)
from wavefoundry.validation.suite import Check, build_suite, checks_for

__all__ = [
    "QUARANTINE_COLUMNS",
    "QUARANTINE_NAME",
    "REPORT_NAME",
    "SUMMARY_NAME",
    "Check",
    "ExpectationOutcome",
    "ManifestError",
    "ValidationResult",
    "build_suite",
    "checks_for",
    "failures",
    "load_quarantine",
    "quarantined_ids",
    "render_html",
    "render_summary",
    "validate_manifest",
]
