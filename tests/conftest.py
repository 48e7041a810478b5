"""Fixtures shared by every test: real servers on loopback (see `servers.py`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import FileServer, MotoServer


def share_the_cores_between_workers() -> None:
    """Under pytest-xdist, each worker (and every process it starts: the CLI, torchrun, servers)
    gets its share of the cores as OpenMP threads, unless OMP_NUM_THREADS is set already.

    torch otherwise gives every worker one thread per core: `make test`'s 2 workers then run 4
    threads on 2 cores, and an OpenMP thread spinning at a barrier waits for one that is not
    running. Measured on this 2-core machine with the other core busy: a tiny HiFi-GAN step
    took 0.2 s on 1 thread, 0.6-12 s on 2; test_registry's fixture 51 s instead of 167 s.
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, str(threads))
    import torch  # after the variables: torch reads them when first imported

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


share_the_cores_between_workers()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Files with a test marked slow first, those with more tests first; then the rest, likewise.

    `make test` runs `-n 2 --dist loadfile --no-loadscope-reorder`: each file goes whole to the
    next free worker in this order. xdist's own order (most tests first, whatever they cost)
    leaves the files of a few long tests (trained models, servers, the end-to-end run) for
    last, where one of them keeps a core busy while the other has nothing left to take; started
    first, the quick files fill in around them. Order only: no test or fixture changes.
    """
    by_file: dict[str, list[pytest.Item]] = {}
    for item in items:
        by_file.setdefault(item.nodeid.split("::")[0], []).append(item)
    ordered = sorted(
        by_file.values(),
        key=lambda tests: (not any(t.get_closest_marker("slow") for t in tests), -len(tests)),
    )
    items[:] = [item for tests in ordered for item in tests]


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: a second OpenMP thread only adds synchronisation, which on a busy 2-core
    machine costs milliseconds per operation. For modules of tiny models."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """Endpoint URL of an S3-compatible moto server, one for the whole test session.

    Nothing global is set: pass the endpoint explicitly (boto3 `endpoint_url=`, or
    `StorageConfig(s3_endpoint_url=...)`), use the `aws_credentials` fixture, and give each
    test its own bucket name, since the server is shared.
    """
    server = MotoServer()
    try:
        yield server.endpoint_url
    finally:
        server.stop()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy AWS credentials for this test only (moto accepts any)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


@pytest.fixture
def http_server() -> Iterator[Callable[[Path], FileServer]]:
    """Start a Range-capable HTTP server for a directory: `server = http_server(folder)`.

    `server.url` is its base URL; `server.drop_after(n)`, `server.fail_next(status)` and
    `server.requests` let a test break it and see what it was asked. Stopped at teardown.
    """
    started: list[FileServer] = []

    def start(root: Path) -> FileServer:
        server = FileServer(root)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="session")
def sample_corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The three sample corpora, generated once per session. Copy before changing them."""
    from wavefoundry.config import SampleDataConfig
    from wavefoundry.samples import make_sample_data

    cfg = SampleDataConfig(
        ljspeech_clips=12,
        vctk_speakers=5,
        vctk_clips_per_speaker=3,
        nsynth_instruments_per_split={"train": 2, "valid": 1, "test": 1},
        nsynth_notes_per_instrument=2,
    )
    out = tmp_path_factory.mktemp("sample")
    return make_sample_data(out, ["ljspeech", "vctk", "nsynth"], cfg)


@pytest.fixture(scope="session")
def mlflow_server(moto_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real `mlflow server` (SQLite backend) whose artifacts go to the moto S3
    server: what a team runs, on loopback. Shared by the session; use your own experiment."""
    import boto3
    from servers import MlflowServer

    credentials = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "MLFLOW_S3_ENDPOINT_URL": moto_server,
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_server,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    s3.create_bucket(Bucket="mlflow-artifacts")
    server = MlflowServer(
        tmp_path_factory.mktemp("mlflow"), "s3://mlflow-artifacts/", env=credentials
    )
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def stored_samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the three sample corpora ingested, validated and stored, as
    `wavefoundry prepare` leaves it: <root>/data/processed/<dataset>/{train,valid,test}.
    Read-only for tests: point `paths.data` at `<root>/data` and `paths.runs` elsewhere."""
    from wavefoundry import stages
    from wavefoundry.config import SampleDataConfig, load_config

    root = tmp_path_factory.mktemp("stored")
    sizes = SampleDataConfig(
        ljspeech_clips=24,
        vctk_speakers=4,
        vctk_clips_per_speaker=6,
        nsynth_instruments_per_split={"train": 3, "valid": 1, "test": 1},
        nsynth_notes_per_instrument=3,
    )
    cfg = load_config(
        None,
        overrides=[
            f"paths.data={root / 'data'}",
            "workers=1",
            f"sample_data={sizes.model_dump_json()}",
            "datasets.ljspeech.split={by: hash, valid_fraction: 0.2, test_fraction: 0.1}",
            "datasets.vctk.split={by: hash, valid_fraction: 0.2, test_fraction: 0.1}",
            # The sample VCTK corpus has deliberate holes (p315 without text): keep the suite green.
            "validation.vctk.text_mostly=0.5",
        ],
    )
    corpora = stages.sample_data(cfg, ["ljspeech", "vctk", "nsynth"])
    for dataset, path in corpora.items():
        cfg.datasets.for_dataset(dataset).source = [str(path)]
        stages.ingest(cfg, dataset)
        stages.validate(cfg, dataset)
        stages.store(cfg, dataset)
    return root / "data"
