"""The data path (ingest, validate, store) beside a plain read-measure-hash loop, and its memory.

    uv run python bench/ingest.py [--hours 1.0] [--repeats 5] [--workers 0] [--work DIR]
                                  [--memory-hours 2 20]

Generates (once, cached in --work) an LJ Speech 1.1 corpus of at least --hours of audio. Then,
one fresh process per measurement, interleaved, --repeats times each:

- plain: a `multiprocessing.Pool` of --workers processes (one per core by default) that reads
  each WAV, sha256-hashes its bytes and measures duration, peak and RMS (soundfile + numpy),
  the least any ingest must do;
- wavefoundry: `stages.ingest`, `stages.validate` and `stages.store` into a fresh data folder,
  each stage in its own process as `dvc repro` runs them (the three together are one
  measurement).

Imports happen before the clock starts on both sides (Great Expectations' import alone is
seconds; it is reported apart). The medians are printed side by side with the ratio and hours of audio per
minute. Targets (issue 17): the whole data path >= 1.2x the plain loop's speed and >= 200 h/min.
Beside them, the floor of the path as designed: the validation's measured time plus DVC's md5 of
the audio (CPU seconds in a process of its own) spread over the cores.

Memory: NSynth-format corpora of each --memory-hours (generated once, cached in --work) are
put through the same three processes; the store's peak RSS is compared: target, the largest
within 10% of the smallest. Writes bench/results/ingest.json.

The machine may be shared: the load average before and after is recorded with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results" / "ingest.json"
TARGET_RATIO = 1.2
TARGET_HOURS_PER_MINUTE = 200.0
TARGET_MEMORY_GROWTH = 0.10
STAGES = ("ingest", "validate", "store")
NSYNTH_NOTES_PER_INSTRUMENT = 30  # 4 s each: 2 minutes of audio per instrument


def ljspeech_corpus(work: Path, hours: float) -> Path:
    from wavefoundry.samples import make_ljspeech

    root = work / f"ljspeech-{hours:g}h"
    done = root / ".complete"
    if not done.exists():
        print(f"generating {hours:g} h of LJ Speech-format audio in {root} (once)", flush=True)
        started = time.perf_counter()
        make_ljspeech(root, hours=hours, seed=0, workers=len(os.sched_getaffinity(0)))
        done.write_text(f"{time.perf_counter() - started:.1f}\n")
    return root / "LJSpeech-1.1"


def nsynth_corpus(work: Path, hours: float) -> Path:
    """An NSynth-format corpus of `hours` of 4 s notes, a tenth of the instruments in each of
    valid and test."""
    from wavefoundry.samples import make_nsynth

    root = work / f"nsynth-{hours:g}h"
    done = root / ".complete"
    if not done.exists():
        print(f"generating {hours:g} h of NSynth-format notes in {root} (once)", flush=True)
        instruments = round(hours * 3600 / 4 / NSYNTH_NOTES_PER_INSTRUMENT)
        held_out = max(1, instruments // 10)
        started = time.perf_counter()
        make_nsynth(
            root,
            instruments_per_split={
                "train": instruments - 2 * held_out,
                "valid": held_out,
                "test": held_out,
            },
            notes_per_instrument=NSYNTH_NOTES_PER_INSTRUMENT,
        )
        done.write_text(f"{time.perf_counter() - started:.1f}\n")
    return root / "nsynth"


# One measurement, in its own process ---------------------------------------------------------


def _plain_measure(path: str) -> tuple[str, float, float, float]:
    import hashlib
    import io

    import numpy as np
    import soundfile as sf

    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    audio, sample_rate = sf.read(io.BytesIO(data), dtype="float32")
    rms = float(np.sqrt(np.mean(np.square(audio))))
    return digest, len(audio) / sample_rate, float(np.abs(audio).max()), rms


def measure_plain(source: Path, workers: int) -> dict[str, Any]:
    import multiprocessing

    import numpy  # noqa: F401 - imported before the clock, as the project's modules are
    import soundfile  # noqa: F401

    started = time.perf_counter()
    paths = sorted(str(p) for p in (source / "wavs").glob("*.wav"))
    with multiprocessing.Pool(workers) as pool:
        measured = pool.map(_plain_measure, paths)
    seconds = time.perf_counter() - started
    return {"total_s": seconds, "clips": len(measured), "hours": sum(m[1] for m in measured) / 3600}


def measure_md5(source: Path) -> dict[str, Any]:
    """CPU seconds of md5 (DVC's file hash, which the store computes for the data version) over
    every WAV's bytes, read before the clock: the least hashing any store that keeps the data
    version equal to DVC's must do, on one core."""
    import hashlib

    blobs = [p.read_bytes() for p in sorted((source / "wavs").glob("*.wav"))]
    started = time.process_time()
    for blob in blobs:
        hashlib.md5(blob).hexdigest()
    return {"md5_cpu_s": time.process_time() - started, "bytes": sum(map(len, blobs))}


def _config(dataset: str, source: Path, data: Path, workers: int) -> Any:
    from wavefoundry.config import load_config

    return load_config(
        None,
        overrides=[
            f"paths.data={data}",
            f"workers={workers}",
            f"datasets.{dataset}.source={source}",
        ],
    )


def _import_for(stage: str) -> float:
    """Import what `wavefoundry <stage>` imports, before the clock; returns the seconds."""
    started = time.perf_counter()
    import wavefoundry.data.download  # noqa: F401
    import wavefoundry.stages  # noqa: F401
    import wavefoundry.validation  # noqa: F401

    if stage == "validate":
        from wavefoundry.validation.suite import import_gx

        import_gx()
    return time.perf_counter() - started


def measure_stage(dataset: str, source: Path, data: Path, workers: int, stage: str) -> dict:
    """One stage in this process, as `dvc repro` runs each stage as its own command."""
    imports_s = _import_for(stage)
    from wavefoundry import stages

    cfg = _config(dataset, source, data, workers)
    rss_after_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    out = getattr(stages, stage)(cfg, dataset)
    result: dict[str, Any] = {
        "seconds": time.perf_counter() - started,
        "imports_s": imports_s,
        "rss_after_imports_mb": rss_after_imports,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "workers_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }
    if stage == "ingest":
        result.update(clips=out.clips, hours=out.hours)
    if stage == "validate" and not out.success:
        raise SystemExit(f"bench: validation of the generated {dataset} corpus failed")
    if stage == "store":
        result.update(clips=sum(out.clips.values()), hours=sum(out.seconds.values()) / 3600)
    return result


def measure_project(dataset: str, source: Path, data: Path, workers: int) -> dict[str, Any]:
    """The data path into a fresh `data` folder, each stage in a fresh process."""
    shutil.rmtree(data, ignore_errors=True)
    result: dict[str, Any] = {"imports_s": 0.0}
    for stage in STAGES:
        out = one(["stage", dataset, str(source), str(data), str(workers), stage])
        result[f"{stage}_s"] = out["seconds"]
        result["imports_s"] += out["imports_s"]
        result[stage] = out
    result["total_s"] = sum(result[f"{s}_s"] for s in STAGES)
    result.update(clips=result["ingest"]["clips"], hours=result["ingest"]["hours"])
    result["stored_clips"] = result["store"]["clips"]
    return result


def one(argv: list[str]) -> dict[str, Any]:
    """Run one measurement in a fresh process and return what it printed."""
    done = subprocess.run(
        [sys.executable, __file__, "--one", *argv],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


# The driver -----------------------------------------------------------------------------------


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


def side_by_side(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    from rich.progress import track

    source = ljspeech_corpus(args.work, args.hours)
    data = args.work / "data-ljspeech"
    plain, project = [], []
    for _ in track(range(args.repeats), description="plain loop and wavefoundry, interleaved"):
        plain.append(one(["plain", str(source), str(workers)]))
        project.append(measure_project("ljspeech", source, data, workers))
    hours = project[0]["hours"]
    if any(run["stored_clips"] != run["clips"] for run in project):
        raise SystemExit("bench: not every clip of the generated LJ Speech corpus was stored")
    if abs(plain[0]["hours"] - hours) > 1e-6 or plain[0]["clips"] != project[0]["clips"]:
        raise SystemExit("bench: the plain loop and wavefoundry saw different audio")
    medians = {"plain_s": statistics.median(r["total_s"] for r in plain)}
    for key in (*(f"{s}_s" for s in STAGES), "total_s", "imports_s"):
        medians[key] = statistics.median(r[key] for r in project)
    md5 = statistics.median(one(["md5", str(source)])["md5_cpu_s"] for _ in range(args.repeats))
    cores = len(os.sched_getaffinity(0))
    # The least the data path can take as designed: validation (Great Expectations, after
    # ingest, before store) as measured, plus DVC's md5 of the audio spread over every core,
    # with reading, measuring and writing free.
    floor_s = medians["validate_s"] + md5 / cores
    return {
        "corpus": f"LJ Speech 1.1 format, {project[0]['clips']} clips",
        "hours_of_audio": hours,
        "clips": project[0]["clips"],
        "median_s": medians,
        "hours_per_minute": {
            key.removesuffix("_s"): hours / (medians[key] / 60)
            for key in ("plain_s", *(f"{s}_s" for s in STAGES), "total_s")
        },
        "speed_ratio": medians["plain_s"] / medians["total_s"],
        "floor": {
            "target_budget_s": medians["plain_s"] / TARGET_RATIO,
            "validate_s": medians["validate_s"],
            "md5_cpu_s": md5,
            "cores": cores,
            "floor_s": floor_s,
            "best_possible_ratio": medians["plain_s"] / floor_s,
        },
        "runs": {"plain": plain, "wavefoundry": project},
    }


def memory(args: argparse.Namespace, workers: int) -> list[dict[str, Any]]:
    rows = []
    for hours in args.memory_hours:
        source = nsynth_corpus(args.work, hours)
        data = args.work / f"data-nsynth-{hours:g}h"
        run = measure_project("nsynth", source, data, workers)
        stored = run["store"]
        rows.append(
            {
                "hours": run["hours"],
                "clips": run["clips"],
                "stored_clips": run["stored_clips"],
                "ingest_s": run["ingest_s"],
                "ingest_peak_rss_mb": run["ingest"]["peak_rss_mb"],
                "ingest_workers_peak_rss_mb": run["ingest"]["workers_peak_rss_mb"],
                "validate_s": run["validate_s"],
                "store_s": run["store_s"],
                "store_rss_after_imports_mb": stored["rss_after_imports_mb"],
                "store_peak_rss_mb": stored["peak_rss_mb"],
            }
        )
        shutil.rmtree(data, ignore_errors=True)
    return rows


def report(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    speed = result["side_by_side"]
    medians, per_minute = speed["median_s"], speed["hours_per_minute"]
    console = Console()
    table = Table(
        title=(
            f"{speed['hours_of_audio']:.2f} h of 22,050 Hz audio ({speed['clips']} clips), "
            f"{result['cores']} cores, {result['workers']} workers, median of "
            f"{result['repeats']} fresh processes each, interleaved"
        )
    )
    for column in ("", "seconds", "h of audio / min"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        "plain loop: read, sha256, duration/peak/RMS",
        f"{medians['plain_s']:.3f}",
        f"{per_minute['plain']:.0f}",
    )
    for stage in STAGES:
        table.add_row(
            f"wavefoundry {stage}", f"{medians[f'{stage}_s']:.3f}", f"{per_minute[stage]:.0f}"
        )
    table.add_row(
        "[bold]wavefoundry data path[/]",
        f"[bold]{medians['total_s']:.3f}[/]",
        f"[bold]{per_minute['total']:.0f}[/] (target {TARGET_HOURS_PER_MINUTE:.0f})",
    )
    table.add_row(
        "[bold]speed vs the plain loop[/]",
        f"[bold]{speed['speed_ratio']:.2f}x[/] (target {TARGET_RATIO}x)",
        "",
    )
    console.print(table)
    floor = speed["floor"]
    console.print(
        f"the {TARGET_RATIO}x target allows {floor['target_budget_s']:.3f} s for the whole path; "
        f"validation (Great Expectations) alone took {floor['validate_s']:.3f} s and DVC's md5 "
        f"of the audio takes {floor['md5_cpu_s']:.3f} CPU s ({floor['md5_cpu_s'] / floor['cores']:.3f} s "
        f"on {floor['cores']} cores): with reading, measuring and writing free, the path would "
        f"take {floor['floor_s']:.3f} s, {floor['best_possible_ratio']:.2f}x the plain loop"
    )
    console.print(
        f"not counted: imports before the clock (Great Expectations included), median "
        f"{medians['imports_s']:.2f} s; load average before {result['loadavg_before']}, "
        f"after {result['loadavg_after']}"
    )
    if result["memory"]:
        table = Table(title="peak memory of the store process, NSynth format")
        for column in ("hours", "clips", "stored", "store s", "RSS after imports MB", "peak MB"):
            table.add_column(column, justify="right")
        for row in result["memory"]:
            table.add_row(
                f"{row['hours']:.1f}",
                str(row["clips"]),
                str(row["stored_clips"]),
                f"{row['store_s']:.2f}",
                f"{row['store_rss_after_imports_mb']:.0f}",
                f"{row['store_peak_rss_mb']:.0f}",
            )
        console.print(table)
        console.print(
            f"peak RSS growth, largest corpus over smallest: {result['memory_growth']:+.1%} "
            f"(target within {TARGET_MEMORY_GROWTH:.0%})"
        )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        kind, *rest = sys.argv[2:]
        if kind == "plain":
            out = measure_plain(Path(rest[0]), int(rest[1]))
        elif kind == "md5":
            out = measure_md5(Path(rest[0]))
        else:
            dataset, source, data, workers, stage = rest
            out = measure_stage(dataset, Path(source), Path(data), int(workers), stage)
        print(json.dumps(out))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hours", type=float, default=1.0, help="LJ Speech-format audio")
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per side")
    parser.add_argument("--workers", type=int, default=0, help="processes; 0 = one per core")
    parser.add_argument(
        "--memory-hours",
        type=float,
        nargs="*",
        default=[2.0, 20.0],
        help="NSynth-format corpora whose store's peak memory is compared (none: skip)",
    )
    parser.add_argument(
        "--work", type=Path, default=Path(tempfile.gettempdir()) / "wavefoundry-bench"
    )
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    workers = args.workers or cores
    before = loadavg()
    speed = side_by_side(args, workers)
    rows = memory(args, workers) if args.memory_hours else []
    peaks = [row["store_peak_rss_mb"] for row in rows]
    result = {
        "side_by_side": speed,
        "memory": rows,
        "memory_growth": peaks[-1] / peaks[0] - 1 if peaks else None,
        "targets": {
            "speed_ratio": TARGET_RATIO,
            "hours_per_minute": TARGET_HOURS_PER_MINUTE,
            "memory_growth": TARGET_MEMORY_GROWTH,
        },
        "repeats": args.repeats,
        "cores": cores,
        "workers": workers,
        "machine": platform.processor() or platform.machine(),
        "loadavg_before": before,
        "loadavg_after": loadavg(),
    }
    report(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS}")


if __name__ == "__main__":
    main()
