"""`wavefoundry pipeline compile|run|submit|schedule`: thin, like the rest of the CLI."""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from wavefoundry.cli.common import Command, common, err, out
from wavefoundry.config import DATASETS, FAMILIES, Config, read_layer, split_layer
from wavefoundry.errors import UserError

RUN_HELP = """\
The lifecycle as one run on this machine: the compiled Kubeflow pipeline (pipelines/
training_pipeline.py) with kfp.local's SubprocessRunner, in this environment, on the CPU:
data revision -> ingest -> validate (+ store) -> train and evaluate each family -> promote ->
bento build, and the exit handler recording the outcome in MLflow whatever happens.

Defaults: pipeline.dataset and pipeline.families of params.yaml, the dataset's sources (the
sample corpus is made when they are the sample), MLflow at tracking.uri. Tasks are cached
under pipeline.root: a second run on unchanged data reuses ingest and validate (and the
training of unchanged settings). --config and --set travel with the run as its configuration.
"""


def add_commands(commands: Any, command: Command) -> None:
    group = commands.add_parser(
        "pipeline",
        help="the lifecycle as one Kubeflow pipeline: compile, run here, submit, schedule",
        description="The lifecycle as one Kubeflow pipeline (pipelines/training_pipeline.py).",
    )
    sub = group.add_subparsers(dest="pipeline_command", required=True, metavar="COMMAND")

    def subcommand(name: str, handler: Callable, help: str, description: str | None = None):
        parser = sub.add_parser(
            name,
            help=help,
            description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        common(parser)
        parser.set_defaults(handler=handler)
        return parser

    parser = subcommand(
        "compile",
        cmd_compile,
        "compile pipelines/training_pipeline.py to pipelines/compiled/training_pipeline.yaml",
    )
    parser.add_argument("--out", type=Path, help="where (default: the checked-in file)")
    parser.add_argument(
        "--image", help="the components' image (default: WAVEFOUNDRY_IMAGE, else the release's)"
    )

    parser = subcommand("run", cmd_run, "run the whole pipeline here, on the CPU", RUN_HELP)
    _run_arguments(parser)
    parser.add_argument("--no-cache", action="store_true", help="run every task again")
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="show every task's log as it runs"
    )
    parser.add_argument(
        "--parallelism", type=int, help="training tasks at once (default: pipeline.parallelism)"
    )

    for name, handler, help in (
        ("submit", cmd_submit, "send one run of the compiled pipeline to a Kubeflow host"),
        ("schedule", cmd_schedule, "make it a recurring run on a Kubeflow host (cron)"),
    ):
        parser = subcommand(name, handler, help)
        _run_arguments(parser)
        parser.add_argument("--host", help="the KFP API (default: pipeline.host)")
        parser.add_argument("--namespace", help="profile namespace (default: pipeline.namespace)")
        parser.add_argument(
            "--token", help="bearer token for the host (default: $KF_PIPELINES_TOKEN)"
        )
        parser.add_argument("--experiment", help="KFP experiment (default: pipeline.experiment)")
        parser.add_argument(
            "--package",
            type=Path,
            help="compiled pipeline (default: pipelines/compiled/training_pipeline.yaml)",
        )
        parser.add_argument("--name", help="the run's (or recurring run's) name")
        if name == "schedule":
            parser.add_argument(
                "--cron",
                required=True,
                help="KFP's six-field cron, seconds first: '0 0 2 * * *' is 02:00 every day",
            )


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the run")
    group.add_argument("--dataset", "-d", choices=DATASETS, help="default: pipeline.dataset")
    group.add_argument(
        "--family",
        "-m",
        action="append",
        choices=FAMILIES,
        help="a family to train (repeatable; default: pipeline.families)",
    )
    group.add_argument(
        "--source", action="append", metavar="SRC", help="default: datasets.NAME.source"
    )
    group.add_argument("--steps", type=int, help="training steps (default: training.steps)")
    group.add_argument("--tracking-uri", help="MLflow (default: tracking.uri)")
    group.add_argument(
        "--data-revision",
        default="",
        help="a revision of the data to key the cache on (default: read off the sources)",
    )
    group.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other pipeline parameter, e.g. --param gpu_count=2 (repeatable)",
    )


# --- arguments ------------------------------------------------------------------------------


