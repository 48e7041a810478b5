"""The families of a task compete in its registered model: each is trained, scored on the same
held-out clips, registered, promotable with the default gate, and listed next to the others
by `wavefoundry compare`, whose printed table (its real columns) these tests read:
HiFi-GAN and WaveGlow (vocoders, LJ Speech); the VAE and VQ-VAE (codecs, VCTK), then SampleRNN
and the code prior on that VQ-VAE (generators on speech, judged by DNSMOS); WaveGAN and
SampleRNN (generators on NSynth, judged by the note classifier's Fréchet distance)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from wavefoundry import tracking
from wavefoundry.config import load_config
from wavefoundry.registry.candidates import Candidate
from wavefoundry.stages import evaluate, promote, promote_best
from wavefoundry.training.trainer import train

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


def compared(tmp: Path, data: Path, name: str) -> tuple[list[str], dict[str, dict[str, str]], str]:
    """`wavefoundry compare` as a user reads it: the columns of its table, each candidate's row
    (by its label, e.g. "v2 samplernn") as column -> printed cell, and the whole output."""
    done = cli(tmp, data, "compare", "--model-name", name)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    [header] = [line for line in lines if line.startswith("┃")]
    columns = [cell.strip() for cell in header.strip("┃").split("┃")]
    rows = {}
    for line in lines:
        if line.startswith("│"):
            cells = [cell.strip() for cell in line.strip("│").split("│")]
            rows[cells[0]] = dict(zip(columns, cells, strict=True))
    return columns, rows, done.stdout


def number(cell: str) -> float:
    value = float(cell)  # "-" (no score) fails here
    assert math.isfinite(value)
    return value


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

    columns, rows, printed = compared(tmp_path, stored_samples, name)
    assert columns[:5] == ["candidate", "aliases", "data version", "mel_l1", "mrstft"]
    assert rows[new.label]["aliases"] == "champion" and rows[old.label]["aliases"] == ""
    assert number(rows[new.label]["mel_l1"]) == pytest.approx(new.metrics["mel_l1"], rel=1e-3)
    assert number(rows[old.label]["mel_l1"]) == pytest.approx(old.metrics["mel_l1"], rel=1e-3)
    if own_metric:  # a family's own metric: a number in its row, "-" in the other's
        assert number(rows[new.label][own_metric]) > 0 and rows[old.label][own_metric] == "-"
    assert f"gate: promotion.tasks.{task}: primary mel_l1 (lower is better)" in printed

    if dataset == "ljspeech":  # evaluate's last line: what to do next, or that it is done
        again = cli(tmp_path, stored_samples, "evaluate", "--run-id", new.run_id)
        assert again.returncode == 0, again.stderr[-2000:]
        assert "it is the champion already" in again.stdout
        assert "promote it with" not in again.stdout
        other = cli(tmp_path, stored_samples, "evaluate", "--run-id", old.run_id)
        said = " ".join(other.stdout.split())
        assert f"promote it with: wavefoundry promote --model-name {name} --version" in said

    if dataset == "vctk":  # the code prior needs a VQ-VAE of this registry: the incumbent's
        generators_compete_on_speech(tmp_path, stored_samples, old)


def generators_compete_on_speech(tmp: Path, data: Path, codec: Candidate) -> None:
    """SampleRNN and a code prior (on `codec`, pinned by number: the VAE holds the alias)
    with the default gate: both report DNSMOS of what they generate, the better takes the
    alias whichever came first, and compare shows each family's own likelihood beside it."""
    more = ["training.steps=2", f"models.code_prior.codec_version={codec.version}"]
    cfg = load_config(REPO / "params.yaml", overrides=[*overrides(tmp, data), *more])
    found = {
        family: evaluate(cfg, run_id=train(cfg, family, "vctk").run_id).candidate
        for family in ("samplernn", "code_prior")
    }
    name = "wavefoundry-vctk-generator"
    assert {c.name for c in found.values()} == {name}
    for candidate in found.values():
        assert candidate.metrics["dnsmos_ovrl"] >= 1.0  # DNSMOS is 1-5
    better, worse = sorted(found.values(), key=lambda c: -c.metrics["dnsmos_ovrl"])
    contests = {
        c.version: c for c in promote_best(cfg, [(c.name, c.version) for c in found.values()])
    }
    assert contests[better.version].promoted, contests[better.version].verdict
    assert contests[worse.version].verdict.startswith("refused: primary dnsmos_ovrl")
    decision = contests[worse.version].outcome.decision
    assert decision.rules_key == "promotion.datasets.vctk.generator"

    columns, rows, printed = compared(tmp, data, name)
    assert columns[:4] == ["candidate", "aliases", "data version", "dnsmos_ovrl"]
    assert rows[better.label]["aliases"] == "champion" and rows[worse.label]["aliases"] == ""
    assert number(rows[better.label]["dnsmos_ovrl"]) >= number(rows[worse.label]["dnsmos_ovrl"])
    prior, samplernn = found["code_prior"].label, found["samplernn"].label
    assert number(rows[samplernn]["bits_per_sample"]) > 0 and rows[prior]["bits_per_sample"] == "-"
    assert number(rows[prior]["bits_per_code"]) > 0 and rows[samplernn]["bits_per_code"] == "-"
    gate_line = "gate: promotion.datasets.vctk.generator: primary dnsmos_ovrl (higher is better)"
    assert gate_line in printed

    # A champion scored before DNSMOS judged speech generators is scored again, not waved by.
    client = mlflow.MlflowClient(cfg.tracking.uri)
    for metric in ("dnsmos_ovrl", "dnsmos_sig", "dnsmos_bak"):
        client.delete_model_version_tag(name, better.version, tracking.TAG_EVAL_PREFIX + metric)
    done = cli(tmp, data, "promote", "--model-name", name, "--version", worse.version, "--dry-run")
    assert done.returncode == 0, done.stderr[-2000:]
    said = " ".join(done.stdout.split())
    assert "the champion was scored again" in said and "REFUSED" in said
    assert "metrics: promotion.datasets.vctk.generator (primary dnsmos_ovrl)" in said
    [row] = [line for line in done.stdout.splitlines() if line.startswith("│ primary dnsmos_ovrl")]
    champion_cell = row.strip("│").split("│")[2]  # check, challenger, champion, ...
    assert number(champion_cell) == pytest.approx(better.metrics["dnsmos_ovrl"], rel=1e-3)


