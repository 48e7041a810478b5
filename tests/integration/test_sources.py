"""Fetching sources from real servers on loopback: HTTP with Range/resume, and moto's S3."""

from __future__ import annotations

import hashlib
import os
import tarfile
import time
import uuid
from pathlib import Path

import boto3
import pytest
from servers import free_port

from wavefoundry.config import StorageConfig
from wavefoundry.data.download import fetch, resolve_sources
from wavefoundry.errors import UserError

SIZE = 3_000_000


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    served = tmp_path / "served"
    served.mkdir()
    path = served / "LJSpeech-1.1.tar.bz2"
    path.write_bytes(os.urandom(SIZE))
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- local


def test_local_path_is_returned_as_is(payload: Path, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    assert fetch(str(payload), downloads, sha256=_sha(payload)) == payload
    assert fetch(payload.as_uri(), downloads) == payload
    assert not downloads.exists()  # nothing copied


def test_missing_local_path_names_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"source not found: .*/nope\.zip"):
        fetch(str(tmp_path / "nope.zip"), tmp_path / "downloads")


def test_local_file_with_wrong_checksum_is_refused_but_kept(payload: Path, tmp_path: Path) -> None:
    with pytest.raises(UserError, match="checksum mismatch"):
        fetch(str(payload), tmp_path / "downloads", sha256="0" * 64)
    assert payload.exists()  # the user's own file is never deleted


# ---------------------------------------------------------------- http


def test_http_download_is_byte_identical(http_server, payload: Path, tmp_path: Path) -> None:
    server = http_server(payload.parent)
    downloads = tmp_path / "downloads"

    got = fetch(f"{server.url}/{payload.name}", downloads, sha256=_sha(payload), progress=False)

    assert got == downloads / payload.name
    assert got.read_bytes() == payload.read_bytes()
    # the file and where it came from; no .part left
    assert sorted(p.name for p in downloads.iterdir()) == [payload.name, payload.name + ".source"]
    assert (downloads / (payload.name + ".source")).read_text() == f"{server.url}/{payload.name}\n"


def test_a_download_is_used_again_only_for_the_same_source(
    http_server, payload: Path, tmp_path: Path
) -> None:
    server = http_server(payload.parent)
    downloads = tmp_path / "downloads"
    url = f"{server.url}/{payload.name}"
    fetch(url, downloads, progress=False)
    requests_made = len(server.requests)

    assert fetch(url, downloads, progress=False).read_bytes() == payload.read_bytes()
    assert len(server.requests) == requests_made  # the same URL: not fetched again
    # Another URL with a file of the same name was answered with the earlier download.
    elsewhere = f"http://127.0.0.1:{free_port()}/elsewhere/{payload.name}"
    with pytest.raises(UserError, match=f"download of {elsewhere} failed"):
        fetch(elsewhere, downloads, retries=0, progress=False)


