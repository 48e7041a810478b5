"""Ingest + manifest + store throughput on a generated LJ Speech-format corpus.

    uv run python bench/ingest.py [--hours 1.0] [--workers 0] [--work DIR]

Generates (once, cached in --work) an LJ Speech 1.1 corpus of at least --hours of audio,
then times the three data stages the way `wavefoundry` runs them, cold from a fresh output
folder each repeat, and prints hours of audio processed per minute. Target: 30 h/min on
2 cores (all of LJ Speech's 24 h in under a minute). Validation is timed and shown too,
but not counted: its cost does not grow with the audio. Writes bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wavefoundry import stages
from wavefoundry.config import load_config
from wavefoundry.samples import make_ljspeech

RESULTS = Path(__file__).parent / "results" / "ingest.json"


def corpus(work: Path, hours: float) -> Path:
    root = work / f"ljspeech-{hours:g}h"
    done = root / ".complete"
    if not done.exists():
        started = time.perf_counter()
        make_ljspeech(root, hours=hours, seed=0)
        done.write_text(f"{time.perf_counter() - started:.1f}\n")
    return root / "LJSpeech-1.1"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hours", type=float, default=1.0, help="audio to generate (default: %(default)s)"
    )
    parser.add_argument("--workers", type=int, default=0, help="processes; 0 = one per core")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs; the best is reported")
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "wavefoundry-bench"
    )
    args = parser.parse_args()

    console = Console()
    source = corpus(args.work, args.hours)
    generation = float((source.parent / ".complete").read_text())
    runs = []
    for _ in range(args.repeats):
        data = args.work / "data"
        shutil.rmtree(data, ignore_errors=True)
        cfg = load_config(
            None,
            overrides=[
                f"paths.data={data}",
                f"workers={args.workers}",
                f"datasets.ljspeech.source={source}",
            ],
        )
        t0 = time.perf_counter()
        ingested = stages.ingest(cfg, "ljspeech")
        t1 = time.perf_counter()
        validated = stages.validate(cfg, "ljspeech")
        t2 = time.perf_counter()
        stored = stages.store(cfg, "ljspeech")
        t3 = time.perf_counter()
        assert validated.success and sum(stored.clips.values()) == ingested.clips
        runs.append(
            {
                "ingest_s": t1 - t0,
                "validate_s": t2 - t1,
                "store_s": t3 - t2,
                "hours": ingested.hours,
            }
        )

    best = min(runs, key=lambda r: r["ingest_s"] + r["store_s"])
    counted = best["ingest_s"] + best["store_s"]
    per_minute = best["hours"] / (counted / 60)
    result = {
        "hours_of_audio": round(best["hours"], 3),
        "clips": ingested.clips,
        "ingest_manifest_s": round(best["ingest_s"], 2),
        "store_s": round(best["store_s"], 2),
        "validate_s": round(best["validate_s"], 2),
        "hours_per_minute": round(per_minute, 1),
        "target_hours_per_minute": 30,
        "corpus_generation_s": generation,
        "cores": len(os.sched_getaffinity(0)),
        "workers": args.workers or len(os.sched_getaffinity(0)),
        "machine": platform.processor() or platform.machine(),
        "runs": runs,
    }
    table = Table(
        title=f"ingest + manifest + store, {best['hours']:.2f} h of 22,050 Hz audio, {result['cores']} cores"
    )
    for column in ("stage", "seconds"):
        table.add_column(column)
    table.add_row("ingest + manifest", f"{best['ingest_s']:.2f}")
    table.add_row("store (+ data version)", f"{best['store_s']:.2f}")
    table.add_row("validate (not counted)", f"{best['validate_s']:.2f}")
    table.add_row("[bold]hours of audio per minute[/]", f"[bold]{per_minute:.1f}[/] (target 30)")
    console.print(table)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
