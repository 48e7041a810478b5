from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.image import BASE_IMAGE


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
