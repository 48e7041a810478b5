"""What each task of the lifecycle pipeline does, in the library's terms.

The Kubeflow components (`components/`) are a few lines that call these. Nothing here imports
kfp: an artifact is anything with a `.path` and a `.metadata` dict (and `.log_metric` for
metrics), which is how KFP hands them to a component.

A task's configuration is `params.yaml` in its working directory (the image's, or the
checkout's on a local run), then the pipeline's configuration layer (`data_config` for the
data tasks, `config` for the others), then what the task fixes itself: where its data is
(its artifacts), the tracking server, the number of steps.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar

from wavefoundry import stages, tracking
from wavefoundry.config import Config, load_config
from wavefoundry.errors import INTERRUPTED_EXIT_CODE, Preempted, UserError, disk_error
from wavefoundry.progress import progress_lines

# On a local run (pipeline/local_run.py), a file holding the failing task's error line for
# the exit handler: kfp.local's PipelineTaskFinalStatus names only the DAG that failed.
ERRORS_ENV = "WAVEFOUNDRY_PIPELINE_ERRORS"


class Artifact(Protocol):
    path: str
    metadata: dict[str, Any]


class Metrics(Artifact, Protocol):
    def log_metric(self, metric: str, value: float) -> None: ...


P = ParamSpec("P")
R = TypeVar("R")


def step(fn: Callable[P, R]) -> Callable[P, R]:
    """A user error (bad data, a bad setting, a failed suite, a server that does not answer,
    a full disk or a folder it may not write) ends the task with one `error:` line and exit
    status 2, which the pipeline shows as the task's failure; SIGTERM or Ctrl-C in training
    ends it with the checkpoint's line (exit 143 or 130), Ctrl-C elsewhere with `interrupted`
    (130); anything else keeps its traceback."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(err.exit_code) from None
        except OSError as err:  # a full disk, a read-only folder: one line naming the path
            user = disk_error(err)
            if user is None:
                raise
            print(f"error: {user}", file=sys.stderr, flush=True)
            raise SystemExit(user.exit_code) from None
        except Preempted as stopped:  # training saved a checkpoint on SIGTERM or Ctrl-C
            print(str(stopped), file=sys.stderr, flush=True)
            raise SystemExit(stopped.exit_code) from None
        except KeyboardInterrupt:  # Ctrl-C reaches every task of a local run
            print("interrupted", file=sys.stderr, flush=True)
            raise SystemExit(INTERRUPTED_EXIT_CODE) from None

    return run


def task_config(
    layer: dict[str, Any],
    *,
    data: str | Path | None = None,
    tracking_uri: str = "",
) -> Config:
    fixed: dict[str, Any] = {}
    if data is not None:
        fixed["paths"] = {"data": str(data)}
    if tracking_uri:
        fixed["tracking"] = {"uri": tracking_uri}
    # The layer is the whole configuration, resolved where the run was started (params,
    # recipe, --set): reading a params file here again would re-apply its default recipe.
    return load_config(None, layers=[layer or {}, fixed])


def log_metrics(metrics: Metrics, values: dict[str, float]) -> None:
    """Each value as a KFP metric, and the lot as JSON in the artifact's own file: a Metrics
    artifact otherwise writes no file, and kfp.local's cache takes an output whose file is
    missing for deleted, so the task would never be reused."""
    for name, value in values.items():
        metrics.log_metric(name, value)
    Path(metrics.path).parent.mkdir(parents=True, exist_ok=True)
    Path(metrics.path).write_text(json.dumps(values, indent=2) + "\n", encoding="utf-8")


# --- data ---------------------------------------------------------------------------------


@step
def data_revision(
    dataset: str, sources: list[str], revision: str, data_config: dict[str, Any]
) -> str:
    """The revision given, else one read off the sources (see `source_revision`)."""
    from wavefoundry.data.download import source_revision

    if revision:
        return revision
    cfg = task_config(data_config)
    settings = cfg.datasets.for_dataset(dataset)
    found = source_revision(sources or settings.source, sha256=settings.sha256, storage=cfg.storage)
    print(f"{dataset} sources at revision {found}")
    return found


