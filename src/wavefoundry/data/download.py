"""Getting a dataset onto local disk: fetch a source, check it, unpack it.

A source is a local path (or `file://` URL), an `http(s)://` URL or an `s3://bucket/key` URI.

- `fetch` downloads through a `<name>.part` file, resumes HTTP downloads with `Range` after a
  dropped connection, retries transient failures with exponential backoff, verifies sha256,
  and renames the file into place only once it is complete.
- `resolve_sources` is what `wavefoundry ingest` calls: fetch each source, unpack archives
  (safely: see `wavefoundry.data.archive`, whose `extract`, `UnsafeArchiveError` and
  `archive_stem` are importable from here too), and return the local directories the dataset
  adapters search.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import boto3
import requests
import urllib3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from rich.progress import Progress, TaskID

from wavefoundry.config import StorageConfig
from wavefoundry.data.archive import (
    CHUNK,
    UnsafeArchiveError,
    archive_stem,
    byte_progress,
    extract,
)
from wavefoundry.data.layout import visible_files
from wavefoundry.errors import UserError

# Small on purpose: a read cut short by a dropped connection loses the whole chunk it was in.
HTTP_CHUNK = 1 << 16
HTTP_TIMEOUT = (10.0, 60.0)  # seconds: (connect, between bytes)
# The download and the revision probe ask for the same representation: the bytes of the file.
# Content-Length, Range and ETag then all describe what is saved.
HTTP_HEADERS = {"Accept-Encoding": "identity"}
S3_TIMEOUT = 10.0


# --------------------------------------------------------------------------- checksums


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _normalise_sha(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    return sha256.strip().lower().removeprefix("sha256:")


def _verify(path: Path, expected: str, source: str, *, delete: bool) -> None:
    actual = sha256_of(path)
    if actual != expected:
        if delete:
            path.unlink(missing_ok=True)
            _source_record(path).unlink(missing_ok=True)
        raise UserError(f"checksum mismatch for {source}: expected {expected}, got {actual}")


def _source_record(final: Path) -> Path:
    """Beside each download, the URL or URI it came from (`NAME.source`)."""
    return final.with_name(final.name + ".source")


def _came_from(path: Path, source: str) -> bool:
    """Whether `path`'s record names `source`."""
    record = _source_record(path)
    return record.is_file() and record.read_text(encoding="utf-8").strip() == source


def _already_there(final: Path, sha256: str | None, source: str) -> bool:
    """A download to use again: it matches `sha256`, or, with no checksum known, it came from
    this same `source` (a file of the same name from another URL is fetched over)."""
    if not final.is_file():
        return False
    if sha256 is not None:
        return sha256_of(final) == sha256
    return _came_from(final, source)


def _start_part(part: Path, source: str) -> None:
    """A `.part` is resumed only from the source it came from (`NAME.part.source`): one left
    by a download from another URL is started over, not completed with this one's bytes."""
    if part.exists() and not _came_from(part, source):
        part.unlink()
    _source_record(part).write_text(source + "\n", encoding="utf-8")


def _keep(part: Path, final: Path, source: str) -> Path:
    """The finished `.part` becomes the download, with the record of where it came from."""
    part.replace(final)
    _source_record(part).replace(_source_record(final))
    return final


# --------------------------------------------------------------------------- fetch


def fetch(
    source: str,
    dest_dir: Path,
    *,
    sha256: str | None = None,
    storage: StorageConfig = StorageConfig(),  # noqa: B008 - never mutated here
    retries: int = 5,
    backoff: float = 0.5,
    progress: bool | None = None,
) -> Path:
    """Make `source` available on local disk and return its path.

    Local paths are returned as they are (checked against `sha256` when it is given and the
    path is a file). URLs and s3:// URIs are downloaded into `dest_dir`, each with a
    `NAME.source` file naming where it came from; a file already there that matches `sha256`
    (or, when no checksum is known, that came from this same source) is not fetched again,
    and an unfinished `NAME.part` is resumed only from the source it came from.
    """
    sha256 = _normalise_sha(sha256)
    scheme = urlparse(source).scheme.lower() if "://" in source else ""
    if scheme in ("", "file"):
        return _local(source, sha256)
    if scheme in ("http", "https"):
        return _fetch_http(source, Path(dest_dir), sha256, retries, backoff, progress)
    if scheme == "s3":
        return _fetch_s3(source, Path(dest_dir), sha256, storage, retries, progress)
    raise UserError(f"unsupported source {source}: expected a path, http(s):// URL or s3:// URI")


