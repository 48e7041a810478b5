"""`make demo`'s pipeline idle and with two CPU-bound processes running throughout: the same
outcome either way (issue 12: a decision must not flip with machine load).

    uv run python bench/demo_load.py [--small]

Runs `wavefoundry pipeline run` (what `make demo` runs) twice, each in a fresh project folder
of its own (its own MLflow file, task cache and BentoML home, so neither reuses the other):
first as the machine is, then with two `python -c 'while True: pass'` processes started before
and stopped after. Compares what a user sees: the exit status, each candidate's verdict (passed
or refused, and the checks that refused it), the champion's family, each task's state. Prints
the two side by side with the wall times and each candidate's rtf (CPU seconds per second of
audio) and rtf_wall, and writes bench/results/demo-load-cpu.json. `--small` shrinks the
sample corpus and the training (as the end-to-end test does) for a quicker look.
Timings on a shared machine are inflated by whatever else runs there.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
BURNER = "while True: pass"


def write_project(folder: Path, small: bool) -> None:
    """params.yaml and the tiny recipe it names; `small`: shrunk as the end-to-end test does."""
    values = yaml.safe_load((ROOT / "params.yaml").read_text())
    tiny = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    if small:
        values["sample_data"].update(ljspeech_clips=20)
        values["datasets"]["ljspeech"]["split"] = {
            "by": "hash", "valid_fraction": 0.2, "test_fraction": 0.2,
        }  # fmt: skip
        values["evaluation"].update(clips=2, max_seconds=0.25, audio_examples=1)
        tiny["training"].update(steps=4, checkpoint_every=4, validate_every=4, log_every=2)
        tiny["training"].pop("per_family", None)  # every family this short
    (folder / "configs").mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    (folder / "configs" / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))


def outcome(folder: Path, done: subprocess.CompletedProcess) -> dict:
    """What a user sees of a run: exit status, task states, verdicts, the champion."""
    import mlflow

    line = next((x for x in done.stdout.splitlines() if x.startswith("run record: ")), "")
    record = json.loads(Path(line.removeprefix("run record: ").split(";")[0]).read_text())
    client = mlflow.MlflowClient(f"sqlite:///{folder / '.wavefoundry' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("wavefoundry")
    candidates = {}
    for run in client.search_runs([experiment.experiment_id]):
        tags, metrics = run.data.tags, run.data.metrics
        if "family" not in tags:
            continue
        verdict = tags.get("wavefoundry.pipeline.decision", "")
        refused_by = sorted(set(re.findall(r"(?:^|; |refused: )([a-z][\w ]*?):", verdict)))
        candidates[tags["family"]] = {
            "passed": verdict.startswith(("champion", "already champion")),
            "verdict": verdict,
            "refused_by": refused_by,
            "rtf": metrics.get("eval/rtf"),
            "rtf_wall": metrics.get("eval/rtf_wall"),
        }
    champion = next(
        (
            x.split("(", 1)[1].split(",")[0]
            for x in done.stdout.splitlines()
            if x.startswith("champion: ")
        ),
        "",
    )
    return {
        "exit": done.returncode,
        "states": {t["path"]: t["state"] for t in record["tasks"]},
        "candidates": candidates,
        "champion_family": champion,
        "seconds": round(record["seconds"], 1),
    }


def demo(small: bool, busy: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        write_project(folder, small)
        env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml"), "PYTHONUNBUFFERED": "1"}
        burners = [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(busy)]
        try:
            started = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "wavefoundry.cli", "pipeline", "run"],
                cwd=folder, env=env, capture_output=True, text=True,
            )  # fmt: skip
            wall = time.perf_counter() - started
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
        if "run record: " not in done.stdout:
            raise SystemExit(f"the run ended without a record:\n{done.stderr[-3000:]}")
        return {**outcome(folder, done), "wall_s": round(wall, 1), "busy_processes": busy}


def same(a: dict, b: dict) -> bool:
    def decided(run: dict) -> dict:
        return {
            "exit": run["exit"],
            "states": run["states"],
            "champion": run["champion_family"],
            "verdicts": {f: (c["passed"], c["refused_by"]) for f, c in run["candidates"].items()},
        }

    return decided(a) == decided(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="test-sized corpus and training")
    args = parser.parse_args()
    console = Console()
    idle, loaded = demo(args.small, 0), demo(args.small, 2)
    table = Table(title="make demo's pipeline: as the machine is, and with 2 CPU burners")
    for column in ("", "as is", "+ 2 burners"):
        table.add_column(column)
    table.add_row("exit status", str(idle["exit"]), str(loaded["exit"]))
    table.add_row("champion", idle["champion_family"], loaded["champion_family"])
    for family in sorted(idle["candidates"]):
        a, b = idle["candidates"][family], loaded["candidates"].get(family, {})
        for key in ("passed", "refused_by", "rtf", "rtf_wall"):
            table.add_row(f"{family} {key}", str(a.get(key)), str(b.get(key)))
    table.add_row("wall seconds", str(idle["wall_s"]), str(loaded["wall_s"]))
    console.print(table)
    verdict = same(idle, loaded)
    console.print(f"same outcome: {verdict}")
    out = {
        "as_is": idle,
        "two_burners": loaded,
        "same_outcome": verdict,
        "small": args.small,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average before "
        f"{os.getloadavg()[0]:.1f} (a shared machine: timings are inflated)",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "demo-load-cpu.json").write_text(json.dumps(out, indent=2) + "\n")
    console.print(f"wrote {RESULTS / 'demo-load-cpu.json'}")
    if not verdict:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