def test_note_generators_compete_on_the_note_classifier_s_metrics(
    stored_samples: Path, tmp_path: Path
) -> None:
    cfg = load_config(
        REPO / "params.yaml", overrides=[*overrides(tmp_path, stored_samples), "training.steps=2"]
    )
    found = {
        family: evaluate(cfg, run_id=train(cfg, family, "nsynth").run_id).candidate
        for family in ("wavegan", "samplernn")
    }
    name = "wavefoundry-nsynth-generator"
    better, worse = sorted(found.values(), key=lambda c: c.metrics["frechet_distance"])
    contests = {
        c.version: c for c in promote_best(cfg, [(c.name, c.version) for c in found.values()])
    }
    assert contests[better.version].promoted, contests[better.version].verdict
    assert not contests[worse.version].promoted
    assert contests[better.version].outcome.decision.rules_key == "promotion.tasks.generator"

    columns, rows, printed = compared(tmp_path, stored_samples, name)
    assert columns[:5] == [
        "candidate",
        "aliases",
        "data version",
        "frechet_distance",
        "pitch_accuracy",
    ]
    assert rows[better.label]["aliases"] == "champion"
    for candidate in found.values():
        assert number(rows[candidate.label]["frechet_distance"]) == pytest.approx(
            candidate.metrics["frechet_distance"], rel=1e-3
        )
    assert "gate: promotion.tasks.generator: primary frechet_distance (lower is better)" in printed
