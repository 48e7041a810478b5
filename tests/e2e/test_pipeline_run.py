"""The main job end to end, as a user runs it: `wavefoundry pipeline run` in a project folder
of its own (the compiled Kubeflow pipeline through kfp.local, MLflow in a SQLite file, the
sample corpus), ending with a vocoder champion, a TTS champion and the voice Bento that speaks
with both; then a second run on unchanged data, a run whose data fails validation, the Bentos
it built answering HTTP, and `dvc repro` on a fresh clone reaching the same champions."""

import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
import yaml
from servers import BentoServer, serve_and_try_it, wavefoundry

from wavefoundry.config import DEMO_FAMILIES
from wavefoundry.families.registry import get_family
from wavefoundry.tracking import registered_model_name

REPO = Path(__file__).resolve().parents[2]
FAMILIES = DEMO_FAMILIES
MODEL = registered_model_name("ljspeech", "vocoder")
VOICE = registered_model_name("ljspeech", "acoustic")  # wavefoundry-ljspeech-tts

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def small_params() -> dict:
    """params.yaml, shrunk so a run takes a minute on two cores."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sample_data"].update(ljspeech_clips=20, vctk_speakers=3, vctk_clips_per_speaker=3)
    params["sample_data"].update(
        nsynth_instruments_per_split={"train": 2, "valid": 1, "test": 1},
        nsynth_notes_per_instrument=2,
    )
    params["datasets"]["ljspeech"]["split"] = {
        "by": "hash", "valid_fraction": 0.2, "test_fraction": 0.2,
    }  # fmt: skip
    params["evaluation"].update(clips=2, max_seconds=0.25, audio_examples=1)
    # 4 training steps cannot beat Griffin-Lim: the plumbing is under test here, not the floor.
    params["promotion"]["floor"] = "off"
    return params


def small_project(root: Path) -> None:
    """params.yaml and its tiny recipe, shrunk so a run takes a minute on two cores."""
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(), sort_keys=False))
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    tiny["training"].update(steps=4, checkpoint_every=4, validate_every=4, log_every=2)
    tiny["training"].pop("per_family", None)  # every family this short
    # A 4-step Tacotron 2 never fires its stop token: each held-out sentence (and the voice
    # Bento's sentence) is spoken to max_decoder_steps. 30 steps x 5 frames is 1.7 s of speech,
    # a sentence's length, instead of the recipe's 17 s.
    tiny["models"]["tacotron2"]["max_decoder_steps"] = 30
    (root / "configs").mkdir(exist_ok=True)
    (root / "configs" / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))


def run_record(done: subprocess.CompletedProcess) -> dict:
    line = next(line for line in done.stdout.splitlines() if line.startswith("run record: "))
    return json.loads(Path(line.removeprefix("run record: ").split(";")[0]).read_text())


def states(record: dict) -> dict[str, str]:
    return {t["path"]: t["state"] for t in record["tasks"]}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    small_project(root)
    env = {**os.environ, "BENTOML_HOME": str(root / "bentoml"), "PYTHONUNBUFFERED": "1"}
    first = wavefoundry(root, "pipeline", "run", env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    return root, env, first


def mlflow_client(root: Path):
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{root / '.wavefoundry' / 'mlflow.db'}")


# What each task's candidates are scored by (evaluation/metrics.py), beside the real-time factor.
SCORES = {"vocoder": {"eval/mel_l1", "eval/mrstft"}, "acoustic": {"eval/mcd_dtw"}}


def test_a_run_trains_every_family_scores_promotes_and_builds_the_bentos(project):
    root, _, done = project
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("wavefoundry")
    runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'")
    trained = [r for r in runs if r.data.tags.get("family") in FAMILIES]
    assert sorted(r.data.tags["family"] for r in trained) == sorted(FAMILIES)  # one run each
    for run in trained:
        task = get_family(run.data.tags["family"]).task
        assert SCORES[task] | {"eval/rtf"} <= run.data.metrics.keys(), run.data.tags["family"]
        assert run.data.tags["wavefoundry.pipeline.status"] == "SUCCEEDED"
    # A vocoder champion and a TTS champion, each with its Bento and the command to serve it.
    champions = {
        name: client.get_model_version_by_alias(name, "champion") for name in (MODEL, VOICE)
    }
    for name, champion in champions.items():
        assert champion.run_id in {r.info.run_id for r in trained}
        family = champion.tags["family"]
        assert f"champion: {name} v{champion.version} ({family}, run {champion.run_id})" in (
            done.stdout
        )
        assert f"Bento {champion.tags['bento_tag']}" in done.stdout
        assert f"bentoml serve {champion.tags['bento_tag']}" in done.stdout
    assert champions[VOICE].tags["family"] == "tacotron2"
    assert "uv run mlflow ui --backend-store-uri sqlite:///" in done.stdout
    # The run ends with a curl that speaks a sentence through the voice Bento.
    _, try_it = serve_and_try_it(done.stdout, VOICE)
    assert "/synthesize -H 'Content-Type: application/json' -d '{\"text\": " in try_it, try_it
    # The exit handler's record of the run: an MLflow run with the state and the summary.
    [outcome] = [r for r in runs if r.info.run_name.startswith("pipeline wavefoundry-training-")]
    assert outcome.data.tags["wavefoundry.pipeline.status"] == "SUCCEEDED"
    summary = json.loads(
        Path(client.download_artifacts(outcome.info.run_id, "pipeline/summary.json")).read_text()
    )
    assert {(c["registered_model"], c["version"]) for c in summary["champions"]} == {
        (name, str(champion.version)) for name, champion in champions.items()
    }
    record = run_record(done)
    assert record["state"] == "SUCCEEDED"
    assert set(states(record).values()) == {"SUCCEEDED"}
    # Each training task's progress (step, loss, time left), without --verbose.
    for family in FAMILIES:
        assert f"train [{family}]: step 4/4  " in done.stdout
        assert " s left" in done.stdout


def test_the_vocoder_bento_it_built_answers_the_curl_it_printed(project):
    """The run's vocoder curl sends a recording the user has (a clip of the run's own corpus,
    named from the folder the run was started in), and the Bento it built resynthesizes it."""
    root, _, done = project
    champion = mlflow_client(root).get_model_version_by_alias(MODEL, "champion")
    _, try_it = serve_and_try_it(done.stdout, MODEL)
    clip = root / try_it.split("-F audio=@", 1)[1].split(" ", 1)[0]
    assert clip.is_file(), try_it
    server = BentoServer(champion.tags["bento_tag"], root / "bentoml")
    try:
        info = requests.get(f"{server.url}/info", timeout=30).json()
        assert (info["registered_model"], info["version"]) == (MODEL, str(champion.version))
        answer = requests.post(
            f"{server.url}/vocode", files={"audio": (clip.name, clip.read_bytes())}, timeout=120
        )
        assert answer.status_code == 200, answer.text
        audio, rate = sf.read(io.BytesIO(answer.content))
        assert rate == 22050 and len(audio) == sf.info(clip).frames
    finally:
        server.stop()


def test_the_voice_bento_it_built_speaks_with_both_champions(project):
    """The voice Bento the run built: the TTS champion and the vocoder champion of the same
    run, both named in /info, the voice scored through that vocoder, and a sentence spoken as
    16-bit WAV at LJ Speech's rate."""
    root, _, done = project
    client = mlflow_client(root)
    voice = client.get_model_version_by_alias(VOICE, "champion")
    vocoder = client.get_model_version_by_alias(MODEL, "champion")
    server = BentoServer(voice.tags["bento_tag"], root / "bentoml")
    try:
        info = requests.get(f"{server.url}/info", timeout=30).json()
        assert (info["registered_model"], info["version"]) == (VOICE, str(voice.version))
        assert (info["vocoder"]["registered_model"], info["vocoder"]["version"]) == (
            MODEL,
            str(vocoder.version),
        )
        # Scored as it is served: promotion voiced it again with the vocoder it decided.
        assert voice.tags["eval_vocoder"] == f"{MODEL}/{vocoder.version}"
        again = f"{VOICE} v{voice.version} (tacotron2): scored again, its sentences voiced by "
        assert again + f"{MODEL}/{vocoder.version}" in done.stdout
        answer = requests.post(
            f"{server.url}/synthesize",
            json={"text": "The quick brown fox jumps over the lazy dog."},
            timeout=300,
        )
        assert answer.status_code == 200, answer.text
        audio, rate = sf.read(io.BytesIO(answer.content), dtype="int16")
        wav = sf.info(io.BytesIO(answer.content))
        assert (wav.format, wav.subtype, rate) == ("WAV", "PCM_16", 22050)
        assert len(audio) / rate > 0.5  # speech, not a click: 30 decoder steps give 1.7 s
        assert np.abs(audio).max() > 0
    finally:
        server.stop()