@step
def ingest(
    dataset: str, sources: list[str], revision: str, data_config: dict[str, Any], out: Artifact
) -> None:
    """Fetch, unpack and probe the sources into `out`: the manifest (and what was unpacked)."""
    cfg = task_config(data_config, data=out.path)
    result = stages.ingest(cfg, dataset, sources or None)
    out.metadata.update(
        dataset=dataset,
        revision=revision,
        clips=result.clips,
        usable=result.usable,
        hours=round(result.hours, 4),
        problems=result.problems,
        data_root=str(Path(out.path).resolve()),
    )
    problems = ", ".join(f"{kind} {count}" for kind, count in result.problems.items())
    print(
        f"{dataset}: {result.clips} clips, {result.usable} readable, problems: {problems or 'none'}"
    )


def _manifest_from(ingested: Artifact, dataset: str, cfg: Config) -> None:
    """The ingested manifest, into this task's data folder. Clips unpacked by ingest are named
    by where ingest wrote them; where the artifact arrives elsewhere, the names follow it."""
    from wavefoundry.data.manifest import read_manifest, write_manifest

    manifest = read_manifest(Path(ingested.path) / "manifest" / f"{dataset}.parquet")
    written_at = ingested.metadata.get("data_root")
    here = str(Path(ingested.path).resolve())
    if written_at and written_at != here:
        manifest["path"] = [
            here + p[len(written_at) :] if p.startswith(written_at + "/") else p
            for p in manifest["path"]
        ]
    write_manifest(manifest, cfg.paths.manifest(dataset))


@step
def validate(
    dataset: str,
    ingested: Artifact,
    data_config: dict[str, Any],
    store: Artifact,
    report: Artifact,
    metrics: Metrics,
) -> str:
    """Run the suite; a pass stores the usable clips in `store` and returns the data version,
    a failure stops the pipeline naming the failed expectations and the quarantine list."""
    from wavefoundry.validation import failures, render_html, render_summary

    cfg = task_config(data_config, data=store.path)
    _manifest_from(ingested, dataset, cfg)
    result = stages.validate(cfg, dataset)
    Path(report.path).write_text(render_html(result), encoding="utf-8")
    log_metrics(
        metrics, {name: getattr(result, name) for name in ("clips", "passed", "quarantined")}
    )
    print(render_summary(result))
    if not result.success:
        raise UserError(
            f"validation of {dataset} failed, so nothing was trained: "
            f"{'; '.join(failures(result))}. Quarantined clips are listed in "
            f"{result.quarantine_path}; the report is {report.path} (HTML)"
        )
    stored = stages.store(cfg, dataset)
    store.metadata.update(
        dataset=dataset,
        data_version=stored.data_version,
        clips=stored.clips,
        sample_rate=stored.sample_rate,
        excluded=stored.excluded,
    )
    splits = " / ".join(f"{count} {split}" for split, count in stored.clips.items())
    print(f"{dataset} stored: {splits} clips, data version {stored.data_version}")
    return stored.data_version


# --- models -------------------------------------------------------------------------------


@step
def train(
    dataset: str,
    family: str,
    data: Artifact,
    data_version: str,
    steps: int,
    tracking_uri: str,
    config: dict[str, Any],
    gpu_type: str,
    gpu_count: int,
    model: Artifact,
) -> str:
    """Train `family` on the stored data, tracked in MLflow, one process per GPU asked for;
    the exported network (safetensors + config.json) goes to `model`. Returns the run id."""
    cfg = task_config(config, data=data.path, tracking_uri=tracking_uri)
    if steps:
        cfg.training.set_steps(family, steps)
    stored = json.loads(cfg.paths.data_version(dataset).read_text())["data_version"]
    if stored != data_version:
        raise UserError(
            f"the stored {dataset} is version {stored}, the task was given {data_version}"
        )
    processes = _processes(cfg, gpu_type, gpu_count)
    if processes > 1:
        result = _train_under_torchrun(cfg, family, dataset, processes)
    else:
        from wavefoundry.training.trainer import train as run_training

        result = run_training(
            cfg,
            family,
            dataset,
            on_step=progress_lines(cfg.training.for_family(family).steps, sys.stdout),
        ).as_record()
    shutil.copytree(result["model_dir"], model.path, dirs_exist_ok=True)
    model.metadata.update(
        family=family, dataset=dataset, data_version=data_version, processes=processes
    )
    model.metadata.update({k: v for k, v in result.items() if k != "model_dir"})
    print(
        f"{family} on {dataset}: {result['steps']} steps in {result['seconds']:.1f} s, run {result['run_id']}"
    )
    return result["run_id"] or ""


