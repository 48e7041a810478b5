"""Containers for real, with podman: the component image built from a clean clone, the pipeline
run with every task in it (against the subprocess runner on the same data), and the champion's
Bento containerized and answering HTTP. Needs podman, runc and mmdebstrap (.ci/run installs
them); without them the whole module is skipped with one line saying why."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
import yaml
from servers import wavefoundry

from wavefoundry import containers
from wavefoundry.config import DEMO_FAMILIES
from wavefoundry.pipeline.local_run import task_outputs

REPO = Path(__file__).resolve().parents[2]
MODEL = "wavefoundry-ljspeech-vocoder"

_missing = containers.podman_missing()
if _missing:
    pytest.skip(f"container tests need podman: {_missing}", allow_module_level=True)

# A pipeline run takes minutes, many more on a loaded machine: generous limits, no timing.
pytestmark = [pytest.mark.container, pytest.mark.slow, pytest.mark.timeout(5400)]


def podman(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["podman", *args], env=containers.env(), capture_output=True, text=True, timeout=timeout
    )


def small_params() -> dict:
    """params.yaml, shrunk so a run takes a few minutes on two cores; the floor off, so a
    4-step vocoder becomes the champion whose Bento is containerized (the floor: test_registry)."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sample_data"].update(ljspeech_clips=20)
    params["promotion"]["floor"] = "off"
    params["datasets"]["ljspeech"]["split"] = {
        "by": "hash", "valid_fraction": 0.2, "test_fraction": 0.2,
    }  # fmt: skip
    params["evaluation"].update(clips=2, max_seconds=0.25, audio_examples=1)
    return params


def tiny_recipe() -> dict:
    """configs/tiny.yaml (the recipe params.yaml names), every family a few steps long."""
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    tiny["training"].update(steps=4, checkpoint_every=4, validate_every=4, log_every=2)
    tiny["training"].pop("per_family", None)
    return tiny


def run_folder(done: subprocess.CompletedProcess) -> Path:
    """The run's folder (`runs/<job name>`), from the `run record: .../run.json` line."""
    line = next(line for line in done.stdout.splitlines() if line.startswith("run record: "))
    return Path(line.removeprefix("run record: ").split(";")[0]).parent


def run_record(done: subprocess.CompletedProcess) -> dict:
    return json.loads((run_folder(done) / "run.json").read_text())


def outcome(done: subprocess.CompletedProcess) -> dict:
    """What the exit handler recorded: the state, each candidate's verdict and metrics, the
    champions (pipeline/summary.json in MLflow)."""
    return task_outputs(run_folder(done), "record-outcome")["summary"]


def states(record: dict) -> dict[str, str]:
    return {t["path"]: t["state"] for t in record["tasks"]}


def new_project(root: Path) -> tuple[Path, dict[str, str]]:
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(), sort_keys=False))
    (root / "configs").mkdir()
    (root / "configs" / "tiny.yaml").write_text(yaml.safe_dump(tiny_recipe(), sort_keys=False))
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "PYTHONUNBUFFERED": "1"}
    env.pop("DOCKER_HOST", None)  # the command starts podman's API itself
    return root, env


def champion(root: Path) -> tuple[str, dict[str, float], object]:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{root / '.wavefoundry' / 'mlflow.db'}")
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(version.run_id)
    metrics = {k: v for k, v in run.data.metrics.items() if k.startswith("eval/")}
    return version.tags["family"], metrics, version