def _arguments(args: argparse.Namespace, cfg: Config, here: bool) -> dict[str, Any]:
    """The pipeline's arguments from the command line and the configuration. `here`: for a
    run on this machine (sources as absolute paths, the sample corpus made if it is the
    source, no GPU unless there is one)."""
    import yaml

    from wavefoundry.training.trainer import resolve_family

    dataset = args.dataset or cfg.pipeline.dataset
    families = list(dict.fromkeys(args.family or cfg.pipeline.families))
    for family in families:
        resolve_family(cfg, family, dataset)  # one clear error for a family that cannot train on it
    if args.steps is not None and args.steps <= 0:
        raise UserError(f"--steps must be positive, got {args.steps}")
    # What the command line says of the configuration travels with the run; the tasks read
    # params.yaml themselves (their image's, or this checkout's).
    params = args.params if args.params != Path("params.yaml") else None
    data_config, config = split_layer(read_layer(params, args.config, args.overrides))
    arguments: dict[str, Any] = {
        "dataset": dataset,
        "families": families,
        "source": args.source or [],
        "steps": args.steps or 0,
        "tracking_uri": args.tracking_uri or cfg.tracking.uri,
        "data_revision": args.data_revision,
        "data_config": data_config,
        "config": config,
    }
    if here:
        arguments["source"] = _local_sources(cfg, dataset, args.source)
        arguments["tracking_uri"] = _absolute_uri(arguments["tracking_uri"])
        arguments["gpu_count"] = _local_gpus()
    for text in args.param:
        key, sep, value = text.partition("=")
        if not sep:
            raise UserError(f"--param {text!r}: expected KEY=VALUE")
        arguments[key.strip()] = yaml.safe_load(value) if value.strip() else ""
    return arguments


def _local_sources(cfg: Config, dataset: str, given: list[str] | None) -> list[str]:
    from wavefoundry import stages

    sources = given or cfg.datasets.for_dataset(dataset).source
    samples = cfg.paths.samples.resolve()
    if not given and all("://" not in s and samples in Path(s).resolve().parents for s in sources):
        for name, path in stages.sample_data(cfg, [dataset]).items():
            out.print(f"[bold]{name}[/] sample corpus: {path}")
    return [s if "://" in s else str(Path(s).resolve()) for s in sources]


def _absolute_uri(uri: str) -> str:
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        return f"sqlite:///{Path(uri.removeprefix('sqlite:///')).resolve()}"
    return uri


def _local_gpus() -> int:
    import torch

    return 1 if torch.cuda.is_available() else 0


# --- commands ------------------------------------------------------------------------------


