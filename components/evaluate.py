from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def evaluate(
    run_id: str,
    model: Input[Model],
    data: Input[Dataset],
    tracking_uri: str,
    config: dict,
    metrics: Output[Metrics],
) -> NamedTuple("EvaluateOutputs", [("candidate", str)]):
    """Score the trained model on the same held-out clips as every candidate, log the score on
    its MLflow run and register it as a version of wavefoundry-DATASET-TASK."""
    from wavefoundry.pipeline import steps

    return (steps.evaluate(run_id, data, tracking_uri, config, metrics),)
