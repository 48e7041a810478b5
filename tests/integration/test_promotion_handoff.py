"""A value handed on, not looked up again: what `promote` decided is what `bento build` ships,
even when another promotion moves the alias in between (a real `mlflow server`, the CLI as a
user runs it, the Bento served by `bentoml serve`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
from servers import BentoServer, MlflowServer

from wavefoundry.config import load_config
from wavefoundry.stages import evaluate
from wavefoundry.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
MODEL = "wavefoundry-ljspeech-vocoder"

pytestmark = pytest.mark.slow


CLI = [sys.executable, "-m", "wavefoundry.cli"]


def wavefoundry(
    *args: str, overrides: list[str], home: Path, cwd: Path
) -> subprocess.CompletedProcess:
    command = [*CLI, *args, "--params", str(REPO / "params.yaml")]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "BENTOML_HOME": str(home)}
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def registry(
    stored_samples: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[str], Path, list[dict]]]:
    """Two scored candidates of one registered model, as `evaluate --out` writes them."""
    server = MlflowServer(tmp_path_factory.mktemp("handoff-mlflow"))
    root = tmp_path_factory.mktemp("handoff")
    overrides = [
        f"paths.data={stored_samples}",
        f"paths.runs={root / 'runs'}",
        f"tracking.uri={server.url}",
        "tracking.experiment=test-handoff",
        "promotion.floor=off",  # 2-3 steps do not beat Griffin-Lim; the floor: test_registry
        "training.validate_every=1000",
        "evaluation.clips=2",
    ]
    cfg = load_config(REPO / "params.yaml", overrides=overrides)
    records = []
    try:
        for steps in (2, 3):
            cfg.training.steps = steps
            result = train(cfg, "hifigan", "ljspeech")
            records.append(evaluate(cfg, run_id=result.run_id).candidate.as_record())
        yield overrides, root, records
    finally:
        server.stop()


def test_bento_build_ships_the_version_promote_decided_on_when_the_alias_moved_since(registry):
    overrides, root, records = registry
    first, second = records
    candidates = root / "candidates"
    candidates.mkdir()
    (candidates / "hifigan.json").write_text(json.dumps(first))
    home = root / "bentoml"

    promoted = wavefoundry(
        "promote", "--candidates", str(candidates / "hifigan.json"),
        "--out", str(root / "promotion.json"), overrides=overrides, home=home, cwd=root,
    )  # fmt: skip
    assert promoted.returncode == 0, promoted.stderr
    decided = json.loads((root / "promotion.json").read_text())
    assert decided["champions"] == [
        {"registered_model": MODEL, "version": first["version"], "promoted": True}
    ]

    # Between promote and bento build, another promotion (here as a user in the MLflow UI
    # would) moves the alias to the other version.
    tracking_uri = next(o for o in overrides if o.startswith("tracking.uri=")).split("=", 1)[1]
    client = mlflow.MlflowClient(tracking_uri)
    client.set_registered_model_alias(MODEL, "champion", second["version"])

    built = wavefoundry(
        "bento", "build", "--promotion", str(root / "promotion.json"),
        overrides=overrides, home=home, cwd=root,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    assert f"serving {MODEL} version {first['version']} " in built.stdout
    tag = built.stdout.strip().splitlines()[-1]
    server = BentoServer(tag, home)
    try:
        info = requests.get(f"{server.url}/info", timeout=30).json()
    finally:
        server.stop()
    assert (info["registered_model"], info["version"]) == (MODEL, first["version"])
    assert info["alias"] == ""  # chosen by its number, not by what the alias says now

    # --version names one; without it, the alias decides (the command line's default).
    by_number = wavefoundry(
        "bento", "build", "--model-name", MODEL, "--version", first["version"],
        overrides=overrides, home=home, cwd=root,
    )  # fmt: skip
    assert f"serving {MODEL} version {first['version']} " in by_number.stdout, by_number.stderr
    by_alias = wavefoundry(
        "bento", "build", "--model-name", MODEL, overrides=overrides, home=home, cwd=root
    )
    assert f"serving {MODEL} version {second['version']} " in by_alias.stdout, by_alias.stderr


def test_a_promotion_file_without_champions_builds_nothing_and_says_so(registry, tmp_path):
    overrides, root, _ = registry
    promotion = tmp_path / "promotion.json"
    promotion.write_text(json.dumps({"registered_models": [], "champions": [], "contests": []}))
    done = wavefoundry(
        "bento", "build", "--promotion", str(promotion), overrides=overrides,
        home=root / "bentoml", cwd=root,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no registered model has a champion; no Bento to build" in done.stdout