# --- the image ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The component image built from a clean clone of this checkout's last commit, as CI
    builds it; then built again unchanged. Returns the image and the second build's output."""
    clone = tmp_path_factory.mktemp("clone") / "wavefoundry"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    containers.build_image(containers.IMAGE, context=clone)
    again = subprocess.run(
        [sys.executable, "-m", "wavefoundry.cli", "image", "build", "--context", str(clone)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    return containers.IMAGE, again.stdout


def test_the_image_runs_the_cli_as_a_non_root_user_with_the_stack(image):
    name, _ = image
    helped = podman("run", "--rm", name)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: wavefoundry")
    user = podman("run", "--rm", name, "id", "-u")
    assert user.stdout.strip() not in ("", "0")
    imported = podman(
        "run", "--rm", name, "python", "-c",
        "import wavefoundry, torch, torchaudio, mlflow, kfp; print(torch.__version__)",
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip().startswith("2.11.0")


def test_a_rebuild_with_nothing_changed_reuses_every_layer(image):
    _, output = image
    steps = [line for line in output.splitlines() if line.startswith("STEP ")]
    reused = [line for line in output.splitlines() if line.startswith("--> Using cache")]
    # Every step but FROM says so.
    assert steps and len(reused) == len(steps) - 1, output[-3000:]


# --- the pipeline in containers -------------------------------------------------------------


@pytest.fixture(scope="module")
def runs(image, tmp_path_factory):
    """The pipeline on the same data and seed twice: every task in this environment, then
    every task in the image."""
    base = tmp_path_factory.mktemp("pipeline")
    done = {}
    for runner in ("subprocess", "container"):
        root, env = new_project(base / runner)
        started = time.perf_counter()
        result = wavefoundry(root, "pipeline", "run", "--runner", runner, env=env)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        done[runner] = (root, env, result, time.perf_counter() - started)
    return done


def test_the_container_runner_reaches_the_same_outcome_and_scores(runs):
    """The same decisions (each candidate's verdict, the champion) and the same held-out
    scores to 1e-4 per candidate; rtf and rtf_wall are seconds of compute, this machine's load."""
    here, there = (outcome(runs[r][2]) for r in ("subprocess", "container"))
    assert there["state"] == here["state"] == "SUCCEEDED"

    def by_family(facts: dict) -> dict[str, dict]:
        return {c["family"]: c for c in facts["candidates"]}

    here_candidates, there_candidates = by_family(here), by_family(there)
    assert sorted(here_candidates) == sorted(there_candidates) == sorted(DEMO_FAMILIES)
    for family, ours in here_candidates.items():
        theirs = there_candidates[family]
        assert theirs["verdict"] == ours["verdict"], family
        assert theirs["metrics"].keys() == ours["metrics"].keys(), family
        for key, value in ours["metrics"].items():
            if key in ("rtf", "rtf_wall") or value is None:
                assert (theirs["metrics"][key] is None) == (value is None), (family, key)
                continue
            assert theirs["metrics"][key] == pytest.approx(value, rel=1e-4, abs=1e-4), (family, key)
    assert [(c["family"], c["version"]) for c in there["champions"]] == [
        (c["family"], c["version"]) for c in here["champions"]
    ]
    here_family, here_metrics, _ = champion(runs["subprocess"][0])
    there_family, _, _ = champion(runs["container"][0])
    assert there_family == here_family
    assert here_metrics  # the champion was scored, its scores compared above
    records = [run_record(runs[r][2]) for r in ("subprocess", "container")]
    assert states(records[1]) == states(records[0])  # the same tasks, recorded the same way
    assert set(states(records[1]).values()) == {"SUCCEEDED"}


def test_every_task_of_the_container_run_ran_in_the_image(runs):
    record = run_record(runs["container"][2])
    host = socket.gethostname()
    for task in record["tasks"]:
        first = next(
            line for line in Path(task["log"]).read_text().splitlines() if "container " in line
        )
        # `container HOSTNAME: Debian GNU/Linux 12 (bookworm), uid N`, written inside it
        hostname = first.split("container ", 1)[1].split(":", 1)[0]
        assert hostname and hostname != host, (task["path"], first)
    here = run_record(runs["subprocess"][2])
    assert not any("container " in Path(t["log"]).read_text() for t in here["tasks"])


def test_a_failing_component_fails_the_same_way_in_both_runners(image, tmp_path):
    """A source folder with no clips: ingest raises; both runners end FAILED at ingest with
    the same error line and exit code, and the exit handler still records the outcome."""
    seen = {}
    for runner in ("subprocess", "container"):
        root, env = new_project(tmp_path / runner)
        (root / "empty").mkdir()
        done = wavefoundry(
            root, "pipeline", "run", "--runner", runner, "--source", "empty", env=env
        )
        record = run_record(done)
        failed = [path for path, state in states(record).items() if state == "FAILED"]
        error = record["error"].replace(str(root), "PROJECT")
        seen[runner] = (done.returncode, record["state"], failed, error)
        assert "pipeline failed" in done.stderr and "Traceback" not in done.stderr[-500:]
    assert seen["container"] == seen["subprocess"], seen
    code, state, failed, error = seen["container"]
    assert code == 1 and state == "FAILED"
    assert len(failed) == 1 and error.startswith(failed[0].rsplit("/", 1)[-1] + ": "), seen


# --- the Bento as a container ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_containerized_bento_answers_info_and_vocode_like_the_library(runs, tmp_path):
    import mlflow
    import torch

    from wavefoundry.audio import resample, write_wav
    from wavefoundry.tracking import load_logged_model

    root, env, _, _ = runs["container"]
    _, _, version = champion(root)
    bento = version.tags["bento_tag"]
    built = wavefoundry(root, "bento", "containerize", bento, env=env)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    image_name = built.stdout.strip().splitlines()[-1]
    port = free_port()
    started = podman(
        "run", "--detach", "--rm", "--publish", f"127.0.0.1:{port}:3000", image_name
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    container = started.stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, podman("logs", container).stdout[-3000:]
            time.sleep(1)
        info = requests.get(f"{url}/info", timeout=30).json()
        assert (info["registered_model"], info["version"]) == (MODEL, str(version.version))

        t = np.arange(22050) / 22050
        clip = (0.3 * np.sin(2 * np.pi * 180 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(
            np.float32
        )
        upload = io.BytesIO()
        sf.write(upload, clip, 44100, format="WAV", subtype="PCM_16")
        answer = requests.post(
            f"{url}/vocode", files={"audio": ("a.wav", upload.getvalue())}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        served, rate = sf.read(io.BytesIO(answer.content), dtype="int16")
        assert rate == 22050
        mlflow.set_tracking_uri(f"sqlite:///{root / '.wavefoundry' / 'mlflow.db'}")
        family, net = load_logged_model(f"models:/{MODEL}/{version.version}")
        sent = sf.read(io.BytesIO(upload.getvalue()), dtype="float32")[0]
        with torch.no_grad():
            direct = family.synthesize(net, torch.from_numpy(resample(sent, 44100, 22050)), {})
        expected, _ = sf.read(write_wav(tmp_path / "d.wav", direct.numpy(), 22050), dtype="int16")
        assert served.shape == expected.shape
        assert np.array_equal(served, expected)  # the same network, the same samples
    finally:
        podman("stop", "--time", "5", container)
