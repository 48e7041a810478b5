"""The data stages: sample-data, ingest, validate, store, prepare."""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from wavefoundry import stages
from wavefoundry.cli.common import Command, dataset_arg, err, out
from wavefoundry.config import DATASETS, SPLITS, Config
from wavefoundry.data.store import StoreResult


def add_commands(commands: Any, command: Command) -> None:
    sub = command(
        "sample-data",
        cmd_sample_data,
        "generate the sample corpora in each dataset's official layout",
    )
    sub.add_argument(
        "--dataset", "-d", action="append", choices=[*DATASETS, "all"], help="which (default: all)"
    )
    sub.add_argument("--out", type=Path, help="folder to write into (default: <paths.data>/sample)")
    sub.add_argument(
        "--archives", action="store_true", help="also write each corpus as its official archive"
    )

    sub = command(
        "ingest",
        cmd_ingest,
        "fetch a dataset, list every clip and probe its audio into the manifest",
    )
    dataset_arg(sub)
    sub.add_argument(
        "--source",
        action="append",
        metavar="SRC",
        help="folder, archive, http(s):// URL or s3:// URI (repeatable; default: datasets.<name>.source)",
    )

    sub = command(
        "validate", cmd_validate, "check the manifest with the dataset's Great Expectations suite"
    )
    dataset_arg(sub)

    sub = command(
        "store",
        cmd_store,
        "pack the usable clips into the training store and record the data version",
    )
    dataset_arg(sub)

    sub = command("prepare", cmd_prepare, "ingest, validate and store a dataset (or all)")
    dataset_arg(sub, allow_all=True)


def cmd_sample_data(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.samples import make_archive

    names = (
        list(DATASETS)
        if not args.dataset or "all" in args.dataset
        else list(dict.fromkeys(args.dataset))
    )
    made = stages.sample_data(cfg, names, args.out)
    for name, path in made.items():
        out.print(f"[bold]{name}[/]: sample corpus at {path}")
        if args.archives:
            for archive in _archives_for(name, path):
                make_archive(archive[0], archive[1])
                out.print(f"  archive {archive[1]}")
    return 0


def _archives_for(name: str, path: Path) -> list[tuple[Path, Path]]:
    """The official archive names: LJSpeech-1.1.tar.bz2, VCTK-Corpus-0.92.zip, nsynth-*.jsonwav.tar.gz."""
    if name == "ljspeech":
        return [(path, path.parent / "LJSpeech-1.1.tar.bz2")]
    if name == "vctk":
        return [(path, path.parent / "VCTK-Corpus-0.92.zip")]
    return [
        (split, path.parent / f"{split.name}.jsonwav.tar.gz")
        for split in sorted(path.glob("nsynth-*"))
    ]


def _ingest(cfg: Config, dataset: str, sources: list[str] | None = None) -> stages.IngestResult:
    started = time.perf_counter()
    result = stages.ingest(cfg, dataset, sources)
    problems = ", ".join(f"{n} {status}" for status, n in sorted(result.problems.items())) or "none"
    if result.warnings:
        problems += f"; {result.warnings} read with a warning (manifest column `warning`)"
    if result.os_junk:
        problems += f"; {result.os_junk} OS junk files ignored (._*, __MACOSX/, .DS_Store, ...)"
    out.print(
        f"[bold]{dataset}[/] ingest: {result.clips} clips ({result.hours * 60:.1f} min of audio), "
        f"{result.usable} readable, problems: {problems} -> {result.manifest_path} "
        f"[dim]({time.perf_counter() - started:.1f} s)[/]"
    )
    return result


def _validate(cfg: Config, dataset: str):
    from wavefoundry.validation import render_summary

    started = time.perf_counter()
    result = stages.validate(cfg, dataset)
    out.print(render_summary(result), markup=False)
    out.print(f"  report: {result.report_path} [dim]({time.perf_counter() - started:.1f} s)[/]")
    return result


def _store(cfg: Config, dataset: str) -> StoreResult:
    started = time.perf_counter()
    result = stages.store(cfg, dataset)
    splits = ", ".join(
        f"{s} {n} clips / {result.seconds[s] / 60:.1f} min" for s, n in result.clips.items()
    )
    out.print(
        f"[bold]{dataset}[/] store: {splits} at {result.sample_rate} Hz -> {result.out_dir} "
        f"(data version {result.data_version}, {result.excluded} clips left out) "
        f"[dim]({time.perf_counter() - started:.1f} s)[/]"
    )
    return result


def cmd_ingest(args: argparse.Namespace, cfg: Config) -> int:
    _ingest(cfg, args.dataset, args.source)
    return 0


def cmd_validate(args: argparse.Namespace, cfg: Config) -> int:
    return 0 if _validate(cfg, args.dataset).success else 1


def cmd_store(args: argparse.Namespace, cfg: Config) -> int:
    _store(cfg, args.dataset)
    return 0


def _prepare(cfg: Config, datasets: Sequence[str]) -> tuple[Table, list[str]]:
    """Ingest, validate and store each dataset. A dataset whose suite fails is not stored; the
    others go on. Returns a table of what happened and the datasets that failed."""
    table = Table(title="data stages")
    failed = []
    for column in (
        "dataset",
        "clips",
        "quarantined",
        "stored (train/valid/test)",
        "suite",
        "data version",
    ):
        table.add_column(column)
    for dataset in datasets:
        ingested = _ingest(cfg, dataset)
        validated = _validate(cfg, dataset)
        stored = _store(cfg, dataset) if validated.success else None
        if not validated.success:
            failed.append(dataset)
        counts = "/".join(str(stored.clips.get(s, 0)) for s in SPLITS) if stored else "not stored"
        table.add_row(
            dataset,
            str(ingested.clips),
            str(validated.quarantined),
            counts,
            "passed" if validated.success else "[red]FAILED[/]",
            stored.data_version[:12] if stored else "-",
        )
    return table, failed


def _report(table: Table, failed: list[str], cfg: Config, started: float) -> int:
    out.print(table)
    data = cfg.paths.data
    out.print(
        f"outputs under {data}/: manifest/NAME.parquet, validated/NAME/(report.json, summary.txt, "
        f"quarantine.csv), processed/NAME/SPLIT/(audio.npy, index.parquet), processed/NAME.version.json"
    )
    out.print(f"done in {time.perf_counter() - started:.1f} s")
    if failed:
        err.print(
            f"validation failed for {', '.join(failed)}: not stored (see the summaries above)"
        )
        return 1
    return 0


def cmd_prepare(args: argparse.Namespace, cfg: Config) -> int:
    started = time.perf_counter()
    datasets = list(DATASETS) if args.dataset == "all" else [args.dataset]
    return _report(*_prepare(cfg, datasets), cfg, started)
