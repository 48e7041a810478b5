"""The model registry: promote, rollback, compare."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.measure import Measurement
from rich.table import Table

from wavefoundry import tracking
from wavefoundry.cli.common import Command, out, read_json, write_json
from wavefoundry.config import TASKS, Config
from wavefoundry.errors import UserError
from wavefoundry.tracking import REGISTERED_TASK_NAMES


def model_name(sub: argparse.ArgumentParser, required: bool = True) -> None:
    """The --model-name option of the registry and serving commands."""
    sub.add_argument(
        "--model-name",
        required=required,
        metavar="NAME",
        help="registered model, wavefoundry-DATASET-TASK (TASK: "
        + ", ".join(REGISTERED_TASK_NAMES.get(t, t) for t in TASKS)
        + "), e.g. wavefoundry-ljspeech-vocoder or wavefoundry-ljspeech-tts",
    )


def add_commands(commands: Any, command: Command) -> None:
    sub = command(
        "promote",
        cmd_promote,
        "face a candidate with the champion through the gate; move the alias if it passes",
    )
    model_name(sub, required=False)
    which = sub.add_mutually_exclusive_group()
    which.add_argument("--version", help="the challenger (default: the newest version)")
    which.add_argument("--run-id", help="the challenger: the version registered from this run")
    which.add_argument(
        "--candidates",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="several challengers, best first: files `evaluate --out` wrote, or a folder of "
        "them (FAMILY.json for each of pipeline.families)",
    )
    sub.add_argument(
        "--dry-run", action="store_true", help="print the decision table; change nothing"
    )
    sub.add_argument("--out", type=Path, help="with --candidates: the verdicts as JSON")
    sub.epilog = (
        "The gate (params promotion.*): every metric finite; rtf <= max_real_time_factor; the "
        "primary metric (promotion.datasets.DATASET.TASK where set, else promotion.tasks.TASK) "
        "better by min_relative_improvement; secondaries worse by at most secondary_tolerance; "
        "a vocoder or codec beats the floor (promotion.floor: griffin_lim) on floor_metrics. "
        "A champion scored on other data is scored again first, and a voice voiced by another "
        "vocoder than its dataset's champion now is scored again through it."
    )

    sub = command("rollback", cmd_rollback, "give the alias back to the previous champion")
    model_name(sub)

    sub = command(
        "compare", cmd_compare, "the versions of a registered model: table, chart, MLflow run"
    )
    model_name(sub)
    sub.add_argument("--out", type=Path, help="chart PNG (default: .wavefoundry/compare-NAME.png)")


def _decision_table(outcome) -> Table:
    decision = outcome.decision
    champion = decision.champion
    verdict = "[green]PASSED[/]" if decision.passed else "[red]REFUSED[/]"
    table = Table(
        title=f"{decision.model}: v{decision.challenger.version} ({decision.challenger.family}) "
        f"against {f'v{champion.version} ({champion.family})' if champion else 'no champion'}: "
        f"{verdict}"
    )
    table.caption = f"metrics: {decision.rules_key} (primary {decision.primary})"
    for column in ("check", "challenger", "champion", "requirement", "result"):
        table.add_column(column)
    for check in decision.checks:
        table.add_row(
            check.name,
            check.challenger,
            check.champion,
            check.requirement,
            "[green]pass[/]" if check.passed else "[red]fail[/]",
        )
    return table


def cmd_promote(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.stages import promote

    if args.candidates:
        return _promote_candidates(args, cfg)
    if not args.model_name:
        raise UserError("give --model-name (or --candidates)")
    outcome = promote(cfg, args.model_name, args.version, args.run_id, dry_run=args.dry_run)
    decision = outcome.decision
    if outcome.revoiced:
        out.print(
            "the challenger was scored again, its sentences voiced by the vocoder champion: "
            + outcome.decision.challenger.tags.get(tracking.TAG_EVAL_VOCODER, "?")
        )
    if outcome.rescored:
        out.print("the champion was scored again on the challenger's held-out set")
    out.print(_decision_table(outcome))
    alias = cfg.promotion.alias
    if args.dry_run:
        out.print("dry run: nothing changed")
    elif decision.passed:
        out.print(f"{alias} is now version {decision.challenger.version} of {args.model_name}")
    else:
        holder = f"version {decision.champion.version}" if decision.champion else "no version"
        out.print(f"refused: {alias} stays with {holder} ({'; '.join(decision.reasons)})")
    if outcome.note:  # under the verdict, as for --candidates
        out.print(f"note: {outcome.note}")
    return 0


def _candidate_files(paths: list[Path], cfg: Config) -> list[Path]:
    files = []
    for path in paths:
        if path.is_dir():
            files += [path / f"{family}.json" for family in cfg.pipeline.families]
        else:
            files.append(path)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"no candidate file {', '.join(missing)}: write them with evaluate --out")
    return files


def _promote_candidates(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.registry.promotion import champions, notes
    from wavefoundry.stages import promote_best

    if args.dry_run:
        raise UserError("--dry-run takes one challenger: give --model-name and --version")
    records = [
        read_json(f, "candidate file", ("registered_model", "version"), "evaluate --out")
        for f in _candidate_files(args.candidates, cfg)
    ]
    contests = promote_best(cfg, [(r["registered_model"], r["version"]) for r in records])
    for contest in contests:
        if contest.outcome is not None:
            out.print(_decision_table(contest.outcome))
        out.print(f"{contest.name} v{contest.version}: {contest.verdict}")
    for note in notes(contests):
        out.print(f"note: {note}")
    if args.out:
        verdicts = [
            {"registered_model": c.name, "version": c.version, "verdict": c.verdict}
            for c in contests
        ]
        # What bento build --promotion builds: the versions decided here, not the alias later.
        write_json(
            args.out,
            {
                "registered_models": sorted({c.name for c in contests}),
                "champions": champions(contests),
                "contests": verdicts,
            },
        )
    return 0


def cmd_rollback(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.registry.promotion import rollback

    entry = rollback(cfg, args.model_name)
    out.print(
        f"{cfg.promotion.alias} of {args.model_name} moved back from version "
        f"{entry['champion_before']} to version {entry['champion_after']}"
    )
    return 0


def cmd_compare(args: argparse.Namespace, cfg: Config) -> int:
    import pandas as pd

    from wavefoundry.evaluation.metrics import METRICS
    from wavefoundry.registry.compare import compare

    result = compare(cfg, args.model_name, args.out)
    best = {}
    for metric in result.metrics:
        values = result.table[metric].dropna()
        if not values.empty and metric in METRICS:
            best[metric] = values.max() if METRICS[metric].higher_is_better else values.min()

    def cell(row: pd.Series, metric: str) -> str:
        text = f"{row[metric]:.4g}" if pd.notna(row[metric]) else "-"
        return f"[bold]{text}[/]" if row[metric] == best.get(metric) else text

    rows = [row for _, row in result.table.iterrows()]
    count = len(result.candidates)
    title = f"{args.model_name}: {count} candidate{'' if count == 1 else 's'}"
    table = Table(title=title)
    for column in ("candidate", "aliases", "data version", *result.metrics):
        table.add_column(column, justify="right" if column in result.metrics else "left")
    for row in rows:
        cells = [cell(row, metric) for metric in result.metrics]
        table.add_row(row["candidate"], row["aliases"], row["data_version"], *cells)
    if Measurement.get(out, out.options.update_width(10**6), table).maximum > out.width:
        # Too wide for this terminal (a dozen metrics): a column per candidate instead.
        table = Table(title=title)
        table.add_column("")
        for row in rows:
            table.add_column(row["candidate"], justify="right")
        table.add_row("aliases", *(row["aliases"] for row in rows))
        table.add_row("data version", *(row["data_version"] for row in rows))
        for metric in result.metrics:
            table.add_row(metric, *(cell(row, metric) for row in rows))
    out.print(table)
    if result.primary:
        secondary = ", ".join(result.secondary) or "none"
        metric = METRICS.get(result.primary)
        better = "" if metric is None else "higher" if metric.higher_is_better else "lower"
        out.print(
            f"gate: {result.gate}: primary {result.primary}"
            f"{f' ({better} is better)' if better else ''}, secondary {secondary}"
        )
    if result.baseline is not None:
        out.print(
            f"{result.baseline.name} (baseline): Griffin-Lim from the same mel, on the newest "
            f"candidate's held-out set (run {result.baseline.run_id}); promotion.floor holds "
            "vocoders and codecs to it"
        )
    out.print(f"chart: {result.chart}; logged to MLflow run {result.run_id}")
    return 0
