"""WaveGlow and the VAE join their tasks' registered models next to the families already
there: each is trained by `wavefoundry train`, scored on the same held-out clips by
`wavefoundry evaluate`, registered, promotable, and listed by `wavefoundry compare`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wavefoundry.config import load_config
from wavefoundry.stages import evaluate, promote

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def cli(tmp: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "wavefoundry.cli",
        *args,
        "--params",
        str(REPO / "params.yaml"),
    ]
    for override in overrides(tmp, data):
        command += ["--set", override]
    # Wide enough that rich does not wrap a candidate's label across lines of its table.
    env = {**os.environ, "COLUMNS": "400"}
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=900)


def overrides(tmp: Path, data: Path) -> list[str]:
    return [
        f"paths.data={data}",
        f"paths.runs={tmp / 'runs'}",
        f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        f"tracking.artifact_location={tmp / 'mlartifacts'}",
        "training.validate_every=1000",
        "evaluation.clips=2",
        "evaluation.max_seconds=0.5",
        "promotion.max_real_time_factor=50",
        "promotion.floor=off",  # tiny models do not beat Griffin-Lim; the floor: test_registry
    ]


@pytest.mark.parametrize(
    ("dataset", "task", "incumbent", "newcomer", "own_metric"),
    [
        ("ljspeech", "vocoder", "hifigan", "waveglow", None),
        ("vctk", "codec", "vqvae", "vae", "latent_kbps"),
    ],
)
def test_a_new_family_is_scored_registered_promotable_and_compared(
    stored_samples: Path,
    tmp_path: Path,
    dataset: str,
    task: str,
    incumbent: str,
    newcomer: str,
    own_metric: str | None,
) -> None:
    cfg = load_config(REPO / "params.yaml", overrides=overrides(tmp_path, stored_samples))
    found = {}
    for family in (newcomer, incumbent):
        done = cli(tmp_path, stored_samples, "train", "-m", family, "-d", dataset, "--steps", "2")
        assert done.returncode == 0, done.stderr[-2000:]
        found[family] = evaluate(cfg, model=family, dataset=dataset).candidate
    name = f"wavefoundry-{dataset}-{task}"
    new, old = found[newcomer], found[incumbent]
    assert new.name == old.name == name and new.family == newcomer
    assert new.fingerprint == old.fingerprint  # the same held-out clips for both
    assert {"mel_l1", "mrstft", "snr_db", "rtf"} <= set(new.metrics)
    if own_metric:
        assert new.metrics[own_metric] > 0

    # The newcomer was registered first, so it faces no champion: the gate lets it in.
    decision = promote(cfg, name, new.version).decision
    assert decision.passed, decision

    done = cli(tmp_path, stored_samples, "compare", "--model-name", name)
    assert done.returncode == 0, done.stderr[-2000:]
    assert new.label in done.stdout and old.label in done.stdout
    assert "champion" in done.stdout