def cmd_compile(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.pipeline.definition import COMPILED, compile_pipeline

    path = compile_pipeline(args.out or COMPILED, args.image)
    out.print(f"compiled the pipeline to {path}")
    return 0


def cmd_run(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.pipeline.definition import load_spec
    from wavefoundry.pipeline.local import LocalRun
    from wavefoundry.pipeline.steps import describe_champion

    if args.parallelism is not None and args.parallelism < 1:
        raise UserError(f"--parallelism must be 1 or more, got {args.parallelism}")
    arguments = _arguments(args, cfg, here=True)
    runner = LocalRun(
        load_spec(),
        cfg.pipeline.root,
        cache=not args.no_cache,
        parallelism=args.parallelism or cfg.pipeline.parallelism,
        echo=args.verbose,
        report=_report_task,
    )
    result = runner.run(arguments)
    table = Table(title=f"{result.job_name}: {result.state} in {result.seconds:.1f} s")
    for column in ("task", "state", "seconds"):
        table.add_column(column)
    for task in result.tasks:
        state = {"FAILED": "[red]FAILED[/]", "CACHED": "[cyan]cached[/]"}.get(
            task.state, task.state
        )
        table.add_row(_short(task.path), state, f"{task.seconds:.1f}" if task.seconds else "")
    out.print(table)
    summary = result.outputs.get("record-outcome", {}).get("summary")
    facts = dict(summary.metadata) if summary is not None else {}
    for champion in facts.get("champions", []):
        out.print(f"champion: {describe_champion(champion)}", markup=False)
    out.print(f"run record: {result.record}; task outputs under {result.record.parent}")
    if facts.get("outcome_run_id"):
        out.print(
            f"outcome recorded in MLflow run {facts['outcome_run_id']} (tag wavefoundry.pipeline.status)"
        )
    uri = arguments["tracking_uri"]
    out.print(f"browse the runs:  uv run mlflow ui --backend-store-uri {uri}")
    for champion in facts.get("champions", []):
        if champion.get("bento_tag"):
            home = (
                f"BENTOML_HOME={os.environ['BENTOML_HOME']} "
                if "BENTOML_HOME" in os.environ
                else ""
            )
            out.print(
                f"serve the champion:  {home}uv run bentoml serve {champion['bento_tag']} --port 3000"
            )
    if result.state != "SUCCEEDED":
        err.print(f"[bold red]pipeline failed[/] at {result.error}")
        return 1
    return 0


# kfp.local's and the KFP executor's own log lines, and its separators.
_KFP_LINE = re.compile(r"^\s*(\[KFP Executor |\d\d:\d\d:\d\d\.\d+ - |-{20,}$)")


def _short(path: str) -> str:
    return path.split("/", 1)[-1] if "/" in path else path


def _report_task(event: Any) -> None:
    """A line as each task starts and ends; a failed task's log ends up on stderr."""
    if isinstance(event, str):
        out.print(f"[dim]-> {_short(event)}[/]")
        return
    if event.state == "FAILED":
        # The task's own last lines, without kfp's bookkeeping around them.
        log = Path(event.log).read_text(encoding="utf-8").splitlines() if event.log else []
        own = [line.strip() for line in log if line.strip() and not _KFP_LINE.match(line)]
        err.print("\n".join(own[-15:]), markup=False, highlight=False)
        err.print(f"[red]x {_short(event.path)} FAILED[/] after {event.seconds:.1f} s")
        err.print(f"  its log: {event.log}")
    elif event.state == "CACHED":
        out.print(f"[cyan]= {_short(event.path)}[/] cached (made by {event.cached_from})")
    elif event.state == "SKIPPED":
        out.print(f"[dim]- {_short(event.path)} skipped[/]")
    else:
        out.print(f"[green]+ {_short(event.path)}[/] {event.seconds:.1f} s")


def _host(args: argparse.Namespace, cfg: Config) -> tuple[Any, Path, dict[str, Any], str]:
    from wavefoundry.pipeline.definition import COMPILED, load_spec, parameters
    from wavefoundry.pipeline.kfp_host import Host

    url = args.host or cfg.pipeline.host
    if not url:
        raise UserError("no Kubeflow host: give --host or set pipeline.host")
    package = args.package or COMPILED
    arguments = _arguments(args, cfg, here=False)
    if not arguments["tracking_uri"].startswith(("http://", "https://")):
        raise UserError(
            f"tracking URI {arguments['tracking_uri']} is a file on this machine: a run on a "
            "cluster needs a tracking server every pod reaches (--tracking-uri http://...)"
        )
    known = parameters(load_spec(package))
    unknown = sorted(set(arguments) - set(known))
    if unknown:
        raise UserError(
            f"the pipeline has no parameter {', '.join(unknown)} (it has: {', '.join(known)})"
        )
    token = args.token or os.environ.get("KF_PIPELINES_TOKEN")
    host = Host(url, args.namespace or cfg.pipeline.namespace, token)
    return host, package, arguments, args.experiment or cfg.pipeline.experiment


def cmd_submit(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.pipeline.kfp_host import submit

    host, package, arguments, experiment = _host(args, cfg)
    name = args.name or f"wavefoundry {arguments['dataset']} {time.strftime('%Y-%m-%d %H-%M-%S')}"
    run_id = submit(host, package, arguments, experiment, name)
    out.print(f"submitted run {run_id} ('{name}') to {host.url}, experiment {experiment}")
    out.print(f"{host.url.rstrip('/')}/#/runs/details/{run_id}")
    return 0


def cmd_schedule(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.pipeline.kfp_host import schedule

    host, package, arguments, experiment = _host(args, cfg)
    name = args.name or f"wavefoundry {arguments['dataset']} retraining"
    recurring = schedule(host, package, arguments, experiment, name, args.cron)
    out.print(
        f"scheduled '{name}' ({recurring}) on {host.url}: cron '{args.cron}', one run at a "
        "time, no catch-up"
    )
    return 0
