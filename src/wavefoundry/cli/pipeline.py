"""`wavefoundry pipeline compile|run|submit|schedule`: thin, like the rest of the CLI."""

from __future__ import annotations

import argparse
import os
import re
import shlex
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from wavefoundry.cli.common import Command, command_group, common, err, out, serve_command
from wavefoundry.config import DATASETS, FAMILIES, Config, read_layer, split_layer
from wavefoundry.errors import UserError
from wavefoundry.locks import file_lock
from wavefoundry.pipeline.local_run import RUNNERS

RUN_HELP = """\
The lifecycle as one run on this machine: the compiled Kubeflow pipeline (wavefoundry.
pipeline.dag) on kfp.local's own orchestrator and task cache, on the CPU, each task in this
environment (SubprocessRunner) or, with --runner container, in the component image
(DockerRunner on podman; build it first with make image): data revision -> ingest ->
validate (+ store) -> train and evaluate each family -> promote -> bento build, and the exit
handler recording the outcome in MLflow whatever happens.

Defaults: pipeline.dataset and pipeline.families of params.yaml, the dataset's sources (the
sample corpus is made when they are the sample), MLflow at tracking.uri. Tasks are cached
under pipeline.root: a second run on unchanged data reuses ingest and validate (and the
training of unchanged settings). The configuration (params.yaml, its recipe or --config, each
--set) is resolved here and travels with the run.

Exit status: 0 when the run succeeded, also when no candidate passed the gate (the champion
and its Bento stay); 1 when a task failed; 2 for a usage error, another run holding this
folder, a full disk or a folder it may not write.
"""


