"""The data stages as library functions. The CLI, dvc.yaml and the KFP components call these.

sample-data -> ingest (fetch, extract, list, probe: manifest) -> validate (GX suite,
quarantine) -> store (int16 memmaps + index, data version).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from wavefoundry.config import Config
from wavefoundry.data import get_adapter, schema
from wavefoundry.data.manifest import build_manifest, read_manifest, write_manifest
from wavefoundry.data.store import StoreResult, store_dataset
from wavefoundry.progress import progress_bar


def sample_data(cfg: Config, datasets: list[str], out: Path | None = None) -> dict[str, Path]:
    """Generate the sample corpora in each dataset's official layout."""
    from wavefoundry.data.synthetic import make_sample_data

    return make_sample_data(out or cfg.paths.samples, datasets, cfg.sample_data)


@dataclass
class IngestResult:
    dataset: str
    manifest_path: Path
    clips: int
    usable: int
    problems: dict[str, int]  # status -> count, for rows that are not "ok"
    hours: float
    os_junk: int = 0  # files ignored as OS junk (._*, __MACOSX/, .DS_Store, Thumbs.db, hidden)


def ingest(cfg: Config, dataset: str, sources: list[str] | None = None) -> IngestResult:
    """Fetch and unpack the sources, list every clip, probe its audio, write the manifest.
    OS junk in the sources is no clip; it is counted."""
    from wavefoundry.data.download import resolve_sources
    from wavefoundry.data.layout import count_os_junk

    adapter = get_adapter(dataset)
    dataset_cfg = cfg.datasets.for_dataset(dataset)
    dirs = resolve_sources(
        sources or dataset_cfg.source,
        cfg.paths.raw(dataset),
        cfg.paths.downloads,
        sha256=dataset_cfg.sha256,
        storage=cfg.storage,
        max_bytes=dataset_cfg.max_archive_bytes,
    )
    rows = adapter.list_clips(dirs, dataset_cfg)
    with progress_bar(f"probing {dataset} audio", len(rows)) as advance:
        manifest = build_manifest(dataset, rows, cfg.workers, advance)
    path = write_manifest(manifest, cfg.paths.manifest(dataset))
    problems = manifest.loc[manifest["status"] != schema.OK, "status"].value_counts().to_dict()
    usable = int((manifest["status"] == schema.OK).sum())
    return IngestResult(
        dataset,
        path,
        len(manifest),
        usable,
        problems,
        float(manifest["duration"].sum() / 3600),
        count_os_junk(dirs),
    )


def validate(cfg: Config, dataset: str):
    """Run the dataset's Great Expectations suite over its manifest; write report and quarantine."""
    from wavefoundry.validation import validate_manifest

    get_adapter(dataset)
    manifest = read_manifest(cfg.paths.manifest(dataset))
    return validate_manifest(
        manifest, dataset, cfg.validation.for_dataset(dataset), cfg.paths.validated(dataset)
    )


def store(cfg: Config, dataset: str) -> StoreResult:
    """Write the usable, unquarantined clips into the training store and record the data version."""
    from wavefoundry.validation import quarantined_ids

    adapter = get_adapter(dataset)
    manifest = read_manifest(cfg.paths.manifest(dataset))
    quarantined = quarantined_ids(cfg.paths.validated(dataset))
    sample_rate = cfg.datasets.for_dataset(dataset).store_sample_rate or adapter.SAMPLE_RATE
    with progress_bar(
        f"storing {dataset}", int((manifest["status"] == schema.OK).sum())
    ) as advance:
        return store_dataset(
            dataset,
            manifest,
            quarantined,
            cfg.paths.processed(dataset),
            cfg.paths.data_version(dataset),
            sample_rate,
            advance,
        )
