from kfp import dsl
from kfp.dsl import Markdown, Output

from components.image import BASE_IMAGE


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