def add_commands(commands: Any, command: Command) -> None:
    sub = command_group(
        commands,
        "pipeline",
        "the lifecycle as one Kubeflow pipeline: compile, run here, submit, schedule",
        "The lifecycle as one Kubeflow pipeline (wavefoundry.pipeline.dag).",
    )

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
        "compile the pipeline (wavefoundry.pipeline.dag) to pipelines/compiled/training_pipeline.yaml",
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
        "--parallelism",
        type=int,
        help="training tasks at once, at most 2 (kfp.local's cap; default: pipeline.parallelism)",
    )
    parser.add_argument(
        "--runner",
        choices=RUNNERS,
        default="subprocess",
        help="how kfp.local runs each task: subprocess, in this environment (default); "
        "container, in the component image (make image) through podman, as on a cluster",
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
    group.add_argument(
        "--steps",
        type=int,
        help="every family's training steps (default: training.steps, or the family's training.per_family entry)",
    )
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

# Pipeline parameters set by an option of their own (with what goes with them), not --param.
OWN_OPTIONS = {
    "dataset": "--dataset/-d",
    "families": "--family/-m",
    "source": "--source",
    "steps": "--steps",
    "tracking_uri": "--tracking-uri",
    "data_revision": "--data-revision",
    "data_config": "--set KEY=VALUE or the params file",
    "config": "--set KEY=VALUE or the params file",
}


def _arguments(args: argparse.Namespace, cfg: Config, here: bool) -> dict[str, Any]:
    """The pipeline's arguments from the command line and the configuration. `here`: for a
    run on this machine (sources as absolute paths, the sample corpus made if it is the
    source, no GPU unless there is one)."""
    import yaml

    from wavefoundry.evaluation.names import check_names
    from wavefoundry.training.trainer import resolve_family

    check_names(cfg.evaluation, cfg.promotion)  # not after training every family
    dataset = args.dataset or cfg.pipeline.dataset
    families = list(dict.fromkeys(args.family or cfg.pipeline.families))
    for family in families:
        resolve_family(cfg, family, dataset)  # one clear error for a family that cannot train on it
    if args.steps is not None and args.steps <= 0:
        raise UserError(f"--steps must be positive, got {args.steps}")
    # The whole configuration, resolved here (params.yaml, its recipe or --config's, each
    # --set), travels with the run: a task reads no params file of its own (steps.task_config).
    params = args.params if args.params.is_file() else None
    layer = _without_default_nulls(read_layer(params, args.config, args.overrides))
    data_config, config = split_layer(layer)
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
    given = {}
    for text in args.param:
        key, sep, value = text.partition("=")
        if not sep:
            raise UserError(f"--param {text!r}: expected KEY=VALUE")
        key = key.strip()
        if key in OWN_OPTIONS:  # it would leave what goes with it (sources, data config) behind
            raise UserError(f"--param {key}: set it with {OWN_OPTIONS[key]}")
        given[key] = yaml.safe_load(value) if value.strip() else ""
    if given and here:  # before the sample corpus is made or a run begins
        from wavefoundry.pipeline.definition import check_arguments, load_spec

        given = check_arguments(load_spec(), given)
    if here:
        arguments["source"] = _local_sources(cfg, dataset, args.source)
        arguments["tracking_uri"] = _absolute_uri(arguments["tracking_uri"])
        arguments["gpu_count"] = _local_gpus()
    return {**arguments, **given}


def _without_default_nulls(layer: dict[str, Any]) -> dict[str, Any]:
    """The layer without the nulls that only restate a default (a KFP parameter cannot hold
    null); a null that changes a default is an error naming the key."""
    from wavefoundry.config import Config

    def strip(values: dict[str, Any], defaults: Any, where: str) -> dict[str, Any]:
        kept = {}
        for key, value in values.items():
            default = defaults.get(key) if isinstance(defaults, dict) else None
            if isinstance(value, dict):
                kept[key] = strip(value, default, f"{where}{key}.")
            elif value is not None:
                kept[key] = value
            elif default is not None:
                raise UserError(
                    f"{where}{key}: null cannot travel as a pipeline parameter (its default is "
                    f"{default!r}): give it a value"
                )
        return kept

    return strip(layer, Config().model_dump(mode="json"), "")


def _local_sources(cfg: Config, dataset: str, given: list[str] | None) -> list[str]:
    from wavefoundry import stages

    sources = given or cfg.datasets.for_dataset(dataset).source
    if not given and all(cfg.paths.is_sample(s) for s in sources):
        for name, path in stages.sample_data(cfg, [dataset]).items():
            out.print(f"[bold]{name}[/] sample corpus: {path}")
    for source in sources:  # before a run starts: not a failed run recorded for a typo
        if "://" not in source and not Path(source).exists():
            raise UserError(f"source not found: {source}")
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

    if args.parallelism is not None and not 1 <= args.parallelism <= 2:
        raise UserError(
            f"--parallelism must be 1 or 2 (kfp.local runs at most 2 tasks at once), "
            f"got {args.parallelism}"
        )
    # One run at a time in a project folder: they share the sample corpus, the task cache and
    # the registry's champion. A second one says so in one line and changes nothing.
    with file_lock(
        cfg.pipeline.root / ".run.lock", f"this folder's pipeline ({cfg.pipeline.root})", wait=False
    ):
        return _run_here(args, cfg)


def _run_here(args: argparse.Namespace, cfg: Config) -> int:
    from wavefoundry.pipeline import local_run

    arguments = _arguments(args, cfg, here=True)
    labels = _Labels(arguments["families"])
    if args.runner == "container":
        from wavefoundry.containers import IMAGE

        out.print(f"[dim]each task in the image {IMAGE}, through podman[/]")
    with local_run.runner_for(args.runner, arguments, cfg.pipeline.root) as runner:
        result = local_run.run(
            None,
            arguments,
            cfg.pipeline.root,
            runner=runner,
            cache=not args.no_cache,
            parallelism=args.parallelism or cfg.pipeline.parallelism,
            echo=args.verbose,
            report=labels.report,
            progress=labels.progress,
        )
    table = Table(title=f"{result.job_name}: {result.state} in {result.seconds:.1f} s")
    for column in ("task", "state", "seconds"):
        table.add_column(column)
    for task in result.tasks:
        state = {"FAILED": "[red]FAILED[/]", "CACHED": "[cyan]cached[/]"}.get(
            task.state, task.state
        )
        table.add_row(
            escape(labels(task.path)), state, f"{task.seconds:.1f}" if task.seconds else ""
        )
    out.print(table)
    facts = result.outputs("record-outcome").get("summary", {})
    for line in _champion_lines(facts):
        out.print(line, markup=False)
    out.print(f"run record: {result.record}; task outputs under {result.folder}")
    if facts.get("outcome_run_id"):
        out.print(
            f"outcome recorded in MLflow run {facts['outcome_run_id']} (tag wavefoundry.pipeline.status)"
        )
    uri = arguments["tracking_uri"]
    out.print(f"browse the runs:  uv run mlflow ui --backend-store-uri {uri}")
    served = [c for c in facts.get("champions", []) if c.get("bento_tag")]
    clip = _example_clip(arguments["source"]) if served else "clip.wav"  # one walk of the source
    for port, champion in enumerate(served, start=3000):
        out.print(
            f"serve {champion['registered_model']}:  {serve_command(champion['bento_tag'], port)}",
            markup=False,
        )
        out.print(f"  then:  {_try_it(champion['family'], port, clip)}", markup=False)
    if result.state != "SUCCEEDED":
        err.print(f"[bold red]pipeline failed[/] at {result.error}")
        return 1
    return 0


def _champion_lines(facts: dict) -> list[str]:
    """The run's closing word on champions: one line per champion, or, where the gate let no
    candidate through and none was there before, `champion: none` with each verdict, so that
    the last thing a user reads is not a table of SUCCEEDED tasks alone."""
    from wavefoundry.pipeline.steps import describe_champion

    if facts.get("champions"):
        return [f"champion: {describe_champion(c)}" for c in facts["champions"]]
    if not facts.get("candidates"):
        return []
    return ["champion: none (no candidate passed the gate)"] + [
        f"  {c['family']} ({c['registered_model']} v{c['version']}): {c['verdict']}"
        for c in facts["candidates"]
    ]


def _example_clip(sources: list[str]) -> str:
    """A recording to send a served vocoder or codec: the first WAV or FLAC file (by name) in
    the run's first local source folder that has one, relative to the working folder when it is
    inside it (the demo's `data/sample/LJSpeech-1.1/wavs/...`); `clip.wav`, standing for one
    of the user's own, when every source is remote or an archive."""
    for source in sources:
        folder = Path(source)
        if "://" in source or not folder.is_dir():
            continue
        found = min(
            (
                p
                for p in folder.rglob("*")
                if p.suffix.lower() in (".wav", ".flac")
                and not any(part.startswith(".") for part in p.relative_to(folder).parts)
            ),
            default=None,
        )
        if found is not None:
            here = Path.cwd().resolve()
            found = found.resolve()
            return str(found.relative_to(here) if here in found.parents else found)
    return "clip.wav"


def _try_it(family: str, port: int, clip: str = "clip.wav") -> str:
    """A curl that asks a served champion of `family` for audio, by its task: a sentence
    spoken (acoustic: the voice), a note generated (generator), `clip` resynthesized (vocoder,
    codec)."""
    from wavefoundry.families.registry import get_family

    url, task = f"http://localhost:{port}", get_family(family).task
    if task == "acoustic":
        text = '{"text": "The quick brown fox jumps over the lazy dog."}'
        return (
            f"curl -s -X POST {url}/synthesize -H 'Content-Type: application/json' "
            f"-d '{text}' -o speech.wav"
        )
    if task == "generator":
        return f"curl -s -X POST {url}/generate -H 'Content-Type: application/json' -d '{{}}' -o note.wav"
    return f"curl -s -X POST {url}/vocode -F audio=@{shlex.quote(clip)} -o resynthesized.wav"


class _Labels:
    """Task names as a user reads them (`train [hifigan]` for the loop's first item), and the
    lines shown as tasks start, print and end."""

    def __init__(self, families: list[str]):
        self.families = families

    def __call__(self, path: str) -> str:
        found = _ITERATION.search(path)
        if not found or int(found.group(1)) >= len(self.families):
            return path
        return f"{path[found.end() + 1 :] or path} [{self.families[int(found.group(1))]}]"

    def report(self, event: Any) -> None:
        """A line as each task starts and ends; a failed task's log ends up on stderr."""
        if isinstance(event, str):
            out.print(f"[dim]-> {escape(event)}[/]")
            return
        name = escape(self(event.path))  # `train [hifigan]` is not markup
        if event.state == "FAILED":
            # The task's own last lines, without kfp's bookkeeping around them; not when they
            # end in the one `error:` line the run's last line repeats ("pipeline failed at").
            lines = event.tail.strip().splitlines()
            if lines and not lines[-1].startswith("error: "):
                err.print(event.tail, markup=False, highlight=False)
            err.print(f"[red]x {name} FAILED[/] after {event.seconds:.1f} s")
            err.print(f"  its log: {escape(event.log)}")
        elif event.state == "CACHED":
            made_by = f" (made by {event.cached_from})" if event.cached_from else ""
            out.print(f"[cyan]= {name}[/] cached{made_by}")
        elif event.state == "SKIPPED":
            out.print(f"[dim]- {name} skipped[/]")
        else:
            out.print(f"[green]+ {name}[/] {event.seconds:.1f} s")

    def progress(self, path: str, line: str) -> None:
        out.print(f"  [dim]{escape(self(path))}:[/] {escape(line)}", highlight=False)


_ITERATION = re.compile(r"for-loop-\d+-iteration-(\d+)")


def _host(args: argparse.Namespace, cfg: Config) -> tuple[Any, Path, dict[str, Any], str]:
    from wavefoundry.pipeline.definition import COMPILED, check_arguments, load_spec
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
    arguments = check_arguments(load_spec(package), arguments)
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
