"""The champion as a Bento: built from a real `mlflow server` registry by the CLI, served by
`bentoml serve` in its own process, asked over HTTP."""
# The registry here keeps its artifacts on local disk; test_registry.py covers S3 (moto).

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
import torch
import yaml
from servers import BentoServer, MlflowServer

from wavefoundry.audio import resample, write_wav
from wavefoundry.config import Config, load_config
from wavefoundry.registry.promotion import promote
from wavefoundry.stages import evaluate
from wavefoundry.tracking import load_logged_model
from wavefoundry.training.trainer import train

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@dataclass
class Served:
    server: BentoServer
    cfg: Config
    registered_model: str
    version: str
    model_uri: str
    tag: str


def champion(cfg: Config, model: str, dataset: str, steps: int) -> tuple[str, str, str]:
    cfg.training.steps = steps
    result = train(cfg, model, dataset)
    candidate = evaluate(cfg, run_id=result.run_id).candidate
    assert promote(cfg, candidate.name, candidate.version).decision.passed
    return candidate.name, candidate.version, candidate.model_uri


def build(overrides: list[str], registered_model: str, home: Path, cwd: Path) -> str:
    command = [sys.executable, "-m", "wavefoundry.cli", "bento", "build"]
    command += ["--params", str(REPO / "params.yaml"), "--model-name", registered_model]
    for override in overrides:
        command += ["--set", override]
    env = {**os.environ, "BENTOML_HOME": str(home)}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A tracking server of this module's own: registered model names are global to a
    server, and the registry tests' champions must not face these."""
    server = MlflowServer(tmp_path_factory.mktemp("serving-mlflow"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="module")
def served(
    stored_samples: Path, registry_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Served]]:
    root = tmp_path_factory.mktemp("serving")
    overrides = [
        f"paths.data={stored_samples}",
        f"paths.runs={root / 'runs'}",
        f"tracking.uri={registry_server}",
        "tracking.experiment=test-serving",
        "training.validate_every=1000",
        "evaluation.clips=2",
        "promotion.max_real_time_factor=20",
        "serving.max_input_seconds=30",
    ]
    cfg = load_config(REPO / "params.yaml", overrides=overrides)
    servers: dict[str, Served] = {}
    try:
        for key, model, dataset, steps in (
            ("vocoder", "hifigan", "ljspeech", 4),
            ("generator", "wavegan", "nsynth", 4),
            ("codec", "vae", "vctk", 4),
        ):
            name, version, uri = champion(cfg, model, dataset, steps)
            tag = build(overrides, name, root / "bentoml", root)
            server = BentoServer(tag, root / "bentoml")
            servers[key] = Served(server, cfg, name, version, uri, tag)
        yield servers
    finally:
        for entry in servers.values():
            entry.server.stop()


def wav_bytes(audio: np.ndarray, rate: int, format: str = "WAV", subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, audio, rate, format=format, subtype=subtype)
    return buffer.getvalue()


