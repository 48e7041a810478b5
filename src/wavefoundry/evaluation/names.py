"""The judge and metric names the evaluation and promotion settings may use, checked in one
place: `config`, `pipeline run`/`submit`, `evaluate` and `promote` refuse an unknown one before
any work (a misspelt metric once trained every family, then failed the promotion)."""

from __future__ import annotations

from wavefoundry.config import EvaluationConfig, PromotionConfig
from wavefoundry.errors import UserError


def check_names(
    evaluation: EvaluationConfig | None = None, promotion: PromotionConfig | None = None
) -> None:
    """UserError naming the first unknown judge in `evaluation.judges` (evaluation/judges.py)
    or unknown metric in `promotion` (floor_metrics, every task's and dataset's gate;
    evaluation/metrics.py), with the names it could have been."""
    from wavefoundry.evaluation import judges
    from wavefoundry.evaluation.metrics import METRICS

    if evaluation is not None:
        missing = judges.unknown(evaluation.judges)
        if missing:
            raise UserError(
                f"evaluation.judges: unknown judge {', '.join(missing)} (known: "
                f"{', '.join(judges.JUDGES)})"
            )
    if promotion is None:
        return
    named = [("promotion.floor_metrics", name) for name in promotion.floor_metrics]
    gates = {f"promotion.tasks.{task}": gate for task, gate in promotion.tasks.items()}
    for dataset, own in promotion.datasets.items():
        gates |= {f"promotion.datasets.{dataset}.{task}": gate for task, gate in own.items()}
    for key, gate in gates.items():
        named += [(key, name) for name in (gate.primary, *gate.secondary)]
    for key, name in named:
        if name not in METRICS:
            raise UserError(f"{key} names unknown metric '{name}' (known: {', '.join(METRICS)})")
