from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from components.image import BASE_IMAGE


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
