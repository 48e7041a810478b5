"""What the pipeline's tasks do, called as their components call them (artifacts are objects
with a path and metadata): an ingested dataset that arrives at another path, training on
several processes under torchrun, and a task that asked for GPUs it did not get."""

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pytest

from wavefoundry.config import read_layer
from wavefoundry.pipeline import steps


@dataclass
class Artifact:
    path: str
    metadata: dict = field(default_factory=dict)
    logged: dict = field(default_factory=dict)

    def log_metric(self, metric: str, value: float) -> None:
        self.logged[metric] = value


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """A working directory for a task; each test's layer is `resolved(...)`: the whole
    configuration, as `pipeline run` sends it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def resolved(**layer) -> dict:
    """The project's params.yaml and its tiny recipe (what `pipeline run` resolves and sends
    as a task's configuration), with `layer` merged over them."""
    return read_layer(
        REPO / "params.yaml", overrides=[f"{k}={json.dumps(v)}" for k, v in flat(layer)]
    )


def flat(layer: dict, prefix: str = ""):
    for key, value in layer.items():
        if isinstance(value, dict):
            yield from flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def test_validate_follows_an_ingested_dataset_to_where_it_arrives(in_project, sample_corpora):
    archive_like = in_project / "corpus"
    shutil.copytree(sample_corpora["ljspeech"], archive_like / "LJSpeech-1.1")
    layer = resolved(
        workers=1, datasets={"ljspeech": {"source": [str(archive_like / "LJSpeech-1.1")]}}
    )
    written = Artifact(str(in_project / "written" / "ingested"))
    steps.ingest("ljspeech", [], "rev-1", layer, written)
    assert written.metadata["clips"] == 12 and written.metadata["revision"] == "rev-1"

    # Ingest extracted its clips inside its artifact when the source is an archive; emulate a
    # cluster that hands the artifact to the next pod under another path.
    manifest_path = Path(written.path) / "manifest" / "ljspeech.parquet"
    manifest = pd.read_parquet(manifest_path)
    inside = Path(written.path) / "raw" / "ljspeech"
    shutil.copytree(archive_like / "LJSpeech-1.1", inside / "LJSpeech-1.1")
    manifest["path"] = [p.replace(str(archive_like), str(inside)) for p in manifest["path"]]
    manifest.to_parquet(manifest_path)
    moved = in_project / "elsewhere" / "ingested"
    shutil.move(written.path, moved)
    arrived = Artifact(str(moved), dict(written.metadata))

    store, report, metrics = (Artifact(str(in_project / n)) for n in ("store", "report", "metrics"))
    version = steps.validate("ljspeech", arrived, layer, store, report, metrics)
    assert version == store.metadata["data_version"]
    assert metrics.logged == {"clips": 12, "passed": 12, "quarantined": 0}
    assert "suite PASSED" in Path(report.path).read_text()
    stored = pd.read_parquet(Path(store.path) / "manifest" / "ljspeech.parquet")
    assert all(p.startswith(str(moved)) for p in stored["path"])
    assert (Path(store.path) / "processed" / "ljspeech" / "train" / "audio.npy").is_file()


def test_training_on_two_processes_runs_under_torchrun(in_project, stored_samples):
    model = Artifact(str(in_project / "model"))
    version = json.loads((stored_samples / "processed" / "ljspeech.version.json").read_text())
    config = resolved(
        paths={"runs": str(in_project / "runs")},
        training={"device": "cpu", "batch_size": 2, "validate_every": 2},
    )
    run_id = steps.train(
        "ljspeech", "hifigan", Artifact(str(stored_samples)), version["data_version"], 2,
        f"sqlite:///{in_project / 'mlflow.db'}", config, "nvidia.com/gpu", 2, model,
    )  # fmt: skip
    assert model.metadata["processes"] == 2 and model.metadata["run_id"] == run_id
    assert model.metadata["steps"] == 2
    assert {"model.safetensors", "config.json"} <= {p.name for p in Path(model.path).iterdir()}

    import mlflow

    run = mlflow.MlflowClient(f"sqlite:///{in_project / 'mlflow.db'}").get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags["family"] == "hifigan"


def test_a_task_that_did_not_get_its_gpus_stops_with_one_line(in_project, stored_samples, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    version = json.loads((stored_samples / "processed" / "ljspeech.version.json").read_text())
    with pytest.raises(SystemExit) as stopped:
        steps.train(
            "ljspeech", "hifigan", Artifact(str(stored_samples)), version["data_version"], 2,
            f"sqlite:///{in_project / 'mlflow.db'}", resolved(), "nvidia.com/gpu", 1,
            Artifact(str(in_project / "model")),
        )  # fmt: skip
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "error: the task asked for 1 nvidia.com/gpu but torch sees 0 CUDA device(s): check the "
        "node's GPUs and driver, or run with gpu_count=0 on a CPU"
    )
    assert not (in_project / "model").exists()


def test_training_refuses_a_store_of_another_data_version(in_project, stored_samples, capsys):
    with pytest.raises(SystemExit):
        steps.train(
            "ljspeech", "hifigan", Artifact(str(stored_samples)), "0123.dir", 2,
            f"sqlite:///{in_project / 'mlflow.db'}", resolved(), "nvidia.com/gpu", 0,
            Artifact(str(in_project / "model")),
        )  # fmt: skip
    assert "the task was given 0123.dir" in capsys.readouterr().err
