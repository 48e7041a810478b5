"""`wavefoundry pipeline submit` and `schedule` against a Kubeflow Pipelines REST API on
loopback (tests/servers.py: KfpApiServer stands in for the cluster, which cannot run here):
the checked-in pipeline, the parameters, the cron and the concurrency arrive as sent; a host
that refuses or does not answer gives one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from servers import KfpApiServer, free_port

from wavefoundry.cli import main
from wavefoundry.config import DEMO_FAMILIES
from wavefoundry.pipeline.definition import COMPILED

REPO = Path(__file__).resolve().parents[2]
TRACKING = "http://mlflow.example:5000"


@pytest.fixture
def kfp():
    server = KfpApiServer(token="s3cret")
    yield server
    server.close()


def compiled_package() -> dict:
    """What kfp's client sends of the checked-in file: the pipeline and the platform spec (the
    GPU tolerations, node selector and /dev/shm live in the latter)."""
    pipeline, platform = yaml.safe_load_all(COMPILED.read_text())
    return {"pipeline_spec": pipeline, "platform_spec": platform}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wavefoundry.cli", "pipeline", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,  # generous: a CLI start on a busy 2-core machine
    )


def test_submit_sends_the_compiled_pipeline_with_its_parameters(kfp, capsys):
    code = main(
        [
            "pipeline", "submit", "--host", kfp.url, "--token", "s3cret",
            "--experiment", "nightly", "--name", "vocoders", "-d", "vctk",
            "-m", "hifigan", "-m", "vqvae", "--steps", "5000",
            "--source", "s3://corpora/VCTK-Corpus-0.92.zip", "--tracking-uri", TRACKING,
            "--set", "training.device=cuda", "--set", "datasets.vctk.mic=mic2",
            "--param", "gpu_count=2", "--param", "gpu_node_selector={nvidia.com/gpu.product: H100}",
        ]
    )  # fmt: skip
    assert code == 0
    [run] = kfp.posted("/apis/v2beta1/runs")
    [experiment] = kfp.posted("/apis/v2beta1/experiments")
    assert experiment["display_name"] == "nightly"
    assert run["display_name"] == "vocoders"
    assert run["pipeline_spec"] == compiled_package()
    parameters = run["runtime_config"]["parameters"]
    data_config, config = parameters.pop("data_config"), parameters.pop("config")
    assert parameters == {
        "dataset": "vctk",
        "families": ["hifigan", "vqvae"],
        "source": ["s3://corpora/VCTK-Corpus-0.92.zip"],
        "steps": 5000,
        "tracking_uri": TRACKING,
        "data_revision": "",
        "gpu_count": 2,
        "gpu_node_selector": {"nvidia.com/gpu.product": "H100"},
    }
    # The whole configuration, resolved here (params.yaml, its tiny recipe, each --set), split
    # into the data tasks' layer and the model tasks' layer: a pod reads no params of its own.
    assert data_config["datasets"]["vctk"]["mic"] == "mic2"
    assert config["training"]["device"] == "cuda"
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    assert config["models"] == tiny["models"]
    assert "training" not in data_config and "datasets" not in config
    assert all(r.headers.get("authorization") == "Bearer s3cret" for r in kfp.requests)
    assert "submitted run" in capsys.readouterr().out


def test_schedule_makes_a_recurring_run_one_at_a_time_without_catch_up(kfp):
    code = main(
        [
            "pipeline", "schedule", "--host", kfp.url, "--token", "s3cret",
            "--cron", "0 30 2 * * *", "--name", "nightly ljspeech",
            "--tracking-uri", TRACKING,
        ]
    )  # fmt: skip
    assert code == 0
    [recurring] = kfp.posted("/apis/v2beta1/recurringruns")
    assert recurring["display_name"] == "nightly ljspeech"
    assert recurring["trigger"] == {"cron_schedule": {"cron": "0 30 2 * * *"}}
    assert recurring["max_concurrency"] == 1
    assert recurring["no_catchup"] is True
    assert recurring["mode"] == "ENABLE"
    assert recurring["pipeline_spec"] == compiled_package()
    assert recurring["runtime_config"]["parameters"]["families"] == list(DEMO_FAMILIES)
    [experiment] = kfp.experiments
    assert recurring["experiment_id"] == experiment["experiment_id"]


@pytest.mark.parametrize(
    ("cron", "hint"),
    [("30 2 * * *", "'0 30 2 * * *'"), ("every night", "six fields")],
)
def test_a_five_field_or_bad_cron_is_refused_before_anything_is_sent(kfp, cron, hint):
    done = cli("schedule", "--host", kfp.url, "--cron", cron, "--tracking-uri", TRACKING)
    assert done.returncode == 2
    assert hint in done.stderr and "Traceback" not in done.stderr
    assert kfp.posted("/apis/v2beta1/recurringruns") == []


def test_a_host_that_refuses_gives_one_line(kfp):
    done = cli("submit", "--host", kfp.url, "--token", "wrong", "--tracking-uri", TRACKING)
    assert done.returncode == 2
    assert f"Kubeflow Pipelines at {kfp.url} refused us (HTTP 401)" in done.stderr
    assert "Traceback" not in done.stderr
    assert kfp.posted("/apis/v2beta1/runs") == []

    kfp.token = None
    kfp.refuse(403)
    done = cli("submit", "--host", kfp.url, "--tracking-uri", TRACKING)
    assert done.returncode == 2 and "refused us (HTTP 403)" in done.stderr


def test_a_run_the_host_turns_down_gives_one_line(kfp, capsys):
    kfp.refuse(400, "/apis/v2beta1/runs")  # a quota, say: the host answers, the run is refused
    code = main(
        ["pipeline", "submit", "--host", kfp.url, "--token", "s3cret", "--tracking-uri", TRACKING]
    )
    assert code == 2
    assert "refused the run (HTTP 400)" in capsys.readouterr().err


def test_an_unreachable_host_fails_in_seconds(capsys):
    url = f"http://127.0.0.1:{free_port()}"
    code = main(["pipeline", "submit", "--host", url, "--tracking-uri", TRACKING])
    assert code == 2
    assert f"Kubeflow Pipelines at {url} unreachable (connection error)" in capsys.readouterr().err


def test_a_tracking_store_on_this_machine_is_refused_for_a_cluster(kfp, capsys):
    code = main(["pipeline", "submit", "--host", kfp.url, "--token", "s3cret"])
    assert code == 2
    assert "needs a tracking server every pod reaches" in capsys.readouterr().err
    assert kfp.requests == []


def test_an_unknown_parameter_is_refused(kfp, capsys):
    code = main(
        ["pipeline", "submit", "--host", kfp.url, "--tracking-uri", TRACKING, "--param", "gpus=2"]
    )
    assert code == 2
    assert "the pipeline has no parameter gpus" in capsys.readouterr().err
