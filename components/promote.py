from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def promote(
    candidates: list,
    data: Input[Dataset],
    tracking_uri: str,
    config: dict,
    job_id: str,
    decisions: Output[Markdown],
) -> NamedTuple("PromoteOutputs", [("registered_models", list)]):
    """Face the candidates with their champions through the gate, best first; the best that
    passes takes the `champion` alias."""
    from wavefoundry.pipeline import steps

    return (steps.promote(candidates, data, tracking_uri, config, job_id, decisions),)
