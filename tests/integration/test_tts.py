"""Text to speech on the stored LJ Speech sample: whole held-out sentences scored after DTW,
the registered name, and validation audio without a vocoder champion. That the demo's tiny
Tacotron 2 aligns on the held-out sentences is asserted on the demo's own voice
(tests/demo/test_demo.py, make test-demo)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from wavefoundry.config import Config, load_config, model_config
from wavefoundry.data.stored import stored_dataset
from wavefoundry.evaluation.scorer import held_out_set, score
from wavefoundry.families.registry import get_family
from wavefoundry.registry.candidates import registered_model_name

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def configure(stored_samples: Path, tmp_path: Path, *overrides: str) -> Config:
    return load_config(
        REPO / "params.yaml",
        overrides=[f"paths.data={stored_samples}", f"paths.runs={tmp_path}", *overrides],
    )


def test_a_voice_is_scored_on_whole_held_out_sentences(
    stored_samples: Path, tmp_path: Path
) -> None:
    cfg = configure(
        stored_samples,
        tmp_path,
        "evaluation.clips=2",
        "evaluation.split=valid",
        "models.tacotron2.max_decoder_steps=12",
    )
    whole = held_out_set(cfg, "ljspeech", whole_clips=True, vocoder="griffin-lim")
    cut = held_out_set(cfg, "ljspeech")
    assert [c.clip_id for c in whole.clips] == [c.clip_id for c in cut.clips]
    assert all(len(w.audio) > len(c.audio) for w, c in zip(whole.clips, cut.clips, strict=True))
    assert whole.fingerprint != cut.fingerprint
    other_vocoder = held_out_set(cfg, "ljspeech", whole_clips=True, vocoder="wavefoundry-x/1")
    assert other_vocoder.fingerprint != whole.fingerprint

    family_class = get_family("tacotron2")
    spec, _ = stored_dataset(cfg, "ljspeech")
    torch.manual_seed(0)
    family = family_class(model_config(cfg, "tacotron2", family_class.config_class), spec)
    net = family.build()["tacotron2"].eval()
    result = score(family, net, whole, audio_examples=1)
    m = result.metrics
    assert m["mcd_dtw"] > 0 and math.isfinite(m["mcd_dtw"])
    assert 0.0 <= m["decoder_limit_share"] <= 1.0
    assert 0.0 < m["attention_focus"] <= 1.0 and 0.0 <= m["attention_diagonality"] <= 1.0
    assert m["rtf"] > 0
    table = result.clips
    # The untrained model speaks at most 12 steps x r frames: far shorter than the recordings.
    limit_frames = 12 * family.config.n_frames_per_step * family.config.hop_length
    assert (table["seconds"] <= limit_frames / whole.sample_rate + 1e-9).all()
    # ... and its attention, at most 3 characters further each step, cannot walk a whole
    # held-out sentence in 12: eval/clips.json says no sentence's walk was monotonic to the end.
    assert all(len(c.conditions["normalized_text"]) > 12 * 3 for c in whole.clips)
    assert table["attention_monotonic"].tolist() == [False] * len(table)
    expected = (table["reference_seconds"] / table["seconds"]).map(math.log).abs().mean()
    assert m["duration_ratio"] == pytest.approx(expected, rel=1e-3)
    assert len(result.examples) == 1


def test_an_acoustic_model_is_registered_as_the_datasets_tts() -> None:
    assert registered_model_name("ljspeech", "acoustic") == "wavefoundry-ljspeech-tts"
    assert registered_model_name("vctk", "vocoder") == "wavefoundry-vctk-vocoder"


def test_without_a_vocoder_champion_validation_audio_is_griffin_lim(
    stored_samples: Path, tmp_path: Path
) -> None:
    import mlflow

    from wavefoundry.training.trainer import train

    cfg = configure(
        stored_samples,
        tmp_path,
        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "training.per_family=null",
        "training.steps=2",
        "models.tacotron2.max_decoder_steps=12",
    )
    result = train(cfg, "tacotron2", "ljspeech")
    client = mlflow.MlflowClient(cfg.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.data.tags["validation_vocoder"] == "griffin-lim"
    steps = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
    logged = [a.path for a in client.list_artifacts(run.info.run_id, steps[-1])]
    assert any(path.endswith("alignment.png") for path in logged), logged
    assert any(path.endswith("0-generated.wav") for path in logged), logged