def _processes(cfg: Config, gpu_type: str, gpu_count: int) -> int:
    """One process per GPU the task asked for. A task that asked for GPUs and sees fewer
    stops: on a CPU it would train for days. (With training.device=cpu, `gpu_count` CPU
    processes run data-parallel, which is how the several-process path is tested.)"""
    if gpu_count < 0:
        raise UserError(f"gpu_count must be 0 or more, got {gpu_count}")
    if gpu_count and cfg.training.device != "cpu":
        import torch

        found = torch.cuda.device_count()
        if found < gpu_count:
            raise UserError(
                f"the task asked for {gpu_count} {gpu_type} but torch sees {found} CUDA "
                "device(s): check the node's GPUs and driver, or run with gpu_count=0 on a CPU"
            )
    return max(1, gpu_count)


def _train_under_torchrun(cfg: Config, family: str, dataset: str, processes: int) -> dict[str, Any]:
    """`wavefoundry train` under torchrun, data-parallel over `processes` (this task's whole
    configuration in a params file of its own); what rank 0 trained."""
    import subprocess
    import tempfile

    import yaml

    with tempfile.TemporaryDirectory() as tmp:
        params, out = Path(tmp) / "params.yaml", Path(tmp) / "trained.json"
        params.write_text(yaml.safe_dump(cfg.model_dump(mode="json")), encoding="utf-8")
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={processes}", "-m", "wavefoundry.cli", "train",
            "-m", family, "-d", dataset, "--params", str(params), "--out", str(out),
        ]  # fmt: skip
        status = subprocess.call(command)
        if status != 0:
            raise UserError(f"training under torchrun ({processes} processes) exited with {status}")
        return json.loads(out.read_text())


@step
def evaluate(
    run_id: str,
    data: Artifact,
    tracking_uri: str,
    config: dict[str, Any],
    metrics: Metrics,
    data_version: str = "",
) -> str:
    """Score the run on the held-out clips of the stored data and register it; returns the
    candidate (JSON). `data_version` is the store's, as validate handed it on: the held-out
    clips must come from it."""
    from wavefoundry.evaluation.metrics import metric_line
    from wavefoundry.stages import evaluate as score_run

    cfg = task_config(config, data=data.path, tracking_uri=tracking_uri)
    # The judges take seconds per clip on a CPU and a pipeline log has no progress bar.
    print(f"scoring run {run_id} on the held-out set", flush=True)
    started = time.perf_counter()
    done = score_run(cfg, run_id=run_id)
    if data_version and done.score.data_version != data_version:
        raise UserError(
            f"the held-out clips come from data version {done.score.data_version}, the task "
            f"was given {data_version}"
        )
    # A KFP metric is a number; the NaN stays on the MLflow run.
    log_metrics(metrics, {k: v for k, v in done.score.metrics.items() if math.isfinite(v)})
    record = done.candidate.as_record()
    voiced = f", its sentences voiced by {done.score.vocoder}" if done.score.vocoder else ""
    print(
        f"{record['family']}: {record['registered_model']} v{record['version']}, "
        f"scored in {time.perf_counter() - started:.0f} s{voiced}"
    )
    print(f"  scores: {metric_line(record['metrics'])}")
    if done.baseline is not None:
        floor = {k: done.baseline.metrics.get(k) for k in record["metrics"]}
        print(f"  {done.baseline.name} on the same clips: {metric_line(floor)}")
    return json.dumps(record)


