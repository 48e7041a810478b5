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
    # ... and in the artifact's own file, which kfp.local's cache needs to reuse the task.
    assert json.loads(Path(metrics.path).read_text()) == metrics.logged
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


PROMOTE_AND_BUILD = """
import json, sys
from dataclasses import dataclass, field
from wavefoundry.pipeline import steps

@dataclass
class Artifact:
    path: str
    metadata: dict = field(default_factory=dict)

data, uri, config, candidates, out = sys.argv[1:6]
config = json.loads(config)
champions = steps.promote(
    json.loads(candidates), Artifact(data), uri, config, "job-1", Artifact(out + "/decisions.md")
)
tags = steps.build_bento(champions, uri, config, Artifact(out + "/bento"))
print("RESULT " + json.dumps({"champions": champions, "tags": tags}))
"""


def promote_and_build(project, data, uri, config, candidates):
    """The promote and build-bento tasks as the pipeline runs them, one after the other, in a
    process of their own (BentoML's store is the project's)."""
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", PROMOTE_AND_BUILD, str(data), uri, json.dumps(config),
         json.dumps([json.dumps(c) for c in candidates]), str(project)],
        cwd=project, capture_output=True, text=True, timeout=600,
        env={**os.environ, "BENTOML_HOME": str(project / "bentoml")},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    result = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(result.removeprefix("RESULT ")), done.stdout


def test_a_run_where_no_candidate_passes_is_an_outcome_not_a_failure(in_project, stored_samples):
    """Refused candidates end the promote task normally, saying which was refused for what;
    the champion and its Bento stay (or the run says there is none); nothing fails."""
    from wavefoundry.config import load_config
    from wavefoundry.stages import evaluate
    from wavefoundry.training.trainer import train

    uri = f"sqlite:///{in_project / 'mlflow.db'}"
    # 2-3 steps of HiFi-GAN do not beat Griffin-Lim: the floor is off here (test_registry's).
    config = resolved(
        paths={"runs": str(in_project / "runs")},
        evaluation={"clips": 2},
        promotion={"floor": "off"},
    )
    cfg = load_config(
        REPO / "params.yaml",
        overrides=[f"paths.data={stored_samples}", f"paths.runs={in_project / 'runs'}",
                   f"tracking.uri={uri}", "training.validate_every=1000", "evaluation.clips=2"],
    )  # fmt: skip
    records = []
    for steps_ in (2, 3):
        cfg.training.steps = steps_
        run_id = train(cfg, "hifigan", "ljspeech").run_id
        done = evaluate(cfg, run_id=run_id)
        records.append(done.candidate.as_record())
        # Griffin-Lim's scores come back beside the candidate's, from the same held-out clips.
        assert done.baseline is not None and done.baseline.name == "griffin_lim"
        assert done.baseline.fingerprint == done.score.fingerprint
        assert {"pesq", "mrstft", "mel_l1"} <= done.baseline.metrics.keys()
    first, second = records
    model = first["registered_model"]

    # A speed target for this device that nothing meets: refused, the reason said, no champion.
    strict = resolved(
        paths={"runs": str(in_project / "runs")},
        evaluation={"clips": 2},
        promotion={"real_time_factor_device": "cpu", "max_real_time_factor": 1e-9, "floor": "off"},
    )
    result, stdout = promote_and_build(in_project, stored_samples, uri, strict, [first])
    assert result == {"champions": [], "tags": []}
    assert f"{model} v{first['version']} (hifigan): refused: real-time factor:" in stdout
    assert f"{model}: no candidate passed the gate and there is no champion yet" in stdout
    assert "no champion: no Bento to build" in stdout

    # The same candidate with the speed target for a GPU (the default): a CPU score is not held
    # to it, and the verdict says so.
    result, stdout = promote_and_build(in_project, stored_samples, uri, config, [first])
    assert result["champions"] == [
        {"registered_model": model, "version": first["version"], "promoted": True}
    ]
    assert f"{model} v{first['version']} (hifigan): champion\n" in stdout
    assert stdout.count("note: speed target off: scored on cpu") == 1
    [bento] = result["tags"]

    # A challenger no gate lets through: the champion and its Bento stay, the run goes on.
    picky = resolved(
        paths={"runs": str(in_project / "runs")},
        evaluation={"clips": 2},
        promotion={"min_relative_improvement": 1000.0},
    )
    result, stdout = promote_and_build(in_project, stored_samples, uri, picky, [second])
    assert result == {
        "champions": [{"registered_model": model, "version": first["version"], "promoted": False}],
        "tags": [bento],
    }
    assert f"{model} v{second['version']} (hifigan): refused: primary mel_l1:" in stdout
    assert f"the champion stays {model}:{first['version']}" in stdout
    assert f"Bento {bento} kept" in stdout

    # A rerun's candidate that already is the champion: said once, as its verdict, and not
    # as "no candidate passed".
    result, stdout = promote_and_build(in_project, stored_samples, uri, config, [first])
    assert f"{model} v{first['version']} (hifigan): already champion" in stdout
    assert "no candidate passed" not in stdout
