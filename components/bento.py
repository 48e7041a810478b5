from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Model, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_bento(
    registered_models: list, tracking_uri: str, config: dict, bento: Output[Model]
) -> NamedTuple("BentoOutputs", [("tags", list)]):
    """Build a Bento of each registered model's champion; the output holds it as a .bento
    archive (`bentoml import` it, then `bentoml serve` or `bentoml containerize`)."""
    from wavefoundry.pipeline import steps

    return (steps.build_bento(registered_models, tracking_uri, config, bento),)
