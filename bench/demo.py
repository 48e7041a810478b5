"""`make demo` from a clean clone, timed per stage.

    uv run python bench/demo.py [--runs 2]

Clones this repository's HEAD into a scratch folder and runs `make demo` there, as a new user
would: `uv sync --locked` into a new .venv (timed apart, as `make setup`; what it downloads is
what uv's cache does not hold yet), then `wavefoundry pipeline run` on the embedded defaults. The stage timings come from the run record the pipeline
writes. With `--runs 2` it runs `make demo` again in the same clone: unchanged data, so the
cached tasks are reused. Prints a table; writes bench/results/demo-cpu.json.
Target: the first `make demo` under 10 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"


def make(target: str, clone: Path) -> tuple[float, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    env["BENTOML_HOME"] = str(clone / ".bentoml")
    started = time.perf_counter()
    done = subprocess.run(["make", target], cwd=clone, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"make {target} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def stage_name(path: str) -> str:
    parts = path.split("/")
    return "/".join(parts[-2:]) if "for-loop" in path else parts[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2, help="make demo runs in the same clone")
    args = parser.parse_args()
    console = Console()
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "wavefoundry"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        setup, _ = make("setup", clone)
        for run in range(args.runs):
            seconds, stdout = make("demo", clone)
            line = next(line for line in stdout.splitlines() if line.startswith("run record: "))
            record = json.loads(Path(line.removeprefix("run record: ").split(";")[0]).read_text())
            stages = {
                stage_name(t["path"]): (t["state"], round(t["seconds"], 1)) for t in record["tasks"]
            }
            first = setup if run == 0 else 0.0
            before = seconds - record["seconds"]  # make's own no-op sync, sample corpus, compile
            results.append(
                {
                    "make_setup_s": round(first, 1),
                    "make_demo_s": round(seconds, 1),
                    "total_s": round(first + seconds, 1),
                    "before_pipeline_s": round(before, 1),
                    "pipeline_s": round(record["seconds"], 1),
                    "state": record["state"],
                    # What the run ends saying: its champion and metrics, or why there is none.
                    "champion": [
                        line
                        for line in stdout.splitlines()
                        if line.startswith(("champion", "  "))
                        and ("champion" in line or "refused" in line)
                    ],
                    "stages": stages,
                }
            )
            table = Table(title=f"make demo, run {run + 1}: {first + seconds:.1f} s in all")
            for column in ("stage", "state", "seconds"):
                table.add_column(column)
            if run == 0:
                table.add_row("uv sync --locked into a new .venv", "", f"{setup:.1f}")
            table.add_row("no-op sync, sample corpus, compile", "", f"{before:.1f}")
            for stage, (state, took) in stages.items():
                table.add_row(stage, state, f"{took:.1f}" if took else "")
            console.print(table)
            for line in results[-1]["champion"]:
                console.print(line, markup=False, highlight=False)
    out = {
        "runs": results,
        "target_s": 600,
        "commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo-cpu.json").write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"wrote {RESULTS / 'demo-cpu.json'}")


if __name__ == "__main__":
    main()