@step
def promote(
    candidates: list[str],
    data: Artifact,
    tracking_uri: str,
    config: dict[str, Any],
    job_id: str,
    decisions: Artifact,
) -> list[dict[str, Any]]:
    """Face the run's candidates with their champions, best first (see `promote_best`); tag
    each candidate's run with this pipeline run, its verdict and the champion decided on.
    Returns what was decided, per registered model: `{registered_model, version, promoted}`
    (the version the alias was left on; a model with no champion at all is left out). A run
    where no candidate passes is an outcome, not a failure: the champion stays as it was."""
    from wavefoundry.evaluation.metrics import metric_line
    from wavefoundry.registry import candidates as registry
    from wavefoundry.registry.promotion import champions as decided
    from wavefoundry.registry.promotion import notes

    cfg = task_config(config, data=data.path, tracking_uri=tracking_uri)
    records = [json.loads(c) for c in candidates]
    contests = stages.promote_best(cfg, [(r["registered_model"], r["version"]) for r in records])
    champions = decided(contests)
    held = {c["registered_model"]: f"{c['registered_model']}:{c['version']}" for c in champions}
    client = registry.client(cfg.tracking)
    runs = {(r["registered_model"], r["version"]): r for r in records}
    lines = ["| registered model | version | family | verdict |", "|---|---|---|---|"]
    for contest in contests:  # the vocoders' first: a voice is scored through their champion
        record = runs[(contest.name, contest.version)]
        if contest.revoiced:
            now = registry.find(client, contest.name, contest.version)
            print(
                f"{now.name} v{now.version} ({record['family']}): scored again, its "
                f"sentences voiced by {now.tags.get(tracking.TAG_EVAL_VOCODER, '?')}\n"
                f"  scores: {metric_line(now.metrics)}"
            )
        client.set_tag(record["run_id"], tracking.TAG_PIPELINE_JOB, job_id)
        client.set_tag(record["run_id"], tracking.TAG_PIPELINE_DECISION, contest.verdict[:4000])
        client.set_tag(
            record["run_id"], tracking.TAG_PIPELINE_VERSION, f"{contest.name}:{contest.version}"
        )
        client.set_tag(record["run_id"], tracking.TAG_PIPELINE_CHAMPION, held.get(contest.name, ""))
        lines.append(
            f"| {contest.name} | {contest.version} | {record['family']} | {contest.verdict} |"
        )
        print(f"{contest.name} v{contest.version} ({record['family']}): {contest.verdict}")
    for note in notes(contests):
        print(f"note: {note}")
    promoted = {c["registered_model"] for c in champions if c["promoted"]}
    candidates_here = {f"{c.name}:{c.version}" for c in contests}
    for name in sorted({c.name for c in contests}):
        if name not in held:
            print(f"{name}: no candidate passed the gate and there is no champion yet")
        elif name not in promoted and held[name] not in candidates_here:
            # (a rerun's candidate that is already the champion says so in its own line)
            print(f"{name}: no candidate passed the gate; the champion stays {held[name]}")
    Path(decisions.path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return champions


@step
def build_bento(
    champions: list[dict[str, Any]], tracking_uri: str, config: dict[str, Any], bento: Artifact
) -> list[str]:
    """A Bento of each version promotion decided on (never what the alias says by now), into
    the BentoML store and, as a `.bento` archive, into `bento`; a champion this run kept
    keeps its Bento where the store still has it. Returns the Bento tags."""
    from wavefoundry.registry import candidates as registry
    from wavefoundry.serving.bento import build, existing, export

    cfg = task_config(config, tracking_uri=tracking_uri)
    if not champions:
        print("no champion: no Bento to build")
    client = registry.client(cfg.tracking) if champions else None
    tags = []
    for champion in champions:
        name, version = champion["registered_model"], champion["version"]
        kept = None
        if not champion.get("promoted"):
            found = registry.find(client, name, version)
            kept = existing(found.tags.get(tracking.TAG_BENTO, ""))
        if kept:
            tag, how = kept, "kept"
        else:
            tag, how = build(cfg, name, version).tag, "built"
        archive = export(tag, Path(bento.path))
        tags.append(tag)
        print(f"{name} v{version}: Bento {tag} {how} ({archive.name})")
    bento.metadata.update(tags=tags, champions=champions)
    return tags


# --- the exit handler -----------------------------------------------------------------------


def record_outcome(
    state: str,
    error: str,
    dataset: str,
    tracking_uri: str,
    config: dict[str, Any],
    job_id: str,
    job_name: str,
    summary: Artifact,
) -> None:
    """Whatever became of the run: a summary (state, error, each candidate's verdict, the
    champions and their Bentos) as `summary` (Markdown, the dict in its metadata) and as an
    MLflow run `pipeline <job name>` tagged with the state; each candidate run gets the state
    too. A tracking server that does not answer leaves the summary without the MLflow part."""
    # On a local run, kfp.local's final status names only the DAG that failed; the failing
    # task's own error line is in this file (see pipeline/local_run.py).
    local_errors = Path(os.environ.get(ERRORS_ENV) or "/nonexistent")
    if state == "FAILED" and local_errors.is_file():
        error = local_errors.read_text(encoding="utf-8").strip() or error
    facts: dict[str, Any] = {
        "job_id": job_id,
        "job_name": job_name,
        "state": state,
        "error": error,
        "dataset": dataset,
        "candidates": [],
        "champions": [],
    }
    try:
        cfg = task_config(config, tracking_uri=tracking_uri)
        facts.update(_record_in_mlflow(cfg, facts))
    except UserError as err:
        facts["recording_error"] = str(err)
        print(f"warning: the outcome is not in MLflow: {err}", file=sys.stderr)
    Path(summary.path).write_text(summary_markdown(facts), encoding="utf-8")
    summary.metadata.update(facts)
    print(summary_markdown(facts))


def _record_in_mlflow(cfg: Config, facts: dict[str, Any]) -> dict[str, Any]:
    import mlflow

    from wavefoundry.registry import candidates as registry
    from wavefoundry.tracking import connect

    experiment_id = connect(cfg.tracking)
    client = mlflow.MlflowClient(cfg.tracking.uri)
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{tracking.TAG_PIPELINE_JOB}` = '{facts['job_id']}'"
    )
    trained, decided = [], set()
    for run in runs:
        tags = run.data.tags
        name, _, version = tags.get(tracking.TAG_PIPELINE_VERSION, "").partition(":")
        if tags.get(tracking.TAG_PIPELINE_CHAMPION):
            decided.add(tags[tracking.TAG_PIPELINE_CHAMPION])
        trained.append(
            {
                "family": tags.get(tracking.TAG_FAMILY, ""),
                "run_id": run.info.run_id,
                "registered_model": name,
                "version": version,
                "verdict": tags.get(tracking.TAG_PIPELINE_DECISION, ""),
                "metrics": {  # JSON for KFP's metadata: a NaN score becomes null
                    k.removeprefix("eval/"): v if math.isfinite(v) else None
                    for k, v in run.data.metrics.items()
                    if k.startswith("eval/")
                },
            }
        )
        client.set_tag(run.info.run_id, tracking.TAG_PIPELINE_STATUS, facts["state"])
    champions = []
    for held in sorted(decided):  # what promotion decided, not what the alias says by now
        name, _, version = held.rpartition(":")
        champion = registry.find(client, name, version)
        champions.append(
            {**champion.as_record(), "bento_tag": champion.tags.get(tracking.TAG_BENTO, "")}
        )
    found = {"candidates": trained, "champions": champions, "tracking_uri": cfg.tracking.uri}
    with mlflow.start_run(
        experiment_id=experiment_id,
        run_name=f"pipeline {facts['job_name']}",
        tags={
            tracking.TAG_PIPELINE_JOB: facts["job_id"],
            tracking.TAG_PIPELINE_STATUS: facts["state"],
            tracking.TAG_PIPELINE_ERROR: facts["error"][:4000],
        },
    ) as run:
        mlflow.log_dict({**facts, **found}, "pipeline/summary.json")
        found["outcome_run_id"] = run.info.run_id
    return found


def summary_markdown(facts: dict[str, Any]) -> str:
    lines = [f"# {facts['job_name']}: {facts['state']}", ""]
    if facts.get("error"):
        lines += [f"**Error:** {facts['error']}", ""]
    if facts["candidates"]:
        lines += ["| family | run | version | verdict |", "|---|---|---|---|"]
        lines += [
            f"| {c['family']} | {c['run_id']} | {c['registered_model']} v{c['version']} | {c['verdict']} |"
            for c in facts["candidates"]
        ]
        lines.append("")
    lines += [f"**Champion** {describe_champion(c)}" for c in facts["champions"]]
    if facts.get("recording_error"):
        lines.append(f"Not recorded in MLflow: {facts['recording_error']}")
    return "\n".join(lines) + "\n"


def describe_champion(champion: dict[str, Any]) -> str:
    """`wavefoundry-ljspeech-vocoder v3 (hifigan, run ...): mel_l1 1.8, ...; Bento NAME:TAG`"""
    from wavefoundry.evaluation.metrics import metric_line

    metrics = metric_line({k: v for k, v in champion["metrics"].items() if v is not None})
    return (
        f"{champion['registered_model']} v{champion['version']} ({champion['family']}, run "
        f"{champion['run_id']}): {metrics}; Bento {champion.get('bento_tag') or '-'}"
    )
