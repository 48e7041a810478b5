"""`wavefoundry compare`: the candidates of one registered model side by side, as a table, a
chart PNG, and an MLflow run holding both (so the comparison is in the UI too). For a vocoder
or codec, the Griffin-Lim baseline scored on the newest candidate's held-out set is a row of
its own (grey in the chart): the floor the gate holds them to."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from wavefoundry import tracking
from wavefoundry.config import Config
from wavefoundry.evaluation.baseline import NAME as BASELINE
from wavefoundry.evaluation.baseline import TASKS as FLOOR_TASKS
from wavefoundry.evaluation.baseline import Baseline
from wavefoundry.registry import candidates
from wavefoundry.registry.candidates import Candidate

BASELINE_LABEL = f"{BASELINE} (baseline)"


@dataclass
class Comparison:
    name: str
    candidates: list[Candidate]
    metrics: list[str]  # the gate's primary first, then its secondaries, then the rest
    table: pd.DataFrame  # one row per candidate, then the baseline's row when there is one
    chart: Path
    run_id: str
    baseline: Baseline | None = None
    gate: str = ""  # where the gate's metrics come from: promotion.datasets.D.T or tasks.T
    primary: str = ""  # the metric the gate ranks these candidates by
    secondary: tuple[str, ...] = ()


def metric_order(cfg: Config, newest: Candidate, found: list[Candidate]) -> list[str]:
    """The metrics of `found`: the gate's primary and secondaries for `newest`'s task on its
    dataset first (those any candidate reports), then the rest by name."""
    _, rules = cfg.promotion.gate_for(newest.task, newest.dataset)
    first = [rules.primary, *rules.secondary] if rules else []
    rest = sorted({name for c in found for name in c.metrics} - set(first))
    return [name for name in first if any(name in c.metrics for c in found)] + rest


def chart(table: pd.DataFrame, metrics: list[str], champion: str | None, path: Path) -> Path:
    """One bar chart per metric, a bar per candidate; the champion's bar is highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    columns = min(3, len(metrics))
    rows = -(-len(metrics) // columns)
    figure = Figure(figsize=(4.2 * columns, 3.0 * rows))
    labels = table["candidate"].tolist()
    colours = [
        "tab:orange" if label == champion else "tab:gray" if label == BASELINE_LABEL else "tab:blue"
        for label in labels
    ]
    for i, metric in enumerate(metrics, start=1):
        axes = figure.add_subplot(rows, columns, i)
        axes.bar(range(len(labels)), table[metric].astype(float), color=colours)
        axes.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        axes.set_title(metric, fontsize=10)
    floor = ", grey: the griffin_lim floor" if BASELINE_LABEL in labels else ""
    figure.suptitle(f"candidates (orange: {champion or 'no champion'}{floor})", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return path


def compare(cfg: Config, name: str, out: Path | None = None) -> Comparison:
    import mlflow

    from wavefoundry.tracking import connect

    client = candidates.client(cfg.tracking)
    found = candidates.candidates(client, name)
    metrics = metric_order(cfg, found[-1], found)
    key, rules = cfg.promotion.gate_for(found[-1].task, found[-1].dataset)
    champion = candidates.by_alias(client, name, cfg.promotion.alias)
    table = pd.DataFrame(
        [
            {
                "candidate": c.label,
                "version": int(c.version),
                "family": c.family,
                "aliases": ",".join(c.aliases),
                "run_id": c.run_id,
                "data_version": c.tags.get(tracking.TAG_DATA_VERSION, "")[:12],
                **{m: c.metrics.get(m, float("nan")) for m in metrics},
            }
            for c in found
        ]
    )
    baseline = _baseline(cfg, client, found[-1])
    if baseline is not None:
        row = {"candidate": BASELINE_LABEL, "family": BASELINE, "aliases": "", "data_version": ""}
        row |= {"run_id": baseline.run_id, **{m: baseline.metrics.get(m) for m in metrics}}
        table = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    path = chart(
        table,
        metrics,
        champion.label if champion else None,
        out or Path(".wavefoundry") / f"compare-{name}.png",
    )
    experiment_id = connect(cfg.tracking)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"compare-{name}") as run:
        mlflow.set_tags({tracking.TAG_KIND: "comparison", tracking.TAG_REGISTERED_MODEL: name})
        mlflow.log_table(table, "comparison.json")
        mlflow.log_artifact(str(path))
    return Comparison(
        name,
        found,
        metrics,
        table,
        path,
        run.info.run_id,
        baseline,
        key,
        rules.primary if rules else "",
        tuple(rules.secondary) if rules else (),
    )


def _baseline(cfg: Config, client: Any, newest: Candidate) -> Baseline | None:
    """The stored baseline on the newest candidate's held-out set, for a vocoder or codec."""
    from wavefoundry.evaluation.baseline import find_baseline
    from wavefoundry.tracking import connect

    if newest.task not in FLOOR_TASKS or not newest.fingerprint:
        return None
    return find_baseline(client, connect(cfg.tracking), newest.fingerprint)
