"""The compiled pipeline a cluster runs: checked in, current, and asking for what training
needs (GPUs, retries, tolerations, /dev/shm), with caching keyed on the data version."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from wavefoundry.pipeline.definition import COMPILED as CHECKED_IN
from wavefoundry.pipeline.definition import compile_pipeline

REPO = Path(__file__).resolve().parents[2]
COMPILED = REPO / CHECKED_IN


@pytest.fixture(scope="module")
def package() -> tuple[dict, dict]:
    pipeline, platform = yaml.safe_load_all(COMPILED.read_text())
    return pipeline, platform


def tasks(pipeline: dict) -> dict[str, dict]:
    """Every task of every DAG in the spec, by task name."""
    found = dict(pipeline["root"]["dag"]["tasks"])
    for component in pipeline["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def test_the_checked_in_pipeline_is_a_fresh_compile(tmp_path, monkeypatch):
    monkeypatch.delenv("WAVEFOUNDRY_IMAGE", raising=False)
    fresh = compile_pipeline(tmp_path / "fresh.yaml")
    assert fresh.read_text() == COMPILED.read_text(), (
        "pipelines/compiled/training_pipeline.yaml is stale: run wavefoundry pipeline compile"
    )


def test_training_asks_for_gpus_retries_and_tolerates_gpu_nodes(package):
    pipeline, platform = package
    train = tasks(pipeline)["train"]
    assert train["retryPolicy"] == {
        "maxRetryCount": 3,
        "backoffDuration": "60s",
        "backoffFactor": 2.0,
        "backoffMaxDuration": "3600s",
    }
    resources = pipeline["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    # type and count are the pipeline's parameters, nvidia.com/gpu and 1 unless a run says so
    assert resources["accelerator"] == {
        "resourceType": "{{$.inputs.parameters['pipelinechannel--gpu_type']}}",
        "resourceCount": "{{$.inputs.parameters['pipelinechannel--gpu_count']}}",
    }
    defaults = pipeline["root"]["inputDefinitions"]["parameters"]
    assert defaults["gpu_type"]["defaultValue"] == "nvidia.com/gpu"
    assert defaults["gpu_count"]["defaultValue"] == 1
    assert resources["resourceCpuRequest"] and resources["resourceMemoryRequest"]
    # The parameters reach the loop that holds the training task (a compiler pitfall).
    loop = pipeline["components"]["comp-for-loop-2"]["inputDefinitions"]["parameters"]
    assert {"pipelinechannel--gpu_type", "pipelinechannel--gpu_count"} <= loop.keys()

    kube = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in kube[
        "tolerations"
    ]
    assert kube["nodeSelector"] == {
        "nodeSelectorJson": {"componentInputParameter": "pipelinechannel--gpu_node_selector"}
    }
    [shm] = kube["emptyDirMounts"]
    assert shm["mountPath"] == "/dev/shm" and shm["medium"] == "Memory"
    # Only training asks for GPUs.
    others = [
        name
        for name, executor in pipeline["deploymentSpec"]["executors"].items()
        if "accelerator" in executor["container"].get("resources", {})
    ]
    assert others == ["exec-train"]


def test_caching_is_keyed_on_the_data_version(package):
    pipeline, _ = package
    every = tasks(pipeline)
    cached = {name for name, t in every.items() if t.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"ingest", "validate", "train", "evaluate"}
    # Ingest is keyed on the revision read off the sources, which is never cached itself.
    assert every["ingest"]["inputs"]["parameters"]["revision"] == {
        "taskOutputParameter": {
            "outputParameterKey": "Output",
            "producerTask": "resolve-data-revision",
        }
    }
    assert not every["resolve-data-revision"]["cachingOptions"].get("enableCache")
    # Training takes the data version (DVC's hash of the store) as an input: new data, new key.
    assert every["train"]["inputs"]["parameters"]["data_version"] == {
        "componentInputParameter": "pipelinechannel--validate-data_version"
    }
    assert every["for-loop-2"]["inputs"]["parameters"][
        "pipelinechannel--validate-data_version"
    ] == {"taskOutputParameter": {"outputParameterKey": "data_version", "producerTask": "validate"}}
    # Handed on, not read again: evaluate scores on that data version, from train's run.
    assert every["evaluate"]["inputs"]["parameters"]["data_version"] == {
        "componentInputParameter": "pipelinechannel--validate-data_version"
    }
    assert every["evaluate"]["inputs"]["parameters"]["run_id"] == {
        "taskOutputParameter": {"outputParameterKey": "run_id", "producerTask": "train"}
    }
    # The Bento is built from what promotion decided, not from the alias.
    assert every["build-bento"]["inputs"]["parameters"]["champions"] == {
        "taskOutputParameter": {"outputParameterKey": "champions", "producerTask": "promote"}
    }


def test_the_pipeline_compiles_from_the_installed_package_outside_a_checkout(tmp_path):
    """No checkout on the path: the DAG and its components are inside the package."""
    done = subprocess.run(
        [sys.executable, "-m", "wavefoundry.cli", "pipeline", "compile", "--out", "p.yaml"],
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WAVEFOUNDRY_IMAGE")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.yaml").read_text() == COMPILED.read_text()
    src = REPO / "src" / "wavefoundry"
    assert not [
        str(p.relative_to(REPO)) for p in src.rglob("*.py") if "sys.path.insert" in p.read_text()
    ]


def test_the_exit_handler_records_the_outcome_whatever_happens(package):
    pipeline, _ = package
    root = pipeline["root"]["dag"]["tasks"]
    outcome = root["record-outcome"]
    assert outcome["triggerPolicy"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    assert outcome["inputs"]["parameters"]["status"] == {
        "taskFinalStatus": {"producerTask": "exit-handler-1"}
    }
    body = pipeline["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    assert set(body) == {
        "resolve-data-revision", "ingest", "validate", "for-loop-2", "promote", "build-bento",
    }  # fmt: skip
    # Promotion fans in every family's candidate (dsl.Collected).
    assert body["promote"]["inputs"]["parameters"]["candidates"] == {
        "taskOutputParameter": {
            "outputParameterKey": "pipelinechannel--evaluate-candidate",
            "producerTask": "for-loop-2",
        }
    }


def test_every_component_runs_in_the_one_image_which_the_environment_overrides(tmp_path):
    pipeline, _ = yaml.safe_load_all(COMPILED.read_text())
    images = {e["container"]["image"] for e in pipeline["deploymentSpec"]["executors"].values()}
    from wavefoundry.pipeline.components import DEFAULT_IMAGE

    assert images == {DEFAULT_IMAGE}
    commands = {
        " ".join(e["container"]["command"])
        for e in pipeline["deploymentSpec"]["executors"].values()
    }
    assert all("pip install" not in c for c in commands), "the image has kfp; nothing installs"

    out = tmp_path / "other.yaml"
    env = {**os.environ, "WAVEFOUNDRY_IMAGE": "registry.example/wavefoundry:nightly"}
    done = subprocess.run(
        [sys.executable, "-m", "wavefoundry.cli", "pipeline", "compile", "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    pipeline, _ = yaml.safe_load_all(out.read_text())
    images = {e["container"]["image"] for e in pipeline["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/wavefoundry:nightly"}

    compile_pipeline(out, image="registry.example/wavefoundry:1.2")
    pipeline, _ = yaml.safe_load_all(out.read_text())
    images = {e["container"]["image"] for e in pipeline["deploymentSpec"]["executors"].values()}
    assert images == {"registry.example/wavefoundry:1.2"}


@pytest.mark.parametrize("image", ["bad image name with spaces", "ghcr.io/You/WF:1", "wf:"])
def test_compile_refuses_a_name_that_is_no_image_reference_before_writing(
    tmp_path: Path, image: str
) -> None:
    from wavefoundry.errors import UserError

    out = tmp_path / "pipeline.yaml"
    out.write_text("the last compile\n")
    with pytest.raises(UserError, match="is not an image reference"):
        compile_pipeline(out, image)
    assert out.read_text() == "the last compile\n"  # it overwrote the checked-in compile


def test_compile_takes_an_image_reference_with_registry_port_tag_and_digest(tmp_path: Path) -> None:
    image = "registry.example:5000/team/wavefoundry:1.2-rc1@sha256:" + "0f" * 32
    out = compile_pipeline(tmp_path / "pipeline.yaml", image)
    assert f"image: {image}\n" in out.read_text()