def test_a_part_left_by_another_url_is_started_over_not_completed(
    http_server, payload: Path, tmp_path: Path
) -> None:
    server = http_server(payload.parent)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    part = downloads / (payload.name + ".part")
    part.write_bytes(b"\0" * (SIZE // 3))  # a download of the same name from elsewhere
    (downloads / (payload.name + ".part.source")).write_text("http://elsewhere/x\n")

    got = fetch(f"{server.url}/{payload.name}", downloads, progress=False)

    assert got.read_bytes() == payload.read_bytes()  # it was resumed into a mixed file
    assert [r.range for r in server.requests] == [None]


def test_dropped_connection_resumes_with_range(http_server, payload: Path, tmp_path: Path) -> None:
    server = http_server(payload.parent)
    server.drop_after(SIZE // 3)

    got = fetch(f"{server.url}/{payload.name}", tmp_path / "dl", backoff=0.01, progress=False)

    assert got.read_bytes() == payload.read_bytes()
    first, second = server.requests
    assert (first.range, first.status, first.bytes_sent) == (None, 200, SIZE // 3)
    # It resumes from what it had kept, give or take the read that the drop cut short.
    assert second.status == 206
    resumed_from = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert SIZE // 4 < resumed_from <= SIZE // 3
    assert server.bytes_sent < 2 * SIZE


def test_server_ignoring_range_restarts_cleanly(http_server, payload: Path, tmp_path: Path) -> None:
    server = http_server(payload.parent)
    server.honour_range = False
    server.drop_after(SIZE // 2)

    got = fetch(f"{server.url}/{payload.name}", tmp_path / "dl", backoff=0.01, progress=False)

    assert got.read_bytes() == payload.read_bytes()
    assert [r.status for r in server.requests] == [200, 200]


def test_server_errors_are_retried(http_server, payload: Path, tmp_path: Path) -> None:
    server = http_server(payload.parent)
    server.fail_next(503, times=2)

    got = fetch(f"{server.url}/{payload.name}", tmp_path / "dl", backoff=0.01, progress=False)

    assert got.read_bytes() == payload.read_bytes()
    assert [r.status for r in server.requests] == [503, 503, 200]


def test_persistent_server_errors_give_up(http_server, payload: Path, tmp_path: Path) -> None:
    server = http_server(payload.parent)
    server.fail_next(500, times=10)

    with pytest.raises(UserError, match=r"failed after 3 attempts: http 500"):
        fetch(f"{server.url}/{payload.name}", tmp_path / "dl", retries=2, backoff=0.01)
    assert len(server.requests) == 3


def test_checksum_mismatch_is_refused_and_nothing_kept(
    http_server, payload: Path, tmp_path: Path
) -> None:
    server = http_server(payload.parent)
    downloads = tmp_path / "downloads"
    url = f"{server.url}/{payload.name}"

    with pytest.raises(UserError) as err:
        fetch(url, downloads, sha256="ab" * 32, progress=False)

    assert str(err.value) == (
        f"checksum mismatch for {url}: expected {'ab' * 32}, got {_sha(payload)}"
    )
    assert list(downloads.iterdir()) == []  # neither the file nor its .part


def test_404_is_a_user_error_at_once(http_server, payload: Path, tmp_path: Path) -> None:
    server = http_server(payload.parent)
    url = f"{server.url}/missing.tar.gz"

    started = time.monotonic()
    with pytest.raises(UserError, match=f"http 404 for {url}"):
        fetch(url, tmp_path / "dl", progress=False)

    assert time.monotonic() - started < 2
    assert len(server.requests) == 1  # not retried


def test_complete_download_is_not_fetched_again(http_server, payload: Path, tmp_path: Path) -> None:
    server = http_server(payload.parent)
    url = f"{server.url}/{payload.name}"
    fetch(url, tmp_path / "dl", sha256=_sha(payload), progress=False)

    fetch(url, tmp_path / "dl", sha256=_sha(payload), progress=False)

    assert len(server.requests) == 1


def test_unreachable_http_server_is_a_user_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/data.zip"
    with pytest.raises(UserError, match=f"download of {url} failed after 2 attempts"):
        fetch(url, tmp_path / "dl", retries=1, backoff=0.01)


# ---------------------------------------------------------------- s3


@pytest.fixture
def bucket(moto_server: str, aws_credentials: None) -> str:
    name = f"wavefoundry-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def _put(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key=key, Body=data)


@pytest.mark.slow
def test_s3_download_is_byte_identical(
    moto_server: str, bucket: str, payload: Path, tmp_path: Path
) -> None:
    _put(moto_server, bucket, f"datasets/{payload.name}", payload.read_bytes())
    storage = StorageConfig(s3_endpoint_url=moto_server)
    downloads = tmp_path / "downloads"

    got = fetch(
        f"s3://{bucket}/datasets/{payload.name}",
        downloads,
        sha256=_sha(payload),
        storage=storage,
        progress=False,
    )

    assert got == downloads / payload.name
    assert got.read_bytes() == payload.read_bytes()
    assert sorted(p.name for p in downloads.iterdir()) == [payload.name, payload.name + ".source"]


@pytest.mark.slow
def test_s3_missing_key_names_uri_and_endpoint(
    moto_server: str, bucket: str, tmp_path: Path
) -> None:
    uri = f"s3://{bucket}/no/such.zip"
    storage = StorageConfig(s3_endpoint_url=moto_server)

    with pytest.raises(
        UserError, match=f"no such key 'no/such.zip': {uri} \\(endpoint {moto_server}\\)"
    ):
        fetch(uri, tmp_path / "dl", storage=storage, retries=0)


@pytest.mark.slow
def test_s3_missing_bucket_names_it(
    moto_server: str, aws_credentials: None, tmp_path: Path
) -> None:
    storage = StorageConfig(s3_endpoint_url=moto_server)

    with pytest.raises(UserError, match="no such bucket 'not-a-bucket-here'"):
        fetch("s3://not-a-bucket-here/a.zip", tmp_path / "dl", storage=storage, retries=0)


def test_s3_unreachable_endpoint_is_a_user_error(aws_credentials: None, tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    storage = StorageConfig(s3_endpoint_url=endpoint)

    started = time.monotonic()
    with pytest.raises(UserError, match=f"s3://b/k.zip \\(endpoint {endpoint}\\)"):
        fetch("s3://b/k.zip", tmp_path / "dl", storage=storage, retries=0)
    assert time.monotonic() - started < 5


# ---------------------------------------------------------------- resolve_sources


def test_resolve_sources_fetches_checks_and_extracts(http_server, tmp_path: Path) -> None:
    served = tmp_path / "served"
    (served / "LJSpeech-1.1" / "wavs").mkdir(parents=True)
    (served / "LJSpeech-1.1" / "metadata.csv").write_text("LJ001-0001|Hi.|Hi.\n")
    (served / "LJSpeech-1.1" / "wavs" / "LJ001-0001.wav").write_bytes(os.urandom(5000))
    archive = served / "LJSpeech-1.1.tar.bz2"
    with tarfile.open(archive, "w:bz2") as tar:
        tar.add(served / "LJSpeech-1.1", "LJSpeech-1.1")
    local_dir = tmp_path / "already-local"
    local_dir.mkdir()
    server = http_server(served)
    raw, downloads = tmp_path / "raw", tmp_path / "downloads"

    dirs = resolve_sources(
        [f"{server.url}/{archive.name}", str(local_dir)],
        raw,
        downloads,
        sha256={archive.name: _sha(archive)},  # looked up by file name
        storage=StorageConfig(),
        max_bytes=10**6,
        progress=False,
    )

    assert dirs == [raw / "LJSpeech-1.1", local_dir]
    got = raw / "LJSpeech-1.1" / "LJSpeech-1.1" / "wavs" / "LJ001-0001.wav"
    assert got.read_bytes() == (served / "LJSpeech-1.1" / "wavs" / "LJ001-0001.wav").read_bytes()


def test_resolve_sources_refuses_a_bad_checksum_by_url(
    http_server, payload: Path, tmp_path: Path
) -> None:
    server = http_server(payload.parent)
    url = f"{server.url}/{payload.name}"

    with pytest.raises(UserError, match="checksum mismatch"):
        resolve_sources(
            [url],
            tmp_path / "raw",
            tmp_path / "downloads",
            sha256={url: "0" * 64},
            storage=StorageConfig(),
            max_bytes=10**6,
            progress=False,
        )
    assert not (tmp_path / "raw").exists()


# ---------------------------------------------------------------- Content-Encoding


@pytest.fixture
def ljspeech_tgz(sample_corpora, tmp_path: Path) -> Path:
    """The sample LJ Speech corpus as the .tar.gz a web server holds."""
    served = tmp_path / "served"
    served.mkdir()
    archive = served / "LJSpeech-1.1.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(sample_corpora["ljspeech"], "LJSpeech-1.1")
    return archive


@pytest.mark.parametrize("case", ["gzip", "x-gzip", "gzip, dropped and resumed"])
def test_downloads_save_the_bytes_as_served_even_with_content_encoding(
    http_server, ljspeech_tgz: Path, tmp_path: Path, case: str
) -> None:
    """A server that maps .gz to `Content-Encoding: gzip` (Apache's AddEncoding, S3 metadata):
    the file is the .tar.gz, not what decompressing it gives."""
    from wavefoundry.config import DatasetConfig
    from wavefoundry.data import get_adapter

    server = http_server(ljspeech_tgz.parent)
    server.content_encoding = case.split(",")[0]
    if "resumed" in case:
        server.drop_after(ljspeech_tgz.stat().st_size // 2)
    downloads = tmp_path / "downloads"

    [unpacked] = resolve_sources(
        [f"{server.url}/{ljspeech_tgz.name}"],
        tmp_path / "raw",
        downloads,
        sha256={ljspeech_tgz.name: _sha(ljspeech_tgz)},
        storage=StorageConfig(),
        max_bytes=2**30,
        progress=False,
    )

    assert (downloads / ljspeech_tgz.name).read_bytes() == ljspeech_tgz.read_bytes()
    # One request (two with the drop): no retry blaming a short transfer.
    assert [r.status for r in server.requests] == ([200, 206] if "resumed" in case else [200])
    rows = get_adapter("ljspeech").list_clips([unpacked], DatasetConfig())
    assert len(rows) == 12 and {r["status"] for r in rows} == {"ok"}


def test_the_revision_probe_describes_the_bytes_a_download_saves(
    http_server, ljspeech_tgz: Path, tmp_path: Path
) -> None:
    from wavefoundry.data.download import source_revision

    server = http_server(ljspeech_tgz.parent)
    url = f"{server.url}/{ljspeech_tgz.name}"

    def revision() -> str:
        return source_revision([url], sha256={}, storage=StorageConfig())

    plain = revision()
    # The operator turns on compression (nginx `gzip on`): the file, and its revision, stay.
    server.gzip_on_the_fly = True
    assert revision() == plain
    got = fetch(url, tmp_path / "dl", progress=False)
    assert got.read_bytes() == ljspeech_tgz.read_bytes()
    # ... or labels .gz files with Content-Encoding: the same bytes, the same revision.
    server.gzip_on_the_fly, server.content_encoding = False, "gzip"
    assert revision() == plain
    # Probe and download asked for the same representation of the file.
    assert {r.accept_encoding for r in server.requests} == {"identity"}


@pytest.mark.slow
def test_s3_object_stored_with_content_encoding_downloads_as_stored(
    moto_server: str, bucket: str, ljspeech_tgz: Path, tmp_path: Path
) -> None:
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1")
    key = f"datasets/{ljspeech_tgz.name}"
    client.put_object(
        Bucket=bucket, Key=key, Body=ljspeech_tgz.read_bytes(), ContentEncoding="gzip"
    )
    storage = StorageConfig(s3_endpoint_url=moto_server)

    got = fetch(f"s3://{bucket}/{key}", tmp_path / "dl", sha256=_sha(ljspeech_tgz), storage=storage)

    assert got.read_bytes() == ljspeech_tgz.read_bytes()
