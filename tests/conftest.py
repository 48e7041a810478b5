"""Fixtures shared by every test: real servers on loopback (see `servers.py`)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from servers import FileServer, MotoServer


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
    from wavefoundry.data.synthetic import make_sample_data

    cfg = SampleDataConfig(
        ljspeech_clips=12,
        vctk_speakers=5,
        vctk_clips_per_speaker=3,
        nsynth_instruments_per_split={"train": 2, "valid": 1, "test": 1},
        nsynth_notes_per_instrument=2,
    )
    out = tmp_path_factory.mktemp("sample")
    return make_sample_data(out, ["ljspeech", "vctk", "nsynth"], cfg)
