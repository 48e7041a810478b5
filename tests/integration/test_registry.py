"""Scoring and promotion against a real `mlflow server` (SQLite, artifacts on S3 via moto).

Three HiFi-GAN candidates trained for different numbers of steps on the LJ Speech sample are
scored on the same held-out clips; the promotions, the refusals, a rollback, two promotions
at once, re-scoring on another held-out set and the CLI's bad-input lines are checked in the
registry itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file, save_file

from wavefoundry.config import Config, load_config
from wavefoundry.registry.candidates import Candidate
from wavefoundry.registry.promotion import audit_records, rollback
from wavefoundry.stages import evaluate, promote
from wavefoundry.tracking import Tracker
from wavefoundry.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
NAME = "wavefoundry-ljspeech-vocoder"

pytestmark = pytest.mark.slow


@dataclass
class Registry:
    cfg: Config
    overrides: list[str]
    client: MlflowClient
    weak: Candidate  # 2 steps
    strong: Candidate  # 30 steps
    worse: Candidate  # 1 step
    root: Path


def configure(overrides: list[str]) -> Config:
    return load_config(REPO / "params.yaml", overrides=overrides)


@pytest.fixture(scope="module")
def registry(
    stored_samples: Path, mlflow_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Registry:
    root = tmp_path_factory.mktemp("registry")
    overrides = [
        f"paths.data={stored_samples}",
        f"paths.runs={root / 'runs'}",
        f"tracking.uri={mlflow_server}",
        "tracking.experiment=test-registry",
        "training.validate_every=1000",
        "evaluation.clips=3",
        "evaluation.audio_examples=2",
        # The tiny model runs far faster than real time; the bound is the gate's own test's.
        "promotion.max_real_time_factor=20",
        # A few steps of HiFi-GAN do not beat Griffin-Lim: these tests are of the champion
        # against the challenger, the floor's is test_griffin_lim_... below (it turns it on).
        "promotion.floor=null",
    ]
    cfg = configure(overrides)
    versions = {}
    for label, steps in (("weak", 2), ("strong", 30), ("worse", 1)):
        cfg.training.steps = steps
        cfg.paths.runs = root / f"runs-{label}"
        result = train(cfg, "hifigan", "ljspeech")
        versions[label] = evaluate(cfg, run_id=result.run_id).candidate
    return Registry(
        configure(overrides), overrides, MlflowClient(mlflow_server), **versions, root=root
    )


def champion(registry: Registry) -> str:
    return registry.client.get_model_version_by_alias(NAME, "champion").version


def snapshot(client: MlflowClient, name: str) -> dict:
    """Everything a promotion could change: versions with tags and aliases, model tags."""
    model = client.get_registered_model(name)
    versions = {
        v.version: (dict(client.get_model_version(name, v.version).tags), tuple(v.aliases))
        for v in client.search_model_versions(f"name='{name}'")
    }
    return {"tags": dict(model.tags), "aliases": dict(model.aliases), "versions": versions}


def run_cli(
    registry: Registry, *args: str, overrides: list[str] | None = None, columns: int = 220
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "wavefoundry.cli",
        *args,
        "--params",
        str(REPO / "params.yaml"),
    ]
    for override in overrides if overrides is not None else registry.overrides:
        command += ["--set", override]
    # A wide console, as on a terminal: rich fits tables to 80 columns when output is a pipe.
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        command, cwd=registry.root, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_run_and_its_version_name_each_fact_alike(registry: Registry) -> None:
    """Every fact a training run and the version registered from it both carry is under one
    tag name (tracking.TAG_*), with the same value: no eval.fingerprint beside eval_fingerprint."""
    from wavefoundry import tracking

    shared = [
        tracking.TAG_FAMILY,
        tracking.TAG_DATASET,
        tracking.TAG_DATA_VERSION,
        tracking.TAG_GIT_COMMIT,
        tracking.TAG_EVAL_FINGERPRINT,
        tracking.TAG_EVAL_DATA_VERSION,
    ]
    candidate = registry.strong
    run_tags = registry.client.get_run(candidate.run_id).data.tags
    version_tags = registry.client.get_model_version(NAME, candidate.version).tags
    for name in shared:
        assert run_tags[name] == version_tags[name] != "", name
    assert version_tags[tracking.TAG_RUN_ID] == candidate.run_id
    assert run_tags[tracking.TAG_MODEL_URI] == candidate.model_uri
    names = {v for k, v in vars(tracking).items() if k.startswith("TAG_")}
    unnamed = {
        k
        for k in {*run_tags, *version_tags}
        if not k.startswith(("mlflow.", tracking.TAG_EVAL_PREFIX)) and k not in names
    }
    assert not unnamed, f"tags spelled outside tracking.py: {unnamed}"


def test_every_candidate_is_scored_on_the_same_clips_and_registered(registry: Registry) -> None:
    candidates = [registry.weak, registry.strong, registry.worse]
    assert [c.name for c in candidates] == [NAME] * 3
    assert len({c.fingerprint for c in candidates}) == 1
    assert len({c.version for c in candidates}) == 3
    for candidate in candidates:
        tags = candidate.tags
        assert tags["family"] == "hifigan" and tags["dataset"] == "ljspeech"
        assert tags["task"] == "vocoder" and len(tags["config_hash"]) == 16
        assert tags["data_version"] in registry.cfg.paths.data_version("ljspeech").read_text()
        assert len(tags["git_commit"]) == 40
        assert {"mel_l1", "mrstft", "snr_db", "si_sdr_db", "rtf"} <= set(candidate.metrics)
        run = registry.client.get_run(candidate.run_id)
        assert run.data.metrics["eval/mel_l1"] == pytest.approx(candidate.metrics["mel_l1"])
        examples = [
            a.path for a in registry.client.list_artifacts(candidate.run_id, "eval/examples")
        ]
        assert sum(p.endswith("-generated.wav") for p in examples) == 2, examples
        assert sum(p.endswith("-reference.wav") for p in examples) == 2, examples
        assert sum(p.endswith("-spectrogram.png") for p in examples) == 2, examples
    experiment = registry.client.get_experiment_by_name("test-registry").experiment_id
    clips = [
        registry.client.load_table(experiment, "eval/clips.json", run_ids=[c.run_id])
        for c in candidates
    ]
    assert all(len(table) == 3 for table in clips)
    assert all(list(t["clip_id"]) == list(clips[0]["clip_id"]) for t in clips)
    # Training longer gives a better vocoder: the order the promotions below rely on.
    assert registry.strong.metrics["mel_l1"] < registry.weak.metrics["mel_l1"]
    assert registry.strong.metrics["mel_l1"] < registry.worse.metrics["mel_l1"]


def test_griffin_lim_is_scored_on_the_same_clips_and_floors_the_gate(registry: Registry) -> None:
    from wavefoundry.evaluation.baseline import find_baseline

    experiment = registry.client.get_experiment_by_name("test-registry").experiment_id
    floor = find_baseline(registry.client, experiment, registry.strong.fingerprint)
    assert floor is not None, "evaluate scores the Griffin-Lim floor of its held-out set"
    assert {"mel_l1", "mrstft", "pesq", "stoi", "mcd_dtw", "dnsmos_ovrl"} <= set(floor.metrics)
    run = registry.client.get_run(floor.run_id)
    assert run.data.tags["eval_fingerprint"] == registry.strong.fingerprint
    assert (run.data.tags["wavefoundry.kind"], run.data.tags["baseline"]) == (
        "baseline",
        "griffin_lim",
    )
    [table, ours] = [
        registry.client.load_table(experiment, "eval/clips.json", run_ids=[run_id])
        for run_id in (floor.run_id, registry.strong.run_id)
    ]
    assert list(table["clip_id"]) == list(ours["clip_id"])  # the very same clips
    assert "judge_notes" in table.columns and "pesq" in ours.columns

    # 30 steps of a tiny HiFi-GAN sound worse than Griffin-Lim: with the floor on, refused.
    before = snapshot(registry.client, NAME)
    outcome = promote(configure([*registry.overrides, "promotion.floor=griffin_lim"]), NAME)
    assert not outcome.decision.passed
    assert any(r.startswith("below the griffin_lim floor: ") for r in outcome.decision.reasons)
    after = snapshot(registry.client, NAME)
    assert after["aliases"] == before["aliases"] == {}
    assert after["versions"] == before["versions"]
    record = audit_records(registry.client, NAME)[-1]
    assert record["passed"] is False and "griffin_lim floor mrstft" in record["floor"]


def test_the_best_becomes_champion_a_worse_one_leaves_it_and_rollback_restores(
    registry: Registry,
) -> None:
    cfg = registry.cfg
    first = promote(cfg, NAME, registry.weak.version)
    assert first.decision.passed and champion(registry) == registry.weak.version

    dry = promote(cfg, NAME, registry.strong.version, dry_run=True)
    assert dry.decision.passed and dry.record is None
    assert champion(registry) == registry.weak.version  # a dry run changes nothing

    better = promote(cfg, NAME, registry.strong.version)
    assert better.decision.passed and champion(registry) == registry.strong.version
    tags = registry.client.get_model_version(NAME, registry.strong.version).tags
    assert tags["previous_champion"] == registry.weak.version

    worse = promote(cfg, NAME, registry.worse.version)
    assert not worse.decision.passed
    assert "primary mel_l1" in [c.name for c in worse.decision.checks if not c.passed]
    assert champion(registry) == registry.strong.version

    entry = rollback(cfg, NAME)
    assert (entry["champion_before"], entry["champion_after"]) == (
        registry.strong.version,
        registry.weak.version,
    )
    assert champion(registry) == registry.weak.version

    actions = [
        (r["action"], r.get("challenger"), r["passed"])
        for r in audit_records(registry.client, NAME)
    ]
    assert actions[-4:] == [
        ("promote", registry.weak.version, True),
        ("promote", registry.strong.version, True),
        ("promote", registry.worse.version, False),
        ("rollback", None, True),
    ]


def test_a_challenger_with_a_nan_metric_is_refused(registry: Registry, tmp_path: Path) -> None:
    # A model whose weights went NaN, logged as a run like any other candidate.
    source = registry.root / "runs-strong" / "ljspeech-hifigan" / "model"
    poisoned = tmp_path / "model"
    shutil.copytree(source, poisoned)
    tensors = load_file(poisoned / "model.safetensors")
    first = sorted(tensors)[0]
    tensors[first] = torch.full_like(tensors[first], float("nan"))
    save_file(tensors, poisoned / "model.safetensors")
    tracker = Tracker(registry.cfg.tracking, "ljspeech-hifigan-nan")
    tags = {
        k: v
        for k, v in registry.client.get_run(registry.strong.run_id).data.tags.items()
        if k in ("family", "dataset", "data_version", "git_commit")
    }
    tracker.log_start({}, tags, None)
    tracker.log_model(poisoned, "hifigan")
    tracker.end()
    nan = evaluate(registry.cfg, run_id=tracker.run_id).candidate
    assert nan.metrics["mel_l1"] != nan.metrics["mel_l1"]  # NaN, logged as such

    before = champion(registry)
    outcome = promote(registry.cfg, NAME, nan.version)
    assert not outcome.decision.passed
    assert "finite metrics" in [c.name for c in outcome.decision.checks if not c.passed]
    assert champion(registry) == before
    assert audit_records(registry.client, NAME)[-1]["passed"] is False


def test_two_promotions_at_once_leave_one_champion_and_both_decisions(registry: Registry) -> None:
    before = len(audit_records(registry.client, NAME))
    start = champion(registry)
    challengers = [registry.strong.version, registry.worse.version]
    base = [
        sys.executable,
        "-m",
        "wavefoundry.cli",
        "promote",
        "--params",
        str(REPO / "params.yaml"),
    ]
    for override in registry.overrides:
        base += ["--set", override]
    processes = [
        subprocess.Popen(
            [*base, "--model-name", NAME, "--version", version],
            cwd=registry.root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for version in challengers
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr

    records = audit_records(registry.client, NAME)[before:]
    assert sorted(r["challenger"] for r in records) == sorted(challengers)
    # One at a time: the second decision saw what the first one left.
    assert records[0]["champion_before"] == start
    assert records[1]["champion_before"] == records[0]["champion_after"]
    model = registry.client.get_registered_model(NAME)
    assert list(model.aliases) == ["champion"]
    assert champion(registry) == registry.strong.version == records[-1]["champion_after"]
    assert not any(
        m.name.endswith("-promotion-lock") for m in registry.client.search_registered_models()
    )


def test_a_champion_scored_on_another_held_out_set_is_scored_again(registry: Registry) -> None:
    overrides = [*registry.overrides, "evaluation.clips=2"]
    cfg = configure(overrides)
    challenger = evaluate(cfg, run_id=registry.worse.run_id).candidate
    holder = registry.client.get_model_version_by_alias(NAME, "champion")
    assert challenger.fingerprint != holder.tags["eval_fingerprint"]

    done = run_cli(
        registry,
        "promote",
        "--model-name",
        NAME,
        "--version",
        challenger.version,
        overrides=overrides,
    )
    assert done.returncode == 0, done.stderr
    assert "scored again" in done.stdout and "REFUSED" in done.stdout
    rescored = registry.client.get_model_version(NAME, holder.version).tags
    assert rescored["eval_fingerprint"] == challenger.fingerprint
    assert champion(registry) == holder.version


def test_dry_run_prints_the_decision_table_and_changes_nothing(registry: Registry) -> None:
    before = snapshot(registry.client, NAME)
    done = run_cli(
        registry, "promote", "--model-name", NAME, "--version", registry.weak.version, "--dry-run"
    )
    assert done.returncode == 0, done.stderr
    for text in ("primary mel_l1", "real-time factor", "finite metrics", "REFUSED", "dry run"):
        assert text in done.stdout, done.stdout
    # Scored on this CPU, not the serving device: said once, under the verdict (as README says).
    lines = done.stdout.strip().splitlines()
    assert lines[-2] == "dry run: nothing changed", lines[-3:]
    assert lines[-1].startswith("note: speed target off: scored on cpu"), lines[-3:]
    assert snapshot(registry.client, NAME) == before


def test_compare_prints_the_candidates_and_logs_a_chart(registry: Registry) -> None:
    done = run_cli(
        registry, "compare", "--model-name", NAME, "--out", str(registry.root / "compare.png")
    )
    assert done.returncode == 0, done.stderr
    for candidate in (registry.weak, registry.strong, registry.worse):
        assert candidate.label in done.stdout
    assert "mel_l1" in done.stdout and "champion" in done.stdout
    assert "griffin_lim (baseline)" in done.stdout and "pesq" in done.stdout
    assert (registry.root / "compare.png").read_bytes()[:4] == b"\x89PNG"
    run_id = done.stdout.split("logged to MLflow run ")[1].split()[0]
    logged = {a.path for a in registry.client.list_artifacts(run_id)}
    assert {"compare.png", "comparison.json"} <= logged


def test_compare_on_a_narrow_terminal_gives_each_candidate_a_column(registry: Registry) -> None:
    """A dozen metrics do not fit 80 columns as a row per candidate: the table turns, a row
    per metric and a column per candidate, and every line fits."""
    done = run_cli(registry, "compare", "--model-name", NAME, columns=80)
    assert done.returncode == 0, done.stderr
    table = [line for line in done.stdout.splitlines() if line[:1] in "┏┃┡│└"]
    assert table and all(len(line) <= 80 for line in table), done.stdout
    header = " ".join(line for line in table if line.startswith("┃"))
    for candidate in (registry.weak, registry.strong, registry.worse):
        assert candidate.label.split()[0] in header, header
    metrics = [line.strip("│").split("│")[0].strip() for line in table if line.startswith("│")]
    assert {"aliases", "mel_l1", "mrstft", "pesq"} <= set(metrics), metrics


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_bad_input_is_one_line_and_leaves_the_registry_unchanged(registry: Registry) -> None:
    client = registry.client
    client.create_registered_model("wavefoundry-empty-vocoder")
    # A version registered by hand (as from the MLflow UI), never scored.
    uri = registry.weak.model_uri
    by_hand = client.create_model_version(
        NAME, source=uri, run_id=registry.weak.run_id, model_id=uri.removeprefix("models:/")
    )
    before = snapshot(client, NAME)

    assert_one_line_error(
        run_cli(registry, "promote", "--model-name", "wavefoundry-nothing-vocoder"),
        "no registered model 'wavefoundry-nothing-vocoder'",
    )
    assert_one_line_error(
        run_cli(registry, "promote", "--model-name", "wavefoundry-empty-vocoder"),
        "has no versions",
    )
    assert_one_line_error(
        run_cli(registry, "promote", "--model-name", NAME, "--version", by_hand.version),
        "has no eval metrics",
        "wavefoundry evaluate --run-id",
    )
    unreachable = [o for o in registry.overrides if not o.startswith("tracking.uri")]
    assert_one_line_error(
        run_cli(
            registry,
            "promote",
            "--model-name",
            NAME,
            overrides=[*unreachable, "tracking.uri=http://127.0.0.1:9"],
        ),
        "unreachable",
    )
    assert_one_line_error(
        run_cli(registry, "rollback", "--model-name", "wavefoundry-empty-vocoder"),
        "has no versions",
    )
    assert snapshot(client, NAME) == before
    client.delete_model_version(NAME, by_hand.version)


def copy_version(client: MlflowClient, name: str, of: Candidate, run_id: str | None = None) -> str:
    """A version of `name` made by hand, as in the MLflow UI: `of`'s model, tags and scores."""
    uri = of.model_uri
    return client.create_model_version(
        name,
        source=uri,
        run_id=run_id or of.run_id,
        tags={**of.tags, "run_id": run_id or of.run_id},
        model_id=uri.removeprefix("models:/"),
    ).version


