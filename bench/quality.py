"""Quality against the Griffin-Lim floor: each vocoder family trained on the LJ Speech sample
and scored on the same held-out clips as Griffin-Lim from the same mel.

    uv run python bench/quality.py [--families vocos hifigan] [--longer 2]

Each family trains with the tiny recipe (what `make demo` runs): once at the demo's settings
(its `training.per_family` entry, else `training.steps`), then, from scratch again so that a
cosine schedule ends where the run does, `--longer` times as many steps (the longer CPU
budget). Every run is scored by the project's scorer (metrics and judges) on the
evaluation's held-out clips, beside Griffin-Lim's score on the same clips; the table gives
the floor's metrics (params.yaml promotion.floor_metrics) with mel-L1 beside them, and the
training minutes (CPU time of the training process, and wall time) at which every floor
metric first beat Griffin-Lim. Writes bench/results/quality-cpu.json.

Run it after `wavefoundry sample-data` and `wavefoundry prepare -d ljspeech` (or make demo):
it reads the stored data under paths.data. On a shared machine the minutes are inflated by
the others' load; the CPU minutes less so than the wall minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from wavefoundry.config import DEMO_FAMILIES, load_config
from wavefoundry.evaluation.baseline import NAME, griffin_lim
from wavefoundry.evaluation.metrics import METRICS
from wavefoundry.evaluation.scorer import held_out_set, metric_mel, score, score_baseline
from wavefoundry.families.io import load_model
from wavefoundry.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
DATASET = "ljspeech"


def beats(scores: dict[str, float], floor: dict[str, float], metrics: list[str]) -> bool:
    def better(name: str) -> bool:
        mine, theirs = scores.get(name, float("nan")), floor[name]
        return mine > theirs if METRICS[name].higher_is_better else mine < theirs

    return all(better(name) for name in metrics)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--families", nargs="+", default=list(DEMO_FAMILIES))
    parser.add_argument(
        "--longer", nargs="+", type=float, default=[2.0], help="multiples of the demo's steps"
    )
    args = parser.parse_args()
    console = Console()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))

    work = Path(tempfile.mkdtemp(prefix="bench-quality-"))
    overrides = [
        f"tracking.uri=sqlite:///{work / 'mlflow.db'}",
        f"paths.runs={work / 'runs'}",
        "training.validate_every=100000",
        "training.checkpoint_every=100000",
    ]
    cfg = load_config(ROOT / "params.yaml", overrides=overrides)
    held_out = held_out_set(cfg, DATASET)
    floor_metrics = list(cfg.promotion.floor_metrics)
    shown = [*floor_metrics, "mel_l1", "stoi", "mcd_dtw", "dnsmos_ovrl"]
    mel = metric_mel(held_out.sample_rate)
    floor = score_baseline(NAME, lambda audio: griffin_lim(audio, mel), held_out).metrics
    console.print(f"{NAME} on {len(held_out.clips)} held-out clips ({held_out.fingerprint}):")
    console.print({name: round(floor[name], 3) for name in shown if name in floor})

    rows = []
    for family in args.families:
        crossed = None
        demo_steps = cfg.training.for_family(family).steps
        budgets = sorted({demo_steps, *(round(demo_steps * x) for x in args.longer)})
        for steps in budgets:
            cfg.training.set_steps(family, steps)
            cpu_start, wall_start = time.process_time(), time.perf_counter()
            result = train(cfg, family, DATASET)
            cpu = time.process_time() - cpu_start
            wall = time.perf_counter() - wall_start
            model_family, net = load_model(result.model_dir)
            scores = score(model_family, net, held_out, audio_examples=0).metrics
            passed = beats(scores, floor, floor_metrics)
            if passed and crossed is None:
                crossed = {"steps": steps, "cpu_minutes": cpu / 60, "wall_minutes": wall / 60}
            rows.append(
                {
                    "family": family,
                    "steps": steps,
                    "demo_settings": steps == demo_steps,
                    "train_cpu_minutes": round(cpu / 60, 2),
                    "train_wall_minutes": round(wall / 60, 2),
                    "beats_floor": passed,
                    **{name: scores.get(name) for name in shown},
                }
            )
            console.print(rows[-1])
        rows.append({"family": family, "crossed_floor_at": crossed, "longest": budgets[-1]})

    table = Table(title=f"{DATASET} held-out clips: candidates against {NAME}")
    for column in ("family", "steps", "train CPU min", "train wall min", *shown, "beats floor"):
        table.add_column(column)
    table.add_row(NAME, "-", "-", "-", *(f"{floor.get(n, float('nan')):.3f}" for n in shown), "-")
    for row in rows:
        if "steps" not in row:
            continue
        table.add_row(
            row["family"],
            str(row["steps"]),
            f"{row['train_cpu_minutes']:.2f}",
            f"{row['train_wall_minutes']:.2f}",
            *(f"{row[n]:.3f}" if row[n] is not None else "-" for n in shown),
            "yes" if row["beats_floor"] else "no",
        )
    console.print(table)
    for row in rows:
        if "crossed_floor_at" in row:
            at = row["crossed_floor_at"]
            console.print(
                f"{row['family']}: "
                + (
                    f"beat {NAME} on {', '.join(floor_metrics)} after {at['steps']} steps, "
                    f"{at['cpu_minutes']:.1f} CPU min ({at['wall_minutes']:.1f} wall min)"
                    if at
                    else f"did not beat {NAME} on {', '.join(floor_metrics)} within "
                    f"{row['longest']} steps"
                )
            )
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "quality-cpu.json"
    out.write_text(
        json.dumps(
            {
                "floor": {NAME: {n: floor.get(n) for n in shown}},
                "floor_metrics": floor_metrics,
                "held_out": {"fingerprint": held_out.fingerprint, "clips": len(held_out.clips)},
                "runs": rows,
                "load_average": os.getloadavg(),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            },
            indent=1,
        )
        + "\n"
    )
    console.print(f"written: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
