from kfp import dsl

from components.image import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def resolve_data_revision(dataset: str, source: list, revision: str, data_config: dict) -> str:
    """The data revision the ingest cache is keyed on: the one given, else one read off the
    sources without downloading them (ETag, S3 ETag, sha256 of local files)."""
    from wavefoundry.pipeline import steps

    return steps.data_revision(dataset, source, revision, data_config)