def _local(source: str, sha256: str | None) -> Path:
    path = Path(url2pathname(urlparse(source).path)) if source.startswith("file:") else Path(source)
    if not path.exists():
        raise UserError(f"source not found: {path}")
    if sha256 is not None and path.is_file():
        _verify(path, sha256, source, delete=False)
    return path


def _file_name(source: str, path: str) -> str:
    name = unquote(PurePosixPath(path).name)
    if name in ("", ".", "..") or "/" in name or "\\" in name:
        raise UserError(f"cannot tell a file name from {source}")
    return name


# --------------------------------------------------------------------------- http(s)


class _Transient(Exception):
    """A failure worth retrying: a 5xx answer or a body that ended early."""


_RETRYABLE = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    _Transient,
)


def _fetch_http(
    url: str,
    dest_dir: Path,
    sha256: str | None,
    retries: int,
    backoff: float,
    progress: bool | None,
) -> Path:
    final = dest_dir / _file_name(url, urlparse(url).path)
    if _already_there(final, sha256, url):
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    _start_part(part, url)
    with requests.Session() as session, byte_progress(progress) as bar:
        task = bar.add_task(final.name, total=None)
        for attempt in range(retries + 1):
            try:
                _http_attempt(session, url, part, bar, task)
                break
            except _RETRYABLE as err:
                if attempt == retries:
                    tries = f"{attempt + 1} attempt" + ("s" if attempt else "")
                    raise UserError(
                        f"download of {url} failed after {tries}: {_reason(err)}"
                    ) from None
                time.sleep(backoff * 2**attempt)
            except requests.RequestException as err:
                raise UserError(f"cannot download {url}: {err}") from None
    if sha256 is not None:
        _verify(part, sha256, url, delete=True)
    return _keep(part, final, url)


