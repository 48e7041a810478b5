"""Kubeflow lightweight components, one per task of the lifecycle pipeline (`dag.py`).

Each is a few lines that call `wavefoundry.pipeline.steps`: KFP copies a component's source
into its command, so a component imports what it needs inside its body. Every one runs in the
image `BASE_IMAGE` names (components/Dockerfile; `wavefoundry.containers.IMAGE`), or, on a
local run, in this environment or that image (`pipeline run --runner container`).
`WAVEFOUNDRY_IMAGE` overrides the image when the pipeline is compiled (`wavefoundry pipeline
compile --image` does the same).
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from wavefoundry.containers import DEFAULT_IMAGE
from wavefoundry.containers import IMAGE as BASE_IMAGE

__all__ = ["BASE_IMAGE", "DEFAULT_IMAGE"]


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def resolve_data_revision(dataset: str, source: list, revision: str, data_config: dict) -> str:
    """The data revision the ingest cache is keyed on: the one given, else one read off the
    sources without downloading them (ETag, S3 ETag, sha256 of local files)."""
    from wavefoundry.pipeline import steps

    return steps.data_revision(dataset, source, revision, data_config)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(dataset: str, source: list, revision: str, data_config: dict, ingested: Output[Dataset]):
    """Fetch the dataset (folder, archive, http(s), s3://), unpack it safely and probe every
    clip into the manifest."""
    from wavefoundry.pipeline import steps

    steps.ingest(dataset, source, revision, data_config, ingested)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def validate(
    dataset: str,
    ingested: Input[Dataset],
    data_config: dict,
    store: Output[Dataset],
    report: Output[HTML],
    metrics: Output[Metrics],
) -> NamedTuple("ValidateOutputs", [("data_version", str)]):
    """Run the Great Expectations suite over the manifest (report and quarantine list), then
    store the usable clips; a failed suite stops the pipeline before any training."""
    from wavefoundry.pipeline import steps

    return (steps.validate(dataset, ingested, data_config, store, report, metrics),)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def train(
    dataset: str,
    family: str,
    data: Input[Dataset],
    data_version: str,
    steps: int,
    tracking_uri: str,
    config: dict,
    gpu_type: str,
    gpu_count: int,
    model: Output[Model],
) -> NamedTuple("TrainOutputs", [("run_id", str)]):
    """Train one model family on the stored dataset, tracked in MLflow, on the GPUs the task
    asked for (several: data-parallel under torchrun); the exported network (safetensors +
    config.json) is the output."""
    from wavefoundry.pipeline import steps as lifecycle

    return (
        lifecycle.train(
            dataset,
            family,
            data,
            data_version,
            steps,
            tracking_uri,
            config,
            gpu_type,
            gpu_count,
            model,
        ),
    )


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    run_id: str,
    model: Input[Model],
    data: Input[Dataset],
    data_version: str,
    tracking_uri: str,
    config: dict,
    metrics: Output[Metrics],
) -> NamedTuple("EvaluateOutputs", [("candidate", str)]):
    """Score the trained model on the same held-out clips as every candidate (from the data
    version validate handed on), log the score on its MLflow run and register it as a version
    of wavefoundry-DATASET-TASK."""
    from wavefoundry.pipeline import steps

    return (steps.evaluate(run_id, data, tracking_uri, config, metrics, data_version),)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(
    candidates: list,
    data: Input[Dataset],
    tracking_uri: str,
    config: dict,
    job_id: str,
    decisions: Output[Markdown],
) -> NamedTuple("PromoteOutputs", [("champions", list)]):
    """Face the candidates with their champions through the gate, best first; the best that
    passes takes the `champion` alias. Returns the versions decided on, per registered model."""
    from wavefoundry.pipeline import steps

    return (steps.promote(candidates, data, tracking_uri, config, job_id, decisions),)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_bento(
    champions: list, tracking_uri: str, config: dict, bento: Output[Model]
) -> NamedTuple("BentoOutputs", [("tags", list)]):
    """Build a Bento of each champion promotion decided on (the version, not the alias); the
    output holds it as a .bento archive (`bentoml import` it, then `bentoml serve` or
    `bentoml containerize`)."""
    from wavefoundry.pipeline import steps

    return (steps.build_bento(champions, tracking_uri, config, bento),)


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def record_outcome(
    status: dsl.PipelineTaskFinalStatus,
    dataset: str,
    tracking_uri: str,
    config: dict,
    job_id: str,
    job_name: str,
    summary: Output[Markdown],
):
    """The exit handler: the run's outcome, succeeded or failed, as a summary and as an MLflow
    run tagged with its state."""
    from wavefoundry.pipeline import steps

    steps.record_outcome(
        status.state, status.error_message or "", dataset, tracking_uri, config, job_id,
        job_name, summary,
    )  # fmt: skip
