"""The champion as a Bento: built from a real `mlflow server` registry by the CLI, served by
`bentoml serve` in its own process, asked over HTTP."""
# The registry here keeps its artifacts on local disk; test_registry.py covers S3 (moto).

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests
import soundfile as sf
import torch
import yaml
from servers import BentoServer, MlflowServer

from wavefoundry.audio import resample, resampled_length, write_wav
from wavefoundry.config import Config, load_config
from wavefoundry.stages import evaluate, promote
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
    tag = done.stdout.strip().splitlines()[-1]
    # What it prints is what serves it here: this environment, this BentoML store.
    said = " ".join(done.stdout.split())
    assert f"serve it: BENTOML_HOME={home} uv run bentoml serve {tag} --port 3000" in said
    assert f"containerize: BENTOML_HOME={home} uv run wavefoundry bento containerize {tag}" in said
    assert "not supported by bento v2" not in done.stdout + done.stderr  # its v1 build is ours
    return tag


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
        "promotion.floor=null",  # 4 steps of HiFi-GAN do not beat Griffin-Lim; served anyway
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
            "not audio soundfile can read (WAV, FLAC, Ogg",
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
            "misspelt field",
            post(generator + "/generate", json={"pitch": 60, "velocty": 90}, timeout=30),
            "unexpected field 'velocty'",
        ),
        (
            "pitch out of range",
            post(generator + "/generate", json={"pitch": 200}, timeout=30),
            "127",
        ),
        ("GET on a POST endpoint", requests.get(vocoder + "/vocode", timeout=30), "takes POST"),
        # A cut-off upload was resynthesized as far as it went, as ingest would not take it.
        (
            "truncated WAV",
            post(
                vocoder + "/vocode",
                files={"audio": ("a.wav", wav_bytes(speech_like(0.5, 22050), 22050)[:5000])},
                timeout=30,
            ),
            "the WAV upload is truncated: data chunk declares 22050 bytes, file holds 4956",
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
        # A 404 names the routes that serve this Bento's model, not every route the class has.
        (
            "no such endpoint",
            post(vocoder + "/synthesize", json={"text": "hello"}, timeout=30),
            'no endpoint /synthesize on this service: it answers POST /vocode"',
        ),
        (
            "GET on a path the service has not",
            requests.get(vocoder + "/vocoder", timeout=30),
            'no endpoint /vocoder on this service: it answers POST /vocode"',
        ),
        ("POST on GET /info", post(vocoder + "/info", json={}, timeout=30), "takes GET, not POST"),
        (
            "no such endpoint on a generator",
            post(generator + "/synthesize", json={"text": "hello"}, timeout=30),
            'no endpoint /synthesize on this service: it answers POST /generate"',
        ),
    ]


