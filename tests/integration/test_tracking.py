"""A training run logged to a real `mlflow server` (artifacts on S3, moto on loopback)."""

from __future__ import annotations

import warnings
from pathlib import Path

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient

from wavefoundry.config import load_config
from wavefoundry.training.trainer import train

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_a_run_on_an_mlflow_server_holds_everything_a_data_scientist_compares(
    stored_samples: Path, mlflow_server: str, tmp_path: Path
) -> None:
    cfg = load_config(
        REPO / "params.yaml",
        overrides=[
            f"paths.data={stored_samples}",
            f"paths.runs={tmp_path / 'runs'}",
            f"tracking.uri={mlflow_server}",
            "tracking.experiment=test-tracking",
            "training.steps=6",
            "training.log_every=1",
            "training.validate_every=3",
        ],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(cfg, "hifigan", "ljspeech")
    # What a user reads in the training log: no MLflow advice about the model's code.
    assert not [str(w.message) for w in caught if "mlflow" in w.filename], caught
    client = MlflowClient(mlflow_server)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"

    params = run.data.params
    assert params["model"] == "hifigan" and params["dataset"] == "ljspeech"
    assert params["training.steps"] == "6"
    assert params["models.hifigan.hop_length"] == str(cfg.models["hifigan"].get("hop_length", 256))
    version = (stored_samples / "processed" / "ljspeech.version.json").read_text()
    assert params["data_version"] in version

    loss = client.get_metric_history(result.run_id, "loss")
    assert [m.step for m in loss] == [1, 2, 3, 4, 5, 6]
    for name in ("samples_per_second", "grad_norm/generator", "lr/generator"):
        assert len(client.get_metric_history(result.run_id, name)) == 6, name
    assert [m.step for m in client.get_metric_history(result.run_id, "valid/loss_mel")] == [3, 6]

    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.name == "ljspeech"
    assert dataset_input.dataset.digest == params["data_version"][:36]

    samples = [a.path for a in client.list_artifacts(result.run_id, "samples/step-00000006")]
    assert any(p.endswith("0-generated.wav") for p in samples), samples
    assert any(p.endswith("0-reference.wav") for p in samples), samples
    assert any(p.endswith("0-spectrogram.png") for p in samples), samples

    mlflow.set_tracking_uri(mlflow_server)
    model = mlflow.pyfunc.load_model(result.model_uri)
    audio = np.sin(np.arange(22050, dtype=np.float32) * 0.05) * 0.5
    generated = model.predict(audio)
    assert generated.shape == (22050,)
    assert np.isfinite(generated).all() and np.abs(generated).max() <= 1.0
    files = {
        p.name for p in (Path(mlflow.artifacts.download_artifacts(result.model_uri))).rglob("*")
    }
    assert "model.safetensors" in files
    assert not any(name.endswith((".pkl", ".pt", ".pth")) for name in files), files