def speech_like(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    noise = np.random.default_rng(0).normal(0, 0.01, (len(t), channels))
    return (tone[:, None] + noise).astype(np.float32).squeeze()


def test_every_endpoint_answers_and_vocode_matches_the_library(
    served: dict[str, Served], tmp_path: Path
) -> None:
    entry = served["vocoder"]
    url = entry.server.url
    for path in ("/healthz", "/readyz", "/metrics"):
        assert requests.get(url + path, timeout=10).status_code == 200, path

    info = requests.get(url + "/info", timeout=10).json()
    assert info["registered_model"] == entry.registered_model == "wavefoundry-ljspeech-vocoder"
    assert info["version"] == entry.version and info["family"] == "hifigan"
    assert info["run_id"] and "mel_l1" in info["metrics"] and info["data_version"]

    # Stereo FLAC at 44.1 kHz: the service mixes and resamples it to the model's 22,050 Hz.
    upload = speech_like(1.5, 44100, channels=2)
    response = requests.post(
        url + "/vocode",
        files={"audio": ("clip.flac", wav_bytes(upload, 44100, "FLAC"))},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    served_audio, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 22050 and sf.info(io.BytesIO(response.content)).subtype == "PCM_16"

    family, net = load_logged_model(entry.model_uri)
    mono = sf.read(io.BytesIO(wav_bytes(upload, 44100, "FLAC")), dtype="float32")[0].mean(axis=1)
    with torch.no_grad():
        direct = family.synthesize(net, torch.from_numpy(resample(mono, 44100, 22050)), {})
    expected, _ = sf.read(write_wav(tmp_path / "direct.wav", direct.numpy(), 22050), dtype="int16")
    assert served_audio.shape == expected.shape
    assert np.array_equal(served_audio, expected)  # the same network, the same samples


def test_a_generator_answers_generate(served: dict[str, Served]) -> None:
    url = served["generator"].server.url
    response = requests.post(url + "/generate", json={"pitch": 64, "seed": 3}, timeout=60)
    assert response.status_code == 200, response.text
    audio, rate = sf.read(io.BytesIO(response.content))
    assert rate == 16000 and len(audio) > 0 and np.abs(audio).max() > 0
    again = requests.post(url + "/generate", json={"pitch": 64, "seed": 3}, timeout=60)
    assert again.content == response.content  # the seed fixes the note
    assert requests.get(url + "/info", timeout=10).json()["task"] == "generator"


def test_a_codec_converts_a_voice_and_keeps_the_inputs_length(
    served: dict[str, Served], tmp_path: Path
) -> None:
    entry = served["codec"]
    url = entry.server.url
    info = requests.get(url + "/info", timeout=10).json()
    assert info["family"] == "vae" and info["registered_model"] == "wavefoundry-vctk-codec"
    family, net = load_logged_model(entry.model_uri)
    rate, (source, target) = family.data.sample_rate, family.data.speakers[:2]
    upload = speech_like(0.7, rate)  # not a whole number of latent frames
    response = requests.post(
        url + "/convert",
        files={"audio": ("clip.wav", wav_bytes(upload, rate))},
        data={"speaker": target},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    converted, served_rate = sf.read(io.BytesIO(response.content), dtype="int16")
    assert served_rate == rate and converted.shape == upload.shape

    sent = sf.read(io.BytesIO(wav_bytes(upload, rate)), dtype="float32")[0]
    with torch.no_grad():
        direct = family.synthesize(net, torch.from_numpy(sent), {"speaker": target})
        as_source = family.synthesize(net, torch.from_numpy(sent), {"speaker": source})
    expected, _ = sf.read(write_wav(tmp_path / "direct.wav", direct.numpy(), rate), dtype="int16")
    assert np.array_equal(converted, expected)  # the library's conversion, sample for sample
    assert not torch.equal(direct, as_source)  # and the speaker changes what comes out

    unknown = requests.post(
        url + "/convert",
        files={"audio": ("clip.wav", wav_bytes(upload, rate))},
        data={"speaker": "p999"},
        timeout=60,
    )
    assert unknown.status_code == 400 and "unknown speaker 'p999'" in unknown.text
    vocoder = requests.post(
        served["vocoder"].server.url + "/convert",
        files={"audio": ("clip.wav", wav_bytes(upload, rate))},
        data={"speaker": target},
        timeout=60,
    )
    assert vocoder.status_code == 400 and "codec" in vocoder.text


def client_errors(vocoder: str, generator: str) -> list[tuple[str, requests.Response, str]]:
    ten_minutes = wav_bytes(np.zeros(22050 * 600, dtype=np.float32), 22050)
    post = requests.post
    return [
        (
            "not audio",
            post(vocoder + "/vocode", files={"audio": ("a.wav", b"hello, not audio")}, timeout=30),
            "not a WAV or FLAC",
        ),
        (
            "empty file",
            post(vocoder + "/vocode", files={"audio": ("a.wav", b"")}, timeout=30),
            "empty",
        ),
        ("no body", post(vocoder + "/vocode", timeout=30), "audio"),
        (
            "10 minutes",
            post(vocoder + "/vocode", files={"audio": ("a.wav", ten_minutes)}, timeout=60),
            "MiB",
        ),
        (
            "negative length",
            post(generator + "/generate", json={"seconds": -1}, timeout=30),
            "seconds",
        ),
        (
            "huge length",
            post(generator + "/generate", json={"seconds": 1e9}, timeout=30),
            "more than this service makes",
        ),
        (
            "unknown instrument",
            post(generator + "/generate", json={"instrument_family": "kazoo"}, timeout=30),
            "instrument family",
        ),
        ("wrong type", post(generator + "/generate", json={"pitch": "high"}, timeout=30), "pitch"),
        (
            "pitch out of range",
            post(generator + "/generate", json={"pitch": 200}, timeout=30),
            "127",
        ),
        (
            "wrong endpoint",
            post(
                generator + "/vocode",
                files={"audio": ("a.wav", wav_bytes(speech_like(0.5, 16000), 16000))},
                timeout=30,
            ),
            "/generate",
        ),
    ]


def test_client_errors_are_4xx_with_a_reason_and_the_service_keeps_answering(
    served: dict[str, Served],
) -> None:
    vocoder, generator = served["vocoder"].server.url, served["generator"].server.url
    for what, response, reason in client_errors(vocoder, generator):
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
        assert reason in response.text, (what, response.text)
    ok = requests.post(
        vocoder + "/vocode",
        files={"audio": ("a.wav", wav_bytes(speech_like(0.5, 22050), 22050))},
        timeout=60,
    )
    assert ok.status_code == 200
    assert requests.post(generator + "/generate", json={}, timeout=60).status_code == 200


def test_the_kubernetes_files_name_the_port_and_probe_bentoml() -> None:
    documents = list(yaml.safe_load_all((REPO / "serving" / "kubernetes.yaml").read_text()))
    kinds = {doc["kind"]: doc for doc in documents}
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler"}
    (container,) = kinds["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert (
        container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    )
    assert kinds["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    selector = kinds["Deployment"]["spec"]["selector"]["matchLabels"]
    assert kinds["Service"]["spec"]["selector"] == selector
    assert (
        kinds["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"]
        == kinds["Deployment"]["metadata"]["name"]
    )


def test_building_a_model_with_no_champion_is_one_clear_line(
    served: dict[str, Served], tmp_path: Path
) -> None:
    tracking = served["vocoder"].cfg.tracking.uri
    command = [sys.executable, "-m", "wavefoundry.cli", "bento", "build", "--params"]
    command += [str(REPO / "params.yaml"), "--set", f"tracking.uri={tracking}"]
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    done = subprocess.run(
        [*command, "--model-name", "wavefoundry-vctk-codec"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: no registered model 'wavefoundry-vctk-codec' (score a training run first: "
        "wavefoundry evaluate -m MODEL -d DATASET)"
    ]
    done = subprocess.run(
        [*command, "--model-name", served["vocoder"].registered_model, "--alias", "staging"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "no version with alias 'staging'" in done.stderr