def test_client_errors_are_4xx_with_a_reason_and_the_service_keeps_answering(
    served: dict[str, Served],
) -> None:
    vocoder, generator = served["vocoder"].server.url, served["generator"].server.url
    for what, response, reason in client_errors(vocoder, generator):
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
        assert reason in response.text, (what, response.text)
        assert isinstance(response.json(), dict) and "error" in response.json(), (
            what,
            response.text,
        )
    info = requests.post(vocoder + "/info", json={}, timeout=30)
    assert (info.status_code, info.headers.get("allow")) == (405, "GET"), info.headers
    assert requests.get(vocoder + "/info", timeout=30).json()["task"] == "vocoder"
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
        [*command, "--model-name", "wavefoundry-ljspeech-codec"],  # never registered here
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: no registered model 'wavefoundry-ljspeech-codec' (score a training run first: "
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


# --- faults: work bounded by the samples, nothing a client sends is a 5xx --------------------


def with_rate(data: bytes, rate: int) -> bytes:
    """A WAV whose header claims `rate` (and the matching byte rate), samples unchanged."""
    patched = bytearray(data)
    patched[24:28] = struct.pack("<I", rate)
    patched[28:32] = struct.pack("<I", min(rate * 2, 2**32 - 1))
    return bytes(patched)


class Watch:
    """The server's processes while a block runs: the largest resident memory of any one
    (the worker's) and the CPU seconds they all spent (not wall time: load does not add to it)."""

    def __init__(self, server: BentoServer) -> None:
        self.root = psutil.Process(server.pid)
        self.peak_rss = 0
        self._stop = threading.Event()

    def _tree(self) -> list[psutil.Process]:
        return [self.root, *self.root.children(recursive=True)]

    def _cpu(self) -> float:
        total = 0.0
        for process in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system
        return total

    def _sample(self) -> None:
        while not self._stop.is_set():
            for process in self._tree():
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak_rss = max(self.peak_rss, process.memory_info().rss)
            self._stop.wait(0.02)

    def __enter__(self) -> Watch:
        self._cpu_before = self._cpu()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.cpu_seconds = self._cpu() - self._cpu_before


def test_the_work_and_memory_of_a_request_are_bounded_by_its_samples_whatever_its_rate(
    served: dict[str, Served],
) -> None:
    """Before: an 844-byte WAV at 8,009 Hz took 13-16 s and gigabytes (a resampling kernel
    sized by the rates' gcd); one whose header claims 2,147,483,647 Hz took 92 s and 8.6 GB
    and answered 500. Now a rate in range resamples in time linear in the samples, one out of
    range is a 400, and a normal request sent alongside answers as usual."""
    entry = served["vocoder"]
    url = entry.server.url
    noise = np.random.default_rng(1).normal(0, 0.1, 22050).astype(np.float32)
    clip_8009 = wav_bytes(noise[:400], 8009)
    assert len(clip_8009) == 844
    claims_2g = with_rate(wav_bytes(noise[:1000], 16000), 2_147_483_647)
    assert len(claims_2g) < 2048
    plausible = [  # rates a client may well send: answered, at the model's rate
        ("8,009 Hz, 844 bytes", clip_8009, 400, 8009),
        ("7,919 Hz (prime), 1 s", wav_bytes(noise[:7919], 7919), 7919, 7919),
        ("44,101 Hz, 0.5 s", wav_bytes(noise[:22050], 44101), 22050, 44101),
        ("192,001 Hz, 0.1 s", wav_bytes(noise[:19200], 192001), 19200, 192001),
    ]
    absurd = [  # rates no audio has: refused, saying which rates are taken
        ("2,147,483,647 Hz, 2 KB", claims_2g),
        ("1 Hz", with_rate(wav_bytes(noise[:1000], 16000), 1)),
        ("1,000,001 Hz", with_rate(wav_bytes(noise[:1000], 16000), 1_000_001)),
    ]
    normal = wav_bytes(speech_like(0.5, 22050), 22050)
    post = functools.partial(requests.post, url + "/vocode", timeout=120)
    assert post(files={"audio": ("warm.wav", normal)}).status_code == 200

    with Watch(entry.server) as watch, ThreadPoolExecutor(max_workers=2) as pool:
        alongside = pool.submit(post, files={"audio": ("normal.wav", normal)})
        answers = {
            what: post(files={"audio": ("a.wav", data)}) for what, data, *_ in [*plausible, *absurd]
        }
        normal_answer = alongside.result()

    for what, _, frames, rate in plausible:
        response = answers[what]
        assert response.status_code == 200, (what, response.text)
        audio, served_rate = sf.read(io.BytesIO(response.content))
        assert served_rate == 22050 and len(audio) == resampled_length(frames, rate, 22050), what
    for what, _ in absurd:
        response = answers[what]
        assert response.status_code == 400, (what, response.status_code, response.text)
        assert "4000-384000 Hz" in response.text, (what, response.text)
    assert normal_answer.status_code == 200, normal_answer.text
    assert len(sf.read(io.BytesIO(normal_answer.content))[0]) == 11025
    assert watch.peak_rss < 2 * 2**30, f"a server process reached {watch.peak_rss / 2**30:.1f} GiB"
    # Generous: these eight requests take well under a CPU second; before, the first took 15.
    assert watch.cpu_seconds < 10, f"the server spent {watch.cpu_seconds:.1f} CPU seconds"


def test_nothing_a_client_sends_is_a_5xx_and_client_errors_are_logged_without_tracebacks(
    served: dict[str, Served],
) -> None:
    vocoder, generator = served["vocoder"], served["generator"]
    clip = wav_bytes(speech_like(0.5, 22050), 22050)
    vocode = functools.partial(requests.post, vocoder.server.url + "/vocode", timeout=60)
    generate = functools.partial(requests.post, generator.server.url + "/generate", timeout=60)
    garbage = np.random.default_rng(2).bytes(4096)
    multipart = "multipart/form-data; boundary="
    upload = "send a multipart/form-data upload with the file in field 'audio'"
    log_before = {key: served[key].server.log(None) for key in ("vocoder", "generator")}
    cases = [
        ("wrong field name", vocode(files={"file": ("a.wav", clip)}), "field 'file'", upload),
        (
            "empty boundary, garbage body",
            vocode(data=b"\x00garbage\xff--\r\n--\r\n", headers={"Content-Type": multipart}),
            "no boundary",
            upload,
        ),
        (
            "no boundary at all",
            vocode(data=b"garbage", headers={"Content-Type": "multipart/form-data"}),
            "no boundary",
            upload,
        ),
        (
            "a boundary the body never uses",
            vocode(data=b"\xff\xfe garbage " * 100, headers={"Content-Type": multipart + "xyz"}),
            "could not be parsed",
            upload,
        ),
        ("text where the file goes", vocode(files={"audio": (None, "hello")}), "text", upload),
        (
            "two files",
            vocode(files=[("audio", ("a.wav", clip)), ("audio", ("b.wav", clip))]),
            "2 files",
            "send one",
        ),
        (
            "the WAV as the raw body",
            vocode(data=clip, headers={"Content-Type": "audio/wav"}),
            "not audio/wav",
            upload,
        ),
        ("a form, not an upload", vocode(data={"audio": "a.wav"}), "urlencoded", upload),
        ("a URL to fetch", vocode(json={"audio": "http://127.0.0.1:9/a.wav"}), "json", upload),
        ("no body", vocode(), "no body", upload),
        ("garbage bytes", vocode(files={"audio": ("a.wav", garbage)}), "WAV, FLAC, Ogg", ""),
        ("a WAV cut inside its header", vocode(files={"audio": ("a.wav", clip[:30])}), "WAV", ""),
        (
            "a header and no samples",
            vocode(files={"audio": ("a.wav", clip[:44])}),
            "file holds 0",
            "",
        ),
        (
            "a header saying no samples",
            vocode(files={"audio": ("a.wav", wav_bytes(np.zeros(0, np.float32), 22050))}),
            "no samples",
            "",
        ),
        (
            "an upload to /generate",
            generate(files={"pitch": ("p.bin", b"\xff\xfe\x00")}),
            "takes JSON",
            "known: pitch",
        ),
        (
            "bytes that are not JSON",
            generate(data=b"\xff\xfe\x00", headers={"Content-Type": "application/json"}),
            "Invalid JSON",
            "",
        ),
        ("a JSON list", generate(json=[1, 2]), "object", ""),
        # Past Python's recursion limit, BentoML's parser failed it with a 500 after 2 minutes.
        (
            "JSON nested 100,000 deep",
            generate(
                data=b'{"pitch": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
                headers={"Content-Type": "application/json"},
            ),
            "nested too deeply",
            "known: pitch",
        ),
    ]
    for what, response, *reasons in cases:
        assert 400 <= response.status_code < 500, (what, response.status_code, response.text)
        for reason in reasons:
            assert reason in response.text, (what, response.text)
    # A WAV cut after some of its samples is refused, as ingest quarantines one: it was read as
    # the samples present (libsndfile's way), a shorter answer than the client asked for.
    cut = vocode(files={"audio": ("a.wav", clip[:1000])})
    assert cut.status_code == 400 and "truncated" in cut.json()["error"], cut.text
    # A WAV written to a pipe, with a placeholder data size, is whole: read to its end.
    data = clip.index(b"data") + 4
    piped = clip[:data] + struct.pack("<I", 0xFFFFFFFF) + clip[data + 4 :]
    streamed = vocode(files={"audio": ("a.wav", piped)})
    assert streamed.status_code == 200, streamed.text
    assert len(sf.read(io.BytesIO(streamed.content))[0]) == (len(clip) - data - 4) // 2

    for key, before in log_before.items():
        logged = served[key].server.log(None)[len(before) :]
        assert "Traceback" not in logged, logged[-3000:]
        assert "client error on" in logged and "[ERROR]" not in logged, logged[-3000:]
    assert requests.post(generator.server.url + "/generate", json={}, timeout=60).ok
