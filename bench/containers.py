"""Containers, timed: the component image's build (cold and warm), its size, and the pipeline
with every task in the image against every task in this environment.

    uv run python bench/containers.py [--cold] [--steps N]

Builds components/Dockerfile with podman from a clean clone of HEAD (`--cold` first removes the
image, its base and podman's build cache, so everything is made again: the base with
mmdebstrap, and every layer; uv's download cache for the build is gone too), then builds it
again with nothing changed. Then runs `wavefoundry pipeline run --no-cache --steps N` (every
family N steps, 4 by default: the overhead is per task, not per step) in two fresh project
folders on the same sample data, once per runner, and compares each task's seconds (from the run
records). Prints a table; writes bench/results/containers-cpu-{cold,warm}.json.
Target: a rebuild with nothing changed in seconds; CI's whole run under 30 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wavefoundry import containers

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
BUILD_CACHE = Path("/var/tmp/buildah-cache")


def timed_build(clone: Path) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "wavefoundry.cli", "image", "build", "--context", str(clone)]
    done = subprocess.run(command, text=True)
    if done.returncode:
        raise SystemExit("the build failed (its output is above)")
    return time.perf_counter() - started


def pipeline(project: Path, runner: str, steps: int) -> tuple[float, dict[str, float]]:
    env = {**os.environ, "BENTOML_HOME": str(project / "bentoml")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "wavefoundry.cli", "pipeline", "run", "--no-cache"]
        + ["--runner", runner, "--steps", str(steps)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{runner} run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("run record: "))
    record = json.loads(Path(line.removeprefix("run record: ").split(";")[0]).read_text())
    return seconds, {t["path"]: t["seconds"] for t in record["tasks"]}  # a loop's by item


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="remove image, base and build cache")
    parser.add_argument("--steps", type=int, default=4, help="every family's training steps")
    args = parser.parse_args()
    console = Console()
    load = os.getloadavg()[0]
    if args.cold:
        for name in (containers.IMAGE, containers.LOCAL_BASE):
            if containers.image_exists(name):
                containers.podman("rmi", "--force", name, capture=True)
        containers.podman("system", "prune", "--all", "--force", capture=True)
        # podman 4.3 keeps RUN --mount=type=cache folders (uv's downloads) here, and has no
        # `system prune --build` to empty it.
        shutil.rmtree(BUILD_CACHE, ignore_errors=True)
    with tempfile.TemporaryDirectory() as scratch:
        clone = Path(scratch) / "wavefoundry"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        first = timed_build(clone)
        warm = timed_build(clone)
        size = containers.image_size(containers.IMAGE)
        runs = {}
        for runner in ("subprocess", "container"):
            project = Path(scratch) / runner
            project.mkdir()
            for name in ("params.yaml", "configs"):
                subprocess.run(["cp", "-r", str(ROOT / name), str(project / name)], check=True)
            runs[runner] = pipeline(project, runner, args.steps)
    after = os.getloadavg()[0]
    table = Table(
        title=f"containers (load average {load:.1f} before, {after:.1f} after, "
        f"on {os.cpu_count()} cores; {args.steps} steps a family)"
    )
    table.add_column("what")
    table.add_column("subprocess", justify="right")
    table.add_column("container", justify="right")
    table.add_column("overhead", justify="right")
    table.add_row(f"image build ({'cold' if args.cold else 'first'})", "", f"{first:.0f} s", "")
    table.add_row("image build, nothing changed", "", f"{warm:.1f} s", "")
    table.add_row("image size", "", f"{size / 2**30:.2f} GiB", "")
    (here_total, here), (there_total, there) = runs["subprocess"], runs["container"]
    for task, seconds in here.items():
        if task in there and seconds:
            extra = there[task] - seconds
            table.add_row(task, f"{seconds:.1f} s", f"{there[task]:.1f} s", f"{extra:+.1f} s")
    per_task = (there_total - here_total) / max(1, len(here))
    table.add_row(
        "whole run", f"{here_total:.0f} s", f"{there_total:.0f} s", f"{per_task:+.1f} s/task"
    )
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    result = {
        "machine": platform.platform(),
        "cores": os.cpu_count(),
        "load_average": load,
        "cold": args.cold,
        "steps": args.steps,
        "load_average_after": after,
        "build_first_s": first,
        "build_unchanged_s": warm,
        "image_bytes": size,
        "pipeline_s": {"subprocess": here_total, "container": there_total},
        "task_s": {"subprocess": here, "container": there},
        "overhead_per_task_s": per_task,
    }
    name = f"containers-cpu-{'cold' if args.cold else 'warm'}.json"
    (RESULTS / name).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