def test_a_second_run_on_unchanged_data_reuses_ingest_and_validate(project):
    root, env, _ = project
    done = wavefoundry(root, "pipeline", "run", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = states(run_record(done))
    assert seen["resolve-data-revision"] == "SUCCEEDED"  # it looks every time
    assert seen["ingest"] == seen["validate"] == "CACHED"
    # Same data version, same settings: the trainings are reused too.
    trainings = [seen[f"for-loop-2-iteration-{i}/train"] for i in range(len(FAMILIES))]
    assert trainings == ["CACHED"] * len(FAMILIES)
    assert seen["promote"] == seen["build-bento"] == "SUCCEEDED"
    for family in FAMILIES:
        assert f"= train [{family}] cached (made by wavefoundry-training-" in done.stdout
    # Its cached evaluation holds the first scores; the voice is not said to be scored again.
    assert "scored again" not in done.stdout


def test_a_run_whose_validation_fails_stops_before_training(project):
    root, env, _ = project
    done = wavefoundry(
        root, "pipeline", "run", "--set", "validation.ljspeech.sample_rate=16000", env=env
    )
    assert done.returncode == 1
    assert "validation of ljspeech failed, so nothing was trained" in done.stderr
    assert "sample rate 16000 Hz: 20 of 20 clips unexpected" in done.stderr
    quarantine = Path(done.stderr.split("Quarantined clips are listed in ")[1].split(";")[0])
    assert quarantine.name == "quarantine.csv" and len(quarantine.read_text().splitlines()) == 21
    assert "Traceback" not in done.stderr
    record = run_record(done)
    seen = states(record)
    assert seen["validate"] == "FAILED"
    assert seen["for-loop-2"] == seen["promote"] == "SKIPPED"
    assert not any("train" in path for path in seen)
    assert seen["record-outcome"] == "SUCCEEDED"
    # The exit handler recorded the failure in MLflow.
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("wavefoundry")
    [outcome] = client.search_runs(
        [experiment.experiment_id], f"attributes.run_name = 'pipeline {record['job_name']}'"
    )
    assert outcome.data.tags["wavefoundry.pipeline.status"] == "FAILED"
    assert "validation of ljspeech failed" in outcome.data.tags["wavefoundry.pipeline.error"]


def test_dvc_repro_on_a_fresh_clone_reaches_the_same_champion(project, tmp_path):
    root, env, _ = project
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    clone = tmp_path / "clone"
    for name in files:
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    small_project(clone)
    path = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    dvc_env = {**env, "PATH": path, "BENTOML_HOME": str(tmp_path / "bentoml")}
    for command in (["git", "init", "-q"], ["dvc", "repro"]):
        done = subprocess.run(command, cwd=clone, env=dvc_env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    promotion = json.loads((clone / "runs" / "promotion.json").read_text())
    assert sorted(promotion["registered_models"]) == sorted([MODEL, VOICE])
    bento_tags = []
    for name in (MODEL, VOICE):
        by_dvc = mlflow_client(clone).get_model_version_by_alias(name, "champion")
        by_pipeline = mlflow_client(root).get_model_version_by_alias(name, "champion")
        assert by_dvc.tags["family"] == by_pipeline.tags["family"], name
        assert by_dvc.tags["data_version"] == by_pipeline.tags["data_version"], name
        assert by_dvc.tags["config_hash"] == by_pipeline.tags["config_hash"], name
        for key, value in by_pipeline.tags.items():
            if key.startswith("eval.") and key not in ("eval.rtf", "eval.rtf_wall"):  # timings
                assert float(by_dvc.tags[key]) == pytest.approx(float(value), rel=1e-4, abs=1e-6), (
                    name,
                    key,
                )
        bento_tags.append(by_dvc.tags["bento_tag"])
    bento = json.loads((clone / "runs" / "bento.json").read_text())
    assert sorted(bento["tags"]) == sorted(bento_tags)
    with sqlite3.connect(clone / ".wavefoundry" / "mlflow.db") as db:
        families = sorted(
            row[0] for row in db.execute("select value from tags where key = 'family'")
        )
    assert families == sorted(FAMILIES)
