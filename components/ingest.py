from kfp import dsl
from kfp.dsl import Dataset, Output

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def ingest(dataset: str, source: list, revision: str, data_config: dict, ingested: Output[Dataset]):
    """Fetch the dataset (folder, archive, http(s), s3://), unpack it safely and probe every
    clip into the manifest."""
    from wavefoundry.pipeline import steps

    steps.ingest(dataset, source, revision, data_config, ingested)
