"""`wavefoundry`: one command per stage. Thin: parse, call the library, print what happened."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wavefoundry import __version__, stages
from wavefoundry.config import DATASETS, SPLITS, Config, load_config
from wavefoundry.data.store import StoreResult
from wavefoundry.errors import UserError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

DESCRIPTION = """\
The lifecycle of audio generation models, one stage per command.

Data stages, in order (each reads what the one before wrote under paths.data, default data/):
  sample-data   generate small LJ Speech, VCTK and NSynth corpora in their official layouts
  ingest        fetch a dataset (folder, archive, http(s) URL, s3://), list every clip, write the manifest
  validate      run the Great Expectations suite; write report.json, summary.txt, quarantine.csv
  store         pack usable clips into per-split int16 audio.npy + index.parquet; record the data version
  prepare       ingest, validate and store one or all datasets

Model stages:
  train         train one model family (wavenet, vqvae, hifigan, wavegan) on a stored dataset,
                tracked in MLflow; checkpoints under runs/DATASET-MODEL/, --resume continues
  evaluate      score a run's model on the fixed held-out clips, log eval/ metrics, audio and
                spectrograms on the run, register it as a version of wavefoundry-DATASET-TASK
  promote       the gate: the challenger takes the `champion` alias only if it beats the champion
  rollback      move the alias back to the version the champion replaced
  compare       every version of a registered model: a table, a chart, an MLflow run

Serving:
  bento build   the champion (or --alias) of a registered model as a Bento: bentoml serve TAG

The lifecycle as one Kubeflow pipeline (what `make demo` runs):
  pipeline run       the whole pipeline here on the CPU: ingest -> validate -> train the
                     families -> evaluate -> promote -> bento build; cached; outcome recorded
  pipeline compile   pipelines/compiled/training_pipeline.yaml from pipelines/training_pipeline.py
  pipeline submit    one run on a Kubeflow Pipelines host; pipeline schedule: a recurring run

Configuration: params.yaml in the working directory, then --config FILE, then --set KEY=VALUE.
A wrong key or value stops before any work, naming the key (exit 2).
"""


def _common(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--params",
        type=Path,
        default=Path("params.yaml"),
        help="params file (default: %(default)s)",
    )
    group.add_argument("--config", type=Path, help="a recipe from configs/, merged over the params")
    group.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set datasets.vctk.mic=mic2 (repeatable)",
    )


def _dataset_arg(parser: argparse.ArgumentParser, allow_all: bool = False) -> None:
    choices = [*DATASETS, "all"] if allow_all else list(DATASETS)
    parser.add_argument("--dataset", "-d", required=True, choices=choices, help="which dataset")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavefoundry",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"wavefoundry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(
        name: str, handler: Callable[[argparse.Namespace, Config], int], help: str
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _common(sub)
        sub.set_defaults(handler=handler)
        return sub

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
    _dataset_arg(sub)
    sub.add_argument(
        "--source",
        action="append",
        metavar="SRC",
        help="folder, archive, http(s):// URL or s3:// URI (repeatable; default: datasets.<name>.source)",
    )

    sub = command(
        "validate", cmd_validate, "check the manifest with the dataset's Great Expectations suite"
    )
    _dataset_arg(sub)

    sub = command(
        "store",
        cmd_store,
        "pack the usable clips into the training store and record the data version",
    )
    _dataset_arg(sub)

    sub = command("prepare", cmd_prepare, "ingest, validate and store a dataset (or all)")
    _dataset_arg(sub, allow_all=True)

    sub = command(
        "train",
        cmd_train,
        "train a model family on a stored dataset, logged to MLflow (several GPUs: torchrun)",
    )
    sub.add_argument(
        "--model", "-m", required=True, metavar="NAME", help="wavenet, vqvae, hifigan or wavegan"
    )
    sub.add_argument(
        "--dataset", "-d", required=True, metavar="NAME", help="ljspeech, vctk or nsynth"
    )
    sub.add_argument(
        "--resume",
        action="store_true",
        help="continue from the run's latest checkpoint (a fresh run replaces old checkpoints)",
    )
    sub.add_argument("--steps", type=int, help="shortcut for --set training.steps=N")
    sub.add_argument(
        "--out", type=Path, help="also write the run (id, model folder, steps, metrics) as JSON"
    )
    sub.epilog = (
        "Sizes: models.NAME in params.yaml (tiny, CPU) or a recipe, e.g. "
        "--config configs/ljspeech-hifigan-v1.yaml. Several GPUs on one node: "
        "torchrun --nproc-per-node 8 -m wavefoundry.cli train -m hifigan -d ljspeech ..."
    )

    sub = command(
        "evaluate",
        cmd_evaluate,
        "score a training run on the held-out clips and register it as a candidate",
    )
    sub.add_argument("--run-id", help="the MLflow run to score (default: the latest of -m on -d)")
    sub.add_argument("--model", "-m", metavar="NAME", help="wavenet, vqvae, hifigan or wavegan")
    sub.add_argument("--dataset", "-d", metavar="NAME", help="ljspeech, vctk or nsynth")
    sub.add_argument(
        "--out", type=Path, help="also write the candidate (version, family, metrics) as JSON"
    )
    sub.epilog = (
        "Every candidate of a task renders the same clips: evaluation.clips from the "
        "evaluation.split split drawn with evaluation.seed, each cut to evaluation.max_seconds."
    )

    def model_name(sub: argparse.ArgumentParser, required: bool = True) -> None:
        sub.add_argument(
            "--model-name",
            required=required,
            metavar="NAME",
            help="registered model, wavefoundry-DATASET-TASK (TASK: vocoder, codec, generator)",
        )

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
        "task's primary metric better by min_relative_improvement; secondaries worse by at most "
        "secondary_tolerance. A champion scored on other data is scored again first."
    )

    sub = command("rollback", cmd_rollback, "give the alias back to the previous champion")
    model_name(sub)

    sub = command(
        "compare", cmd_compare, "the versions of a registered model: table, chart, MLflow run"
    )
    model_name(sub)
    sub.add_argument("--out", type=Path, help="chart PNG (default: .wavefoundry/compare-NAME.png)")

    bento = commands.add_parser(
        "bento", help="build the BentoML service of a registered model", description="Bentos."
    )
    bento_commands = bento.add_subparsers(dest="bento_command", required=True, metavar="COMMAND")
    sub = bento_commands.add_parser(
        "build",
        help="fetch a registered version from MLflow and build a Bento serving it",
        description="Fetch the version an alias points at from the MLflow registry, import its "
        "weights (safetensors) and config into the BentoML model store, and build a Bento of "
        "serving/service.py with pinned dependencies. Then: bentoml serve TAG, or "
        "bentoml containerize TAG where Docker runs. BENTOML_HOME says where the stores are.",
    )
    _common(sub)
    sub.set_defaults(handler=cmd_bento_build)
    model_name(sub, required=False)
    sub.add_argument(
        "--promotion",
        type=Path,
        metavar="FILE",
        help="instead of --model-name: every registered model in a file `promote --out` wrote",
    )
    sub.add_argument("--alias", default="champion", help="which version (default: %(default)s)")
    sub.add_argument("--out", type=Path, help="also write the Bento tags as JSON")

    from wavefoundry.pipeline.commands import add_commands

    add_commands(commands, _common)

    sub = command(
        "config", cmd_config, "print the configuration after params, recipe and overrides"
    )
    return parser


# --- commands ---------------------------------------------------------------------------------


def cmd_sample_data(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.data.synthetic import make_archive

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


def cmd_train(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.training.trainer import PREEMPTED_EXIT_CODE, Distributed, Preempted, train

    if args.steps is not None:
        if args.steps <= 0:
            raise UserError(f"--steps must be positive, got {args.steps}")
        cfg.training.steps = args.steps
    try:
        result = train(cfg, args.model, args.dataset, resume=args.resume)
    except Preempted as stopped:
        err.print(str(stopped))
        return PREEMPTED_EXIT_CODE
    if not Distributed.from_environment().main:
        return 0
    if args.out:
        _write_json(args.out, result.as_record())
    out.print(
        _metric_table(
            f"{args.model} on {args.dataset}: {result.steps} steps",
            {**result.metrics, **result.validation},
        )
    )
    out.print(f"model: {result.model_dir} (safetensors + config.json)")
    out.print(f"checkpoints: {result.run_dir / 'checkpoints'}")
    if result.run_id:
        out.print(f"MLflow run {result.run_id} at {cfg.tracking.uri}; model {result.model_uri}")
    out.print(f"done in {result.seconds:.1f} s")
    return 0


def _metric_table(title: str, metrics: dict[str, float]) -> Table:
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4g}")
    return table


def cmd_evaluate(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.evaluation.evaluate import evaluate

    started = time.perf_counter()
    done = evaluate(cfg, args.run_id, args.model, args.dataset)
    candidate, score = done.candidate, done.score
    out.print(
        _metric_table(
            f"{done.run_name}: {len(score.clips)} held-out clips (set {score.fingerprint})",
            score.metrics,
        )
    )
    out.print(
        f"registered as [bold]{candidate.name}[/] version {candidate.version} "
        f"(run {candidate.run_id}); promote it with: wavefoundry promote --model-name "
        f"{candidate.name} --version {candidate.version}"
    )
    if args.out:
        _write_json(args.out, candidate.as_record())
    out.print(f"done in {time.perf_counter() - started:.1f} s")
    return 0


def _decision_table(outcome) -> Table:
    decision = outcome.decision
    champion = decision.champion
    verdict = "[green]PASSED[/]" if decision.passed else "[red]REFUSED[/]"
    table = Table(
        title=f"{decision.model}: v{decision.challenger.version} ({decision.challenger.family}) "
        f"against {f'v{champion.version} ({champion.family})' if champion else 'no champion'}: "
        f"{verdict}"
    )
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
    from wavefoundry.registry.promotion import promote

    if args.candidates:
        return _promote_candidates(args, cfg)
    if not args.model_name:
        raise UserError("give --model-name (or --candidates)")
    outcome = promote(cfg, args.model_name, args.version, args.run_id, dry_run=args.dry_run)
    decision = outcome.decision
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
    import json

    from wavefoundry.registry.promotion import promote_best

    if args.dry_run:
        raise UserError("--dry-run takes one challenger: give --model-name and --version")
    records = [json.loads(f.read_text()) for f in _candidate_files(args.candidates, cfg)]
    contests = promote_best(cfg, [(r["registered_model"], r["version"]) for r in records])
    for contest in contests:
        if contest.outcome is not None:
            out.print(_decision_table(contest.outcome))
        out.print(f"{contest.name} v{contest.version}: {contest.verdict}")
    if args.out:
        verdicts = [
            {"registered_model": c.name, "version": c.version, "verdict": c.verdict}
            for c in contests
        ]
        _write_json(
            args.out,
            {"registered_models": sorted({c.name for c in contests}), "contests": verdicts},
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
    table = Table(title=f"{args.model_name}: {len(result.candidates)} candidates")
    for column in ("candidate", "aliases", "data version", *result.metrics):
        table.add_column(column, justify="right" if column in result.metrics else "left")
    best = {}
    for metric in result.metrics:
        values = result.table[metric].dropna()
        if not values.empty and metric in METRICS:
            best[metric] = values.max() if METRICS[metric].higher_is_better else values.min()
    for _, row in result.table.iterrows():
        cells = []
        for metric in result.metrics:
            text = f"{row[metric]:.4g}" if pd.notna(row[metric]) else "-"
            cells.append(f"[bold]{text}[/]" if row[metric] == best.get(metric) else text)
        table.add_row(row["candidate"], row["aliases"], row["data_version"], *cells)
    out.print(table)
    if result.baseline is not None:
        out.print(
            f"{result.baseline.name} (baseline): Griffin-Lim from the same mel, on the newest "
            f"candidate's held-out set (run {result.baseline.run_id}); promotion.floor holds "
            "vocoders and codecs to it"
        )
    out.print(f"chart: {result.chart}; logged to MLflow run {result.run_id}")
    return 0


def cmd_bento_build(args: argparse.Namespace, cfg: Config) -> int:
    import json

    from wavefoundry.serving.bento import build

    if bool(args.model_name) == bool(args.promotion):
        raise UserError("give --model-name or --promotion (one of them)")
    names = [args.model_name]
    if args.promotion:
        if not args.promotion.is_file():
            raise UserError(f"no promotion file {args.promotion}: write it with promote --out")
        names = json.loads(args.promotion.read_text())["registered_models"]
    tags = []
    for name in names:
        started = time.perf_counter()
        built = build(cfg, name, args.alias)
        out.print(
            f"built Bento [bold]{built.tag}[/] serving {built.registered_model} version "
            f"{built.version} (BentoML model {built.model_tag}) in "
            f"{time.perf_counter() - started:.1f} s"
        )
        out.print(f"serve it:       bentoml serve {built.tag} --port 3000")
        out.print(f"containerize:   bentoml containerize {built.tag}")
        tags.append(built.tag)
    if args.out:
        _write_json(args.out, {"tags": tags})
    for tag in tags:
        out.print(tag, markup=False)
    return 0


def _write_json(path: Path, data: object) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def cmd_config(args: argparse.Namespace, cfg: Config) -> int:
    import yaml

    out.print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), markup=False)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.params, args.config, args.overrides)
        return args.handler(args, cfg)
    except UserError as error:
        err.print(f"[bold red]error:[/] {escape(str(error))}")
        return error.exit_code
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