def test_every_registry_command_answers_a_state_made_in_the_ui_with_one_line(
    registry: Registry,
) -> None:
    """Before: a registered model name with '/' and a rollback to a deleted version each ended
    in a traceback with exit 1. Every command now answers each such state in one line with
    exit 2, and the registry is as it was."""
    client = registry.client
    faults = "wavefoundry-faults-vocoder"
    client.create_registered_model(faults)
    first = copy_version(client, faults, registry.weak)
    second = copy_version(client, faults, registry.strong)
    # A run deleted in the UI, with a version registered from it.
    experiment = client.get_experiment_by_name("test-registry").experiment_id
    run = client.create_run(experiment, run_name="deleted-in-the-ui")
    client.set_tag(run.info.run_id, "model_uri", registry.weak.model_uri)
    client.set_terminated(run.info.run_id)
    orphan = copy_version(client, faults, registry.weak, run_id=run.info.run_id)
    client.delete_run(run.info.run_id)
    # The champion replaced `first`, which was then deleted.
    client.set_registered_model_alias(faults, "champion", second)
    client.set_model_version_tag(faults, second, "previous_champion", first)
    client.set_registered_model_alias(faults, "staging", orphan)
    client.delete_model_version(faults, first)
    before = {name: snapshot(client, name) for name in (NAME, faults)}

    def refused(*args: str) -> subprocess.CompletedProcess:
        return run_cli(registry, *args)

    names = (
        ("wavefoundry/ljspeech-vocoder", "cannot contain '/'"),
        ("wavefoundry:ljspeech", "cannot contain '/' or ':'"),
        ("../wavefoundry-ljspeech-vocoder", "cannot contain '/'"),
        ("  ", "name is empty"),
    )
    commands = (["promote"], ["rollback"], ["compare"], ["bento", "build"])
    # Each command meets two of the bad names and each name two of the commands (a CLI
    # process each: all sixteen pairs cost a minute more and find nothing these do not).
    for i, command in enumerate(commands):
        for name, says in (names[i], names[(i + 1) % len(names)]):
            assert_one_line_error(refused(*command, "--model-name", name), says)
    assert_one_line_error(
        refused("rollback", "--model-name", faults),
        f"no version '{first}' (the champion before v{second}",
        "deleted",
    )
    client.set_model_version_tag(faults, second, "previous_champion", "the good one")
    assert_one_line_error(refused("rollback", "--model-name", faults), "'the good one'")
    client.set_model_version_tag(faults, second, "previous_champion", orphan)
    assert_one_line_error(
        refused("rollback", "--model-name", faults), f"from run {run.info.run_id}", "deleted"
    )
    client.set_model_version_tag(faults, second, "previous_champion", first)
    assert_one_line_error(
        refused("promote", "--model-name", faults, "--version", orphan), "deleted in MLflow"
    )
    assert_one_line_error(
        run_cli(registry, "bento", "build", "--model-name", faults, "--alias", "staging"),
        "(the staging) comes from run",
    )
    assert_one_line_error(refused("evaluate", "--run-id", run.info.run_id), "was deleted in MLflow")
    assert_one_line_error(
        refused("promote", "--model-name", faults, "--version", "7"), "has no version 7"
    )
    assert_one_line_error(
        refused("compare", "--model-name", "wavefoundry-nothing-vocoder"), "no registered model"
    )
    assert {name: snapshot(client, name) for name in (NAME, faults)} == before
    # The champion's version deleted: its alias goes with it, and each command says so.
    client.delete_model_version(faults, second)
    before = snapshot(client, faults)
    assert_one_line_error(refused("rollback", "--model-name", faults), "has no champion")
    assert_one_line_error(
        run_cli(registry, "bento", "build", "--model-name", faults), "no version with alias"
    )
    assert snapshot(client, faults) == before
    assert not any(m.name.endswith("-promotion-lock") for m in client.search_registered_models())


def test_a_registered_model_name_mlflow_allows_works_in_every_command(
    registry: Registry, tmp_path: Path
) -> None:
    """Names made in the MLflow UI with a quote, spaces, capitals and accents: listed,
    compared, promoted and built into a Bento with a name BentoML takes."""
    client = registry.client
    name = "It's Ünïcode Vocoder"
    client.create_registered_model(name)
    version = copy_version(client, name, registry.strong)
    done = run_cli(registry, "compare", "--model-name", name, "--out", str(tmp_path / "c.png"))
    assert done.returncode == 0, done.stderr
    assert f"v{version} hifigan" in done.stdout
    done = run_cli(registry, "promote", "--model-name", name)
    assert done.returncode == 0, done.stderr
    assert client.get_model_version_by_alias(name, "champion").version == version
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    command = [sys.executable, "-m", "wavefoundry.cli", "bento", "build", "--model-name", name]
    command += ["--params", str(REPO / "params.yaml")]
    for override in registry.overrides:
        command += ["--set", override]
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("wavefoundry-it-s-unicode-vocoder:")
