"""A voice as a Bento: a TTS champion and the vocoder champion of its dataset, built by the
CLI from a real `mlflow server` registry, served by `bentoml serve`, asked over HTTP."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
import soundfile as sf
from servers import BentoServer, MlflowServer

from wavefoundry.config import load_config
from wavefoundry.stages import evaluate, promote
from wavefoundry.tracking import load_logged_model
from wavefoundry.training.trainer import train

REPO = Path(__file__).resolve().parents[2]
SENTENCE = "The printing press was examined by the keeper."

pytestmark = pytest.mark.slow


def champion(cfg, model: str, dataset: str, steps: int) -> tuple[str, str, str]:
    cfg.training.steps = steps
    result = train(cfg, model, dataset)
    candidate = evaluate(cfg, run_id=result.run_id).candidate
    assert promote(cfg, candidate.name, candidate.version).decision.passed
    return candidate.name, candidate.version, candidate.model_uri


@pytest.fixture(scope="module")
def voice(stored_samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("voice")
    mlflow = MlflowServer(root / "mlflow")
    overrides = [
        "promotion.floor=off",  # tiny vocoders do not beat Griffin-Lim; the floor: test_registry
        f"paths.data={stored_samples}",
        f"paths.runs={root / 'runs'}",
        f"tracking.uri={mlflow.url}",
        "tracking.experiment=test-voice",
        "training.validate_every=1000",
        "training.per_family=null",  # each model as long as champion() says
        "evaluation.clips=1",
        "promotion.max_real_time_factor=50",
        "models.tacotron2.max_decoder_steps=30",
        # A 4-step model's stop token fires at random; this high a threshold lets it speak
        # to the step limit, a sentence's length (30 steps x 5 frames = 1.7 s).
        "models.tacotron2.gate_threshold=0.999",
        "serving.max_text_chars=300",
        "serving.max_sentence_chars=60",
    ]
    cfg = load_config(REPO / "params.yaml", overrides=overrides)
    server = None
    try:
        vocoder = champion(cfg, "hifigan", "ljspeech", 4)
        acoustic = champion(cfg, "tacotron2", "ljspeech", 4)
        assert acoustic[0] == "wavefoundry-ljspeech-tts"
        command = [sys.executable, "-m", "wavefoundry.cli", "bento", "build"]
        command += ["--params", str(REPO / "params.yaml"), "--model-name", acoustic[0]]
        for override in overrides:
            command += ["--set", override]
        env = {**os.environ, "BENTOML_HOME": str(root / "bentoml")}
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, done.stderr
        tag = done.stdout.strip().splitlines()[-1]
        server = BentoServer(tag, root / "bentoml", start_timeout=300)
        yield {"server": server, "vocoder": vocoder, "acoustic": acoustic, "cfg": cfg}
    finally:
        if server is not None:
            server.stop()
        mlflow.stop()


def test_the_voice_speaks_what_the_library_says(voice: dict) -> None:
    url = voice["server"].url
    info = requests.get(url + "/info", timeout=30).json()
    name, version, acoustic_uri = voice["acoustic"]
    assert (info["registered_model"], info["version"], info["family"]) == (
        name,
        version,
        "tacotron2",
    )
    assert (
        info["vocoder"]["registered_model"] == voice["vocoder"][0] == "wavefoundry-ljspeech-vocoder"
    )
    assert info["vocoder"]["version"] == voice["vocoder"][1]
    assert "mcd_dtw" in info["metrics"]

    response = requests.post(url + "/synthesize", json={"text": SENTENCE}, timeout=300)
    assert response.status_code == 200, response.text
    served, rate = sf.read(io.BytesIO(response.content), dtype="int16")
    assert rate == 22050 and sf.info(io.BytesIO(response.content)).subtype == "PCM_16"
    assert 1.0 < len(served) / rate < 30  # speech length: at most 30 decoder steps x 5 frames

    family, net = load_logged_model(acoustic_uri)
    vocoder_family, vocoder = load_logged_model(voice["vocoder"][2])
    speech = family.speak(
        net, SENTENCE, None, lambda mel: vocoder_family.vocode_mel(vocoder, mel), 60
    )
    library = np.clip(speech.numpy(), -1.0, 1.0)
    buffer = io.BytesIO()
    sf.write(buffer, library, 22050, subtype="PCM_16", format="WAV")
    expected, _ = sf.read(io.BytesIO(buffer.getvalue()), dtype="int16")
    assert len(served) == len(expected)
    assert np.array_equal(served, expected)


def test_validation_audio_is_voiced_by_the_vocoder_champion(voice: dict) -> None:
    """The Tacotron 2 run trained after the HiFi-GAN champion was promoted: its validation
    samples went through that champion, and the run says which."""
    import mlflow

    client = mlflow.MlflowClient(voice["cfg"].tracking.uri)
    name, version, _ = voice["acoustic"]
    run_id = client.get_model_version(name, version).run_id
    tags = client.get_run(run_id).data.tags
    vocoder_name, vocoder_version, _ = voice["vocoder"]
    assert tags["validation_vocoder"] == f"{vocoder_name}/{vocoder_version}"
    # Its score says what voiced the held-out sentences, on the run and on the version.
    assert tags["eval_vocoder"] == f"{vocoder_name}/{vocoder_version}"
    assert client.get_model_version(name, version).tags["eval_vocoder"] == tags["eval_vocoder"]
    samples = [a.path for a in client.list_artifacts(run_id, "samples")]
    assert samples, "no validation samples logged"
    logged = [a.path for a in client.list_artifacts(run_id, samples[-1])]
    assert any(path.endswith("0-generated.wav") for path in logged), logged


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"text": ""}, "nothing speakable"),
        ({"text": "   "}, "nothing speakable"),
        ({"text": "?!... --"}, "nothing speakable"),
        ({"text": "x" * 301}, "at most 300"),
        ({"text": "hello\x07 there"}, "control characters"),
        ({"text": "hello there", "speaker": "p999"}, "unknown speaker"),
        # The field and its fault, not "1 validation error for Input".
        ({"speaker": "p225"}, "text: Field required"),
        ({"text": 42}, "text: Input should be a valid string"),
        # A misspelt field is refused, not dropped (the voice would speak with its default),
        # and the fields it takes are named.
        ({"txt": "hello"}, "unexpected field 'txt': send the parameters as a JSON object"),
        ({"text": "hello there", "speakr": "p225"}, "unexpected field 'speakr'"),
    ],
)
def test_bad_text_is_a_4xx_with_the_reason_and_the_voice_keeps_speaking(
    voice: dict, body: dict, reason: str
) -> None:
    url = voice["server"].url
    response = requests.post(url + "/synthesize", json=body, timeout=60)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    # One shape for every client error, whichever layer refused the request, with the reason.
    assert isinstance(response.json(), dict) and "error" in response.json(), response.text
    assert reason in response.json()["error"], response.text
    good = requests.post(url + "/synthesize", json={"text": "Good morning."}, timeout=300)
    assert good.status_code == 200, good.text


def test_characters_without_a_symbol_are_dropped_and_named(voice: dict) -> None:
    url = voice["server"].url
    response = requests.post(url + "/synthesize", json={"text": "Good [morning] #1."}, timeout=300)
    assert response.status_code == 200, response.text
    assert response.headers["X-Dropped-Characters"] == "#[]"
    # A symbol ASCII folding cannot spell is named too, escaped (a header is Latin-1 at most).
    snowman = requests.post(url + "/synthesize", json={"text": "Good \u2603 morning."}, timeout=300)
    assert snowman.status_code == 200, snowman.text
    assert snowman.headers["X-Dropped-Characters"] == "\\u2603"
    clean = requests.post(url + "/synthesize", json={"text": "Good morning."}, timeout=300)
    assert "X-Dropped-Characters" not in clean.headers


def test_a_post_to_an_endpoint_the_voice_has_not_says_what_it_has(voice: dict) -> None:
    url = voice["server"].url
    response = requests.post(url + "/vocode", files={"audio": ("a.wav", b"RIFF")}, timeout=60)
    assert response.status_code == 404, response.text
    assert "no endpoint /vocode" in response.json()["error"]
    assert "POST /synthesize" in response.json()["error"], response.text
    # A GET where a POST goes: 405 in the same shape, saying what to send.
    got = requests.get(url + "/synthesize", timeout=60)
    assert got.status_code == 405 and got.headers["Allow"] == "POST", got.text
    assert "/synthesize takes POST, not GET" in got.json()["error"]


def test_long_text_is_spoken_sentence_by_sentence(voice: dict) -> None:
    url = voice["server"].url
    one = requests.post(url + "/synthesize", json={"text": SENTENCE}, timeout=300)
    two = requests.post(url + "/synthesize", json={"text": f"{SENTENCE} {SENTENCE}"}, timeout=300)
    assert one.status_code == two.status_code == 200
    a, _ = sf.read(io.BytesIO(one.content), dtype="int16")
    b, _ = sf.read(io.BytesIO(two.content), dtype="int16")
    # Piece 0 is spoken exactly as the single sentence; piece 1 follows it.
    assert len(b) > len(a) and np.array_equal(b[: len(a)], a)


def test_promotion_scores_a_voice_again_with_the_vocoder_champion_it_just_decided(
    voice: dict,
) -> None:
    """A pipeline scores its voice before it promotes the vocoder trained beside it (no
    champion yet: Griffin-Lim). Promoting the run's candidates decides the vocoder first and
    scores the voice again through it, so the voice is judged as it will be served."""
    import mlflow

    from wavefoundry.registry import candidates
    from wavefoundry.stages import promote_best

    # Under an alias of its own, no vocoder champion exists yet: a first run.
    cfg = voice["cfg"].model_copy(deep=True)
    cfg.promotion.alias = "first-run"
    cfg.training.steps = 4
    scored = evaluate(cfg, run_id=train(cfg, "tacotron2", "ljspeech").run_id)
    assert scored.score.vocoder == "griffin-lim"
    vocoder_name, vocoder_version, _ = voice["vocoder"]
    before = scored.candidate.metrics

    # Voice first in the list, as a pipeline may hand them: the order does not decide.
    contests = promote_best(
        cfg, [(scored.candidate.name, scored.candidate.version), (vocoder_name, vocoder_version)]
    )
    assert [c.name for c in contests] == [vocoder_name, scored.candidate.name]
    assert all(c.promoted for c in contests), [c.verdict for c in contests]
    assert [c.revoiced for c in contests] == [False, True]  # what the pipeline's log says
    client = mlflow.MlflowClient(cfg.tracking.uri)
    after = candidates.find(client, scored.candidate.name, scored.candidate.version)
    voiced_by = f"{vocoder_name}/{vocoder_version}"
    assert after.tags["eval_vocoder"] == voiced_by
    assert client.get_run(after.run_id).data.tags["eval_vocoder"] == voiced_by
    assert after.fingerprint != scored.candidate.fingerprint
    assert after.metrics["mcd_dtw"] != before["mcd_dtw"]

    # The same candidates again (a pipeline rerun from its cache): nothing is scored again.
    again = promote_best(
        cfg, [(scored.candidate.name, scored.candidate.version), (vocoder_name, vocoder_version)]
    )
    assert [(c.verdict, c.revoiced) for c in again] == [("already champion", False)] * 2
    unchanged = candidates.find(client, scored.candidate.name, scored.candidate.version)
    assert unchanged.metrics == after.metrics


def test_a_body_that_is_not_json_is_a_4xx_that_says_so(voice: dict) -> None:
    response = requests.post(
        voice["server"].url + "/synthesize",
        data=b"not json",
        headers={"Content-Type": "application/json"},
        timeout=60,
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert "JSON" in response.json()["error"], response.text
