"""`make demo`'s run at its own settings (params.yaml, configs/tiny.yaml), in a scratch project,
once for two tests: the champion it promotes beats Griffin-Lim from the same mel on the floor's
metrics, on the same held-out clips, and its audio examples are in MLflow; the tiny Tacotron 2
becomes the voice champion, aligned on every held-out sentence (the issue's acceptance for the
voice), and the run ends with the curl that speaks a sentence through its Bento.

20-40 minutes on 2 cores, by the CPU (mostly Vocos's 4,000 steps; then Tacotron 2's), so it
runs apart: `make test-demo` (.ci/run runs it after `make test`)."""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
import yaml
from servers import serve_and_try_it, wavefoundry

from wavefoundry import tracking
from wavefoundry.evaluation.baseline import NAME as BASELINE
from wavefoundry.evaluation.baseline import find_baseline
from wavefoundry.evaluation.metrics import METRICS
from wavefoundry.tracking import registered_model_name

if TYPE_CHECKING:
    import mlflow

REPO = Path(__file__).resolve().parents[2]
MODEL = registered_model_name("ljspeech", "vocoder")
VOICE = registered_model_name("ljspeech", "acoustic")  # wavefoundry-ljspeech-tts

pytestmark = [pytest.mark.demo, pytest.mark.slow, pytest.mark.timeout(3600)]


@dataclass(frozen=True)
class Demo:
    folder: Path
    stdout: str
    minutes: float


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    """`wavefoundry pipeline run` once, in a scratch project with the repository's params.yaml
    and configs/, for both tests: the vocoder's floor and the voice are asserted apart, so a
    run without a vocoder champion still says whether the voice aligned."""
    folder = tmp_path_factory.mktemp("demo")
    shutil.copy(REPO / "params.yaml", folder / "params.yaml")
    shutil.copytree(REPO / "configs", folder / "configs")
    env = {**os.environ, "BENTOML_HOME": str(folder / "bentoml"), "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    done = wavefoundry(folder, "pipeline", "run", env=env)
    minutes = (time.perf_counter() - started) / 60
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\ndemo run: {minutes:.1f} min")
    return Demo(folder, done.stdout, minutes)


def tracking_client(demo: Demo) -> mlflow.MlflowClient:
    import mlflow

    return mlflow.MlflowClient(f"sqlite:///{demo.folder / '.wavefoundry' / 'mlflow.db'}")


def test_the_demo_s_champion_beats_griffin_lim_on_the_floor_s_metrics(demo: Demo) -> None:
    client = tracking_client(demo)
    if "champion" not in client.get_registered_model(MODEL).aliases:
        # What the run said of each vocoder: its scores, Griffin-Lim's and the gate's verdict.
        said = [line for line in demo.stdout.splitlines() if MODEL in line or
                f"{BASELINE} on the same clips" in line or "  scores: " in line]  # fmt: skip
        pytest.fail(f"no {MODEL} champion after {demo.minutes:.1f} min:\n" + "\n".join(said))
    champion = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(champion.run_id)
    scores = {k.removeprefix("eval/"): v for k, v in run.data.metrics.items()}
    fingerprint = run.data.tags[tracking.TAG_EVAL_FINGERPRINT]
    floor = find_baseline(client, run.info.experiment_id, fingerprint)
    assert floor is not None, "no Griffin-Lim score on the champion's held-out set"

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    floor_metrics = params["promotion"]["floor_metrics"]
    assert params["promotion"]["floor"] == "griffin_lim" and {"mrstft", "pesq"} <= set(
        floor_metrics
    )
    print(f"\nchampion v{champion.version} ({champion.tags['family']})")
    for name in [*floor_metrics, "mel_l1"]:
        print(f"  {name:8s} champion {scores[name]:.4f}   griffin_lim {floor.metrics[name]:.4f}")
    for name in floor_metrics:
        mine, theirs = scores[name], floor.metrics[name]
        assert math.isfinite(mine), name
        better = mine > theirs if METRICS[name].higher_is_better else mine < theirs
        assert better, f"{name}: champion {mine:.4f}, griffin_lim {theirs:.4f}"

    # What a listener opens in the MLflow UI: each example's audio and spectrogram.
    examples = [a.path for a in client.list_artifacts(champion.run_id, "eval/examples")]
    assert any(p.endswith("-generated.wav") for p in examples), examples
    assert any(p.endswith("-spectrogram.png") for p in examples), examples
    assert f"champion: {MODEL} v{champion.version} (" in demo.stdout


def test_the_demo_s_voice_aligns_on_every_held_out_sentence_and_is_served(
    demo: Demo, tmp_path: Path
) -> None:
    client = tracking_client(demo)
    # The voice: the tiny Tacotron 2 passed its gate (a first champion: every score finite),
    # and the run's last lines say how to hear it (the e2e test asks its Bento over HTTP).
    voice = client.get_model_version_by_alias(VOICE, "champion")
    assert voice.tags["family"] == "tacotron2"
    assert f"champion: {VOICE} v{voice.version} (tacotron2, run {voice.run_id})" in demo.stdout
    # The alignment acceptance, on the demo's own voice: each held-out sentence (the
    # test split's), spoken free running when the run scored it, has attention focus >= 0.5,
    # walks the text forwards and fires its stop token before max_decoder_steps.
    sentences = pd.read_json(
        client.download_artifacts(voice.run_id, "eval/clips.json", str(tmp_path)), orient="split"
    )
    print(sentences[["clip_id", "attention_focus", "attention_monotonic", "seconds",
                     "reference_seconds", "decoder_limit_share"]].to_string())  # fmt: skip
    assert len(sentences) >= 3, sentences
    assert (sentences["attention_focus"] >= 0.5).all(), sentences
    assert sentences["attention_monotonic"].all(), sentences
    assert (sentences["decoder_limit_share"] == 0).all(), sentences

    serve, try_it = serve_and_try_it(demo.stdout, VOICE)
    assert f"bentoml serve {voice.tags['bento_tag']} --port " in serve
    assert "/synthesize " in try_it, try_it