def _http_attempt(
    session: requests.Session, url: str, part: Path, bar: Progress, task: TaskID
) -> None:
    """One request, resuming from whatever `part` holds; returns only once `part` is whole."""
    have = part.stat().st_size if part.exists() else 0
    headers = dict(HTTP_HEADERS)
    if have:
        headers["Range"] = f"bytes={have}-"
    with session.get(url, headers=headers, stream=True, timeout=HTTP_TIMEOUT) as resp:
        status = resp.status_code
        if status == 416 and have:
            total = _range_total(resp.headers.get("Content-Range", ""))
            if total in (None, have):
                return  # the .part already holds the whole file
            part.unlink()
            raise _Transient(f"{part.name} holds {have} bytes but the file has {total}")
        if status >= 500:
            raise _Transient(f"http {status}")
        if status >= 400:
            raise UserError(f"http {status} for {url}")
        if status == 206:
            start = _range_start(resp.headers.get("Content-Range", ""))
            if start != have:
                part.unlink()
                raise _Transient(f"asked for bytes from {have}, server sent from {start}")
            total = _range_total(resp.headers.get("Content-Range", ""))
            mode = "ab"
        else:  # 200: no resume (first request, or the server ignored Range)
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        bar.update(task, total=total, completed=have)
        with part.open(mode) as f:
            for chunk in _body_as_served(resp):
                f.write(chunk)
                bar.advance(task, len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Transient(f"connection ended at byte {size} of {total}")


def _body_as_served(resp: requests.Response) -> Iterator[bytes]:
    """The response body as the server sent it, never decoded: a `.tar.gz` that a server labels
    `Content-Encoding: gzip` (as many do, despite `Accept-Encoding: identity`) is saved as the
    `.tar.gz` it is, and its length matches Content-Length and Range. urllib3's errors become
    requests' own, as `iter_content` would raise them."""
    try:
        yield from resp.raw.stream(HTTP_CHUNK, decode_content=False)
    except urllib3.exceptions.ProtocolError as err:
        raise requests.exceptions.ChunkedEncodingError(err) from None
    except urllib3.exceptions.ReadTimeoutError as err:
        raise requests.ConnectionError(err) from None
    except urllib3.exceptions.SSLError as err:
        raise requests.exceptions.SSLError(err) from None


def _reason(err: Exception) -> str:
    # requests wraps urllib3's MaxRetryError, whose `reason` is the error that matters.
    reason = getattr(err.args[0], "reason", None) if err.args else None
    return str(reason or err)


def _range_start(content_range: str) -> int | None:
    match = re.fullmatch(r"bytes (\d+)-\d+/(\d+|\*)", content_range.strip())
    return int(match.group(1)) if match else None


def _range_total(content_range: str) -> int | None:
    match = re.fullmatch(r"bytes (?:\d+-\d+|\*)/(\d+)", content_range.strip())
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------- s3


def _fetch_s3(
    uri: str,
    dest_dir: Path,
    sha256: str | None,
    storage: StorageConfig,
    retries: int,
    progress: bool | None,
) -> Path:
    bucket, key = _s3_location(uri)
    final = dest_dir / _file_name(uri, key)
    if _already_there(final, sha256, uri):
        return final
    where = f"{uri} (endpoint {storage.s3_endpoint_url or 'AWS'})"
    client = _s3_client(storage, retries)
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    _start_part(part, uri)
    try:
        size = _s3_head(client, bucket, key, where)["ContentLength"]
        with byte_progress(progress) as bar:
            task = bar.add_task(final.name, total=size)
            client.download_file(
                bucket,
                key,
                str(part),
                Callback=lambda n: bar.advance(task, n),
                Config=TransferConfig(num_download_attempts=retries + 1),
            )
    except ClientError as err:
        raise _s3_error(err, where) from None
    except (BotoCoreError, Boto3Error) as err:
        raise UserError(f"cannot download {where}: {err}") from None
    if sha256 is not None:
        _verify(part, sha256, uri, delete=True)
    return _keep(part, final, uri)


def _s3_client(storage: StorageConfig, retries: int = 5):
    config = BotoConfig(
        connect_timeout=S3_TIMEOUT,
        read_timeout=S3_TIMEOUT * 6,
        retries={"max_attempts": retries + 1, "mode": "standard"},
    )
    # A fresh session: the default one caches credentials from the first client it makes.
    return boto3.session.Session().client(
        "s3", endpoint_url=storage.s3_endpoint_url, region_name=storage.s3_region, config=config
    )


def _s3_location(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise UserError(f"bad s3 URI {uri}: expected s3://bucket/key")
    return bucket, key


def _s3_error(err: ClientError, where: str) -> UserError:
    code = _s3_code(err)
    if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return UserError(f"access denied ({code}) to {where}: check the credentials")
    return UserError(f"s3 error {code} for {where}")


def _s3_head(client, bucket: str, key: str, where: str) -> dict:
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as err:
        if _s3_code(err) not in ("404", "NoSuchKey"):
            raise
    # HEAD answers a bare 404 for a missing bucket and a missing key alike: ask which.
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as err:
        if _s3_code(err) in ("404", "NoSuchBucket"):
            raise UserError(f"no such bucket {bucket!r}: {where}") from None
        raise
    raise UserError(f"no such key {key!r}: {where}")


def _s3_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "unknown"))


# --------------------------------------------------------------------------- revisions


