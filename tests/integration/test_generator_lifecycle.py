"""The code prior through the lifecycle on the VCTK sample corpus, against a real `mlflow
server`: it fetches the champion VQ-VAE from the registry and names its version, learns,
resumes bit for bit after a kill, is scored, registered and promoted with the default gate,
and is served by `bentoml serve` from a Bento carrying it and that VQ-VAE as two models, whose
/info shows both versions. (Beside SampleRNN in compare: test_families_compete.py.)"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pytest
import requests
import soundfile as sf
import torch
from safetensors.torch import load_file
from servers import BentoServer, MlflowServer, kill_after_checkpoint

from wavefoundry import tracking
from wavefoundry.audio import write_wav
from wavefoundry.config import Config, load_config
from wavefoundry.errors import UserError
from wavefoundry.families import io as model_io
from wavefoundry.stages import evaluate, promote
from wavefoundry.tracking import load_logged_model
from wavefoundry.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registry(stored_samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """A tracking server whose wavefoundry-vctk-codec has a champion: a tiny VQ-VAE trained,
    scored and promoted. Yields the overrides that point a config at it."""
    server = MlflowServer(tmp_path_factory.mktemp("prior-mlflow"))
    root = tmp_path_factory.mktemp("prior")
    overrides = [
        "promotion.floor=off",  # tiny vocoders do not beat Griffin-Lim; the floor: test_registry
        f"paths.data={stored_samples}",
        f"paths.runs={root / 'codec-runs'}",
        f"tracking.uri={server.url}",
        "tracking.experiment=test-code-prior",
        "training.validate_every=1000",
        "evaluation.clips=2",
        "evaluation.max_seconds=0.25",
        # Timing on a shared CPU: the gate's speed limit is not what these tests are about.
        "promotion.max_real_time_factor=1000",
    ]
    try:
        cfg = load_config(PARAMS, overrides=overrides)
        codec = evaluate(cfg, run_id=train(cfg, "vqvae", "vctk").run_id).candidate
        assert promote(cfg, codec.name, codec.version).decision.passed
        yield overrides
    finally:
        server.stop()


def config(overrides: list[str], runs: Path, *more: str) -> Config:
    return load_config(PARAMS, overrides=[*overrides, f"paths.runs={runs}", *more])


def test_the_prior_trains_on_the_champion_vqvae_and_names_its_version(
    registry: list[str], tmp_path: Path
) -> None:
    cfg = config(registry, tmp_path / "runs")
    history: list[float] = []
    result = train(
        cfg, "code_prior", "vctk", on_step=lambda _, losses: history.append(losses["loss"])
    )
    window = len(history) // 5
    assert np.mean(history[-window:]) < np.mean(history[:window]), history

    mlflow.set_tracking_uri(cfg.tracking.uri)
    champion = mlflow.MlflowClient().get_model_version_by_alias(
        "wavefoundry-vctk-codec", "champion"
    )
    run_tags = mlflow.MlflowClient().get_run(result.run_id).data.tags
    assert run_tags[tracking.TAG_CODEC_MODEL] == "wavefoundry-vctk-codec"
    assert run_tags[tracking.TAG_CODEC_VERSION] == str(champion.version)
    assert run_tags[tracking.TAG_CODEC_RUN_ID] == champion.run_id
    # The exported prior carries that VQ-VAE: its decoder weights equal the registered ones.
    family, prior = model_io.load_model(result.model_dir)
    assert family.config.codec_version == str(champion.version)
    codec_family, codec = model_io.load_model(tracking.download_logged_model(champion.source))
    assert family.config.codec == codec_family.config
    assert all(torch.equal(prior.codec.state_dict()[k], v) for k, v in codec.state_dict().items())


def test_a_missing_vqvae_version_is_one_clear_line(registry: list[str], tmp_path: Path) -> None:
    command = [sys.executable, "-m", "wavefoundry.cli", "train", "-m", "code_prior", "-d", "vctk"]
    command += ["--params", str(PARAMS), "--set", "models.code_prior.codec_version=99"]
    for override in [*registry, f"paths.runs={tmp_path}"]:
        command += ["--set", override]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "no version '99' of registered model 'wavefoundry-vctk-codec'" in done.stderr


def test_the_prior_resumes_bit_for_bit_after_a_kill(registry: list[str], tmp_path: Path) -> None:
    steps, half = 4, 2  # two steps each side of the kill, as in test_training's resume test
    common = (
        f"training.steps={steps}",
        f"training.checkpoint_every={half}",
        "training.keep_checkpoints=10",
    )
    straight = train(config(registry, tmp_path / "straight", *common), "code_prior", "vctk")

    runs = tmp_path / "interrupted"
    command = [sys.executable, "-m", "wavefoundry.cli", "train", "-m", "code_prior", "-d", "vctk"]
    command += ["--params", str(PARAMS)]
    for override in [*registry, f"paths.runs={runs}", *common]:
        command += ["--set", override]
    process = subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    checkpoints = runs / "vctk-code_prior" / "checkpoints"
    kill_after_checkpoint(process, checkpoints, half)

    resumed = train(config(registry, runs, *common), "code_prior", "vctk", resume=True)
    final = f"step-{steps:08d}"
    a = load_file(straight.run_dir / "checkpoints" / final / "model.safetensors")
    b = load_file(resumed.run_dir / "checkpoints" / final / "model.safetensors")
    assert a.keys() == b.keys()
    assert not [k for k in a if not torch.equal(a[k], b[k])]
    half_way = load_file(checkpoints / f"step-{half:08d}" / "model.safetensors")
    assert any(not torch.equal(half_way[k], b[k]) for k in b if k.startswith("prior.transformer"))


def test_scored_promoted_with_the_default_gate_and_served_with_its_vqvae_beside_it(
    registry: list[str], tmp_path: Path
) -> None:
    # Two steps: what is checked here is the lifecycle (scored, registered, promoted, served),
    # not learning; test_the_prior_trains_... checks that its loss falls.
    cfg = config(registry, tmp_path / "runs", "training.steps=2")
    prior = evaluate(cfg, run_id=train(cfg, "code_prior", "vctk").run_id).candidate
    assert prior.name == "wavefoundry-vctk-generator"
    assert np.isfinite(prior.metrics["bits_per_code"]) and prior.metrics["rtf"] > 0
    assert 1.0 <= prior.metrics["dnsmos_ovrl"] <= 5.0  # DNSMOS of what it generated
    codec_version = prior.tags[tracking.TAG_CODEC_VERSION]
    assert prior.tags[tracking.TAG_CODEC_MODEL] == "wavefoundry-vctk-codec"

    decision = promote(cfg, prior.name, prior.version).decision  # params.yaml's own gate
    assert decision.passed, decision.reasons
    assert (decision.rules_key, decision.primary) == (
        "promotion.datasets.vctk.generator",
        "dnsmos_ovrl",
    )

    home = tmp_path / "bentoml"
    command = [sys.executable, "-m", "wavefoundry.cli", "bento", "build"]
    command += ["--params", str(PARAMS), "--model-name", prior.name]
    for override in cfg_overrides(registry, tmp_path):
        command += ["--set", override]
    env = {**os.environ, "BENTOML_HOME": str(home)}
    done = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    tag = done.stdout.strip().splitlines()[-1]
    assert "and its VQ-VAE wavefoundry-vctk-codec:" in " ".join(done.stdout.split())

    # Two BentoModels in the store and in the Bento's manifest: the prior, and its VQ-VAE.
    bentoml = [str(Path(sys.executable).with_name("bentoml"))]
    listed = subprocess.run(
        [*bentoml, "models", "list", "-o", "json"], env=env, capture_output=True, text=True
    )
    stored = {m["tag"].split(":")[0] for m in json.loads(listed.stdout)}
    assert {"wavefoundry-vctk-generator", "wavefoundry-vctk-codec"} <= stored
    manifest = subprocess.run(
        [*bentoml, "get", tag, "-o", "json"], env=env, capture_output=True, text=True
    )
    services = json.loads(manifest.stdout)["services"]
    models = {m["tag"].split(":")[0]: m["tag"] for s in services for m in s["models"]}
    assert set(models) == {"wavefoundry-vctk-generator", "wavefoundry-vctk-codec"}
    # Each weight once: the prior's folder holds the Transformer only.
    prior_dir = model_folder(home, models["wavefoundry-vctk-generator"])
    codec_dir = model_folder(home, models["wavefoundry-vctk-codec"])
    assert not any(k.startswith("prior.codec.") for k in load_file(prior_dir / "model.safetensors"))
    assert any(k.startswith("vqvae.") for k in load_file(codec_dir / "model.safetensors"))
    with pytest.raises(UserError, match="saved without the model it is built on"):
        model_io.load_model(prior_dir)
    other = tmp_path / "other-codec"
    shutil.copytree(codec_dir, other)
    described = json.loads((other / "config.json").read_text())
    described["model_config"]["codebook_size"] += 1
    (other / "config.json").write_text(json.dumps(described))
    with pytest.raises(UserError, match="not the VQ-VAE this prior was trained on"):
        model_io.load_model(prior_dir, upstream=other)

    server = BentoServer(tag, home)
    try:
        info = requests.get(server.url + "/info", timeout=10).json()
        assert info["family"] == "code_prior" and info["version"] == prior.version
        assert info["upstream"][tracking.TAG_CODEC_MODEL] == "wavefoundry-vctk-codec"
        assert info["upstream"][tracking.TAG_CODEC_VERSION] == codec_version
        assert info["codec"]["registered_model"] == "wavefoundry-vctk-codec"
        assert info["codec"]["version"] == codec_version and info["codec"]["run_id"]
        body = {"seconds": 0.5, "seed": 3, "speaker": prior_speaker(cfg)}
        response = requests.post(server.url + "/generate", json=body, timeout=120)
        assert response.status_code == 200, response.text
        audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
        assert rate == 48000 and len(audio) == 24000 and np.abs(audio).max() > 0
        # The two models put together make what the registered prior (VQ-VAE packed) makes.
        family, net = load_logged_model(prior.model_uri)
        with torch.no_grad():
            direct = family.synthesize(net, None, body)
        written = write_wav(tmp_path / "direct.wav", direct.numpy(), 48000)
        assert np.array_equal(audio, sf.read(written, dtype="int16")[0])
        wrong = requests.post(
            server.url + "/generate", json={**body, "speaker": "p999"}, timeout=60
        )
        assert wrong.status_code == 400 and "unknown speaker" in wrong.text
    finally:
        server.stop()


def model_folder(home: Path, tag: str) -> Path:
    name, version = tag.split(":")
    return home / "models" / name / version


def cfg_overrides(registry: list[str], tmp_path: Path) -> list[str]:
    return [*registry, f"paths.runs={tmp_path / 'runs'}"]


def prior_speaker(cfg: Config) -> str:
    from wavefoundry.data.stored import stored_dataset

    return stored_dataset(cfg, "vctk")[0].speakers[-1]
