"""The lifecycle as one Kubeflow pipeline:

    data revision -> ingest -> validate (+ store) -> [train -> evaluate] per family, in parallel
        -> promote -> bento build,   and whatever happens, the exit handler records the outcome.

Caching: ingest is keyed on the data revision (read off the sources when none is given), and
validate on ingest's output, so unchanged data reuses both; training takes the data version
(DVC's content hash of the store) as an input, so it is in every training task's cache key:
new data retrains, unchanged data does not. Promotion, the Bento and the outcome read and
change the registry, so they always run.

Compiled and checked in as pipelines/compiled/training_pipeline.yaml (`wavefoundry pipeline
compile`); `wavefoundry pipeline run` runs it here on kfp.local, `submit` and `schedule` send it
to a host.
"""

from kfp import dsl, kubernetes

from wavefoundry.config import DEMO_FAMILIES
from wavefoundry.pipeline.components import (
    build_bento,
    evaluate,
    ingest,
    promote,
    record_outcome,
    resolve_data_revision,
    train,
    validate,
)

NAME = "wavefoundry-training"
# A preempted or failed training pod is tried again, waiting 1, 2, 4 minutes.
TRAIN_RETRIES = dict(num_retries=3, backoff_duration="60s", backoff_factor=2.0)
TRAIN_CPU, TRAIN_MEMORY = "8", "32Gi"  # requests of each training pod
SHARED_MEMORY = "16Gi"  # /dev/shm for DataLoader workers; a container's default is 64 MiB


@dsl.pipeline(
    name=NAME,
    description="Ingest, validate, train the chosen families in parallel on GPU nodes, score "
    "them on the same held-out audio, promote the best in the MLflow registry, build its Bento.",
)
def training_pipeline(
    dataset: str = "ljspeech",
    source: list = [],  # noqa: B006 - KFP defaults are values; empty: datasets.NAME.source
    families: list = list(DEMO_FAMILIES),  # noqa: B006, B008
    steps: int = 0,  # 0: each family's own (training.steps, training.per_family)
    tracking_uri: str = "",  # empty: tracking.uri of the configuration
    data_revision: str = "",  # empty: read off the sources
    data_config: dict = {},  # noqa: B006 - merged over params.yaml by the data tasks
    config: dict = {},  # noqa: B006 - merged over params.yaml by the model tasks
    gpu_type: str = "nvidia.com/gpu",
    gpu_count: int = 1,
    gpu_node_selector: dict = {},  # noqa: B006 - e.g. {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
):
    outcome = record_outcome(
        dataset=dataset,
        tracking_uri=tracking_uri,
        config=config,
        job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        job_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
    ).set_caching_options(False)

    with dsl.ExitHandler(outcome, name="lifecycle"):
        revision = resolve_data_revision(
            dataset=dataset, source=source, revision=data_revision, data_config=data_config
        ).set_caching_options(False)  # it looks at the sources: always
        ingested = ingest(
            dataset=dataset, source=source, revision=revision.output, data_config=data_config
        ).set_caching_options(True)
        validated = validate(
            dataset=dataset, ingested=ingested.outputs["ingested"], data_config=data_config
        ).set_caching_options(True)

        with dsl.ParallelFor(families) as family:
            trained = train(
                dataset=dataset,
                family=family,
                data=validated.outputs["store"],
                data_version=validated.outputs["data_version"],
                steps=steps,
                tracking_uri=tracking_uri,
                config=config,
                gpu_type=gpu_type,
                gpu_count=gpu_count,
            ).set_caching_options(True)
            trained.set_display_name("train").set_retry(**TRAIN_RETRIES)
            trained.set_accelerator_type(gpu_type).set_accelerator_limit(gpu_count)
            trained.set_cpu_request(TRAIN_CPU).set_memory_request(TRAIN_MEMORY)
            kubernetes.add_toleration(
                trained, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule"
            )
            kubernetes.add_node_selector_json(trained, gpu_node_selector)
            kubernetes.empty_dir_mount(
                trained,
                volume_name="dshm",
                mount_path="/dev/shm",
                medium="Memory",
                size_limit=SHARED_MEMORY,
            )
            scored = evaluate(
                run_id=trained.outputs["run_id"],
                model=trained.outputs["model"],
                data=validated.outputs["store"],
                data_version=validated.outputs["data_version"],
                tracking_uri=tracking_uri,
                config=config,
            ).set_caching_options(True)

        promoted = promote(
            candidates=dsl.Collected(scored.outputs["candidate"]),
            data=validated.outputs["store"],
            tracking_uri=tracking_uri,
            config=config,
            job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_caching_options(False)
        build_bento(
            champions=promoted.outputs["champions"],
            tracking_uri=tracking_uri,
            config=config,
        ).set_caching_options(False)