def source_revision(sources: list[str], *, sha256: dict[str, str], storage: StorageConfig) -> str:
    """A short digest that changes when the data behind `sources` changes, found without
    downloading it: a known sha256; else an http(s) server's ETag, Last-Modified and length;
    an S3 object's ETag and size; the content of a local file or folder. A scheduled pipeline
    keys its cached ingest on it, so new data is ingested and unchanged data is not."""
    seen = []
    for source in sources:
        known = _normalise_sha(sha256.get(source) or sha256.get(_source_name(source)))
        scheme = urlparse(source).scheme.lower() if "://" in source else ""
        # What the data is, not where: the same files in another folder are the same revision.
        if known:
            seen.append(["sha256", known])
        elif scheme in ("http", "https"):
            seen.append(_http_revision(source))
        elif scheme == "s3":
            seen.append(_s3_revision(source, storage))
        elif scheme in ("", "file"):
            seen.append([_local_revision(_local(source, None))])
        else:
            raise UserError(
                f"unsupported source {source}: expected a path, http(s):// URL or s3:// URI"
            )
    return hashlib.sha256(repr(seen).encode()).hexdigest()[:16]


def _http_revision(url: str) -> list[str]:
    try:
        resp = requests.head(url, headers=HTTP_HEADERS, allow_redirects=True, timeout=HTTP_TIMEOUT)
    except requests.RequestException as err:
        raise UserError(f"cannot reach {url}: {_reason(err)}") from None
    if resp.status_code >= 400:
        raise UserError(f"http {resp.status_code} for {url}")
    facts = [resp.headers.get(h, "") for h in ("ETag", "Last-Modified", "Content-Length")]
    if not any(facts):
        raise UserError(
            f"{url} gives no ETag, Last-Modified or Content-Length, so a change cannot be seen: "
            "give its sha256 (datasets.NAME.sha256) or a data revision"
        )
    return facts


def _s3_revision(uri: str, storage: StorageConfig) -> list[str]:
    bucket, key = _s3_location(uri)
    where = f"{uri} (endpoint {storage.s3_endpoint_url or 'AWS'})"
    try:
        head = _s3_head(_s3_client(storage, retries=2), bucket, key, where)
    except ClientError as err:
        raise _s3_error(err, where) from None
    except (BotoCoreError, Boto3Error) as err:
        raise UserError(f"cannot reach {where}: {err}") from None
    return [str(head.get("ETag", "")), str(head["ContentLength"])]


def _local_revision(path: Path) -> str:
    if path.is_file():
        return sha256_of(path)
    # OS junk (.DS_Store rewritten by a Finder visit) is not data: ingest ignores it, and so
    # does the revision.
    files = visible_files(path, "**/*")
    return hashlib.sha256(
        "".join(f"{p.relative_to(path).as_posix()}\0{sha256_of(p)}\n" for p in files).encode()
    ).hexdigest()


# --------------------------------------------------------------------------- sources


def _source_name(source: str) -> str:
    path = urlparse(source).path if "://" in source else source
    return PurePosixPath(path.replace("\\", "/")).name


def resolve_sources(
    sources: list[str],
    dest_root: Path,
    downloads: Path,
    *,
    sha256: dict[str, str],
    storage: StorageConfig,
    max_bytes: int,
    progress: bool | None = None,
) -> list[Path]:
    """Fetch every source and unpack the archives; return one local directory per source.

    `sha256` is looked up by the source as written, then by its file name. An archive is
    unpacked into `dest_root/<archive name without its suffix>`; a directory is returned as is.
    """
    dirs = []
    for source in sources:
        expected = sha256.get(source) or sha256.get(_source_name(source))
        local = fetch(source, downloads, sha256=expected, storage=storage, progress=progress)
        if local.is_dir():
            dirs.append(local)
        else:
            dest = Path(dest_root) / archive_stem(local.name)
            dirs.append(extract(local, dest, max_bytes=max_bytes, progress=progress))
    return dirs


__all__ = [
    "UnsafeArchiveError",
    "archive_stem",
    "extract",
    "fetch",
    "resolve_sources",
    "sha256_of",
    "source_revision",
]
