"""Getting a dataset onto local disk: fetch a source, check it, unpack it safely.

A source is a local path (or `file://` URL), an `http(s)://` URL or an `s3://bucket/key` URI.

- `fetch` downloads through a `<name>.part` file, resumes HTTP downloads with `Range` after a
  dropped connection, retries transient failures with exponential backoff, verifies sha256,
  and renames the file into place only once it is complete.
- `extract` unpacks tar (plain, gz, bz2, xz) and zip archives. It checks every member before
  writing anything (no absolute paths, no `..`, no links out of the tree, no device files, a
  bound on the expanded size), counts the bytes it really writes, and builds the tree in a
  temporary folder that is renamed into place, so a half-extracted tree never looks finished.
- `resolve_sources` is what `wavefoundry ingest` calls: fetch each source, unpack archives,
  and return the local directories the dataset adapters search.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

import boto3
import requests
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from wavefoundry.config import StorageConfig
from wavefoundry.errors import UserError

CHUNK = 1 << 20
# Small on purpose: a read cut short by a dropped connection loses the whole chunk it was in.
HTTP_CHUNK = 1 << 16
HTTP_TIMEOUT = (10.0, 60.0)  # seconds: (connect, between bytes)
S3_TIMEOUT = 10.0
MARKER = ".wavefoundry-extracted"
ARCHIVE_SUFFIXES = (".tar.bz2", ".tar.gz", ".tar.xz", ".tbz2", ".tgz", ".tar", ".zip")


Advance = Callable[[int], object]  # progress callback: bytes just written


class UnsafeArchiveError(UserError):
    """An archive with a member that would land outside its folder, or expand too far."""


# --------------------------------------------------------------------------- progress


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _progress_bar(enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


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
        raise UserError(f"checksum mismatch for {source}: expected {expected}, got {actual}")


def _already_there(final: Path, sha256: str | None) -> bool:
    return final.is_file() and (sha256 is None or sha256_of(final) == sha256)


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
    path is a file). URLs and s3:// URIs are downloaded into `dest_dir`; a file already there
    that matches `sha256` (or any file there, when no checksum is known) is not fetched again.
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
    if _already_there(final, sha256):
        return final
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    with requests.Session() as session, _progress_bar(_show_progress(progress)) as bar:
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
    part.replace(final)
    return final


def _http_attempt(
    session: requests.Session, url: str, part: Path, bar: Progress, task: TaskID
) -> None:
    """One request, resuming from whatever `part` holds; returns only once `part` is whole."""
    have = part.stat().st_size if part.exists() else 0
    # identity: Content-Length and Range must count the bytes we store, not gzip's.
    headers = {"Accept-Encoding": "identity"}
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
            for chunk in resp.iter_content(HTTP_CHUNK):
                f.write(chunk)
                bar.advance(task, len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise _Transient(f"connection ended at byte {size} of {total}")


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
    parsed = urlparse(uri)
    bucket, key = parsed.netloc, parsed.path.lstrip("/")
    if not bucket or not key:
        raise UserError(f"bad s3 URI {uri}: expected s3://bucket/key")
    final = dest_dir / _file_name(uri, key)
    if _already_there(final, sha256):
        return final
    where = f"{uri} (endpoint {storage.s3_endpoint_url or 'AWS'})"
    config = BotoConfig(
        connect_timeout=S3_TIMEOUT,
        read_timeout=S3_TIMEOUT * 6,
        retries={"max_attempts": retries + 1, "mode": "standard"},
    )
    # A fresh session: the default one caches credentials from the first client it makes.
    client = boto3.session.Session().client(
        "s3", endpoint_url=storage.s3_endpoint_url, region_name=storage.s3_region, config=config
    )
    dest_dir.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    try:
        size = _s3_size(client, bucket, key, where)
        with _progress_bar(_show_progress(progress)) as bar:
            task = bar.add_task(final.name, total=size)
            client.download_file(
                bucket,
                key,
                str(part),
                Callback=lambda n: bar.advance(task, n),
                Config=TransferConfig(num_download_attempts=retries + 1),
            )
    except ClientError as err:
        code = _s3_code(err)
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
            raise UserError(f"access denied ({code}) to {where}: check the credentials") from None
        raise UserError(f"s3 error {code} for {where}") from None
    except (BotoCoreError, Boto3Error) as err:
        raise UserError(f"cannot download {where}: {err}") from None
    if sha256 is not None:
        _verify(part, sha256, uri, delete=True)
    part.replace(final)
    return final


def _s3_size(client, bucket: str, key: str, where: str) -> int:
    try:
        return client.head_object(Bucket=bucket, Key=key)["ContentLength"]
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


# --------------------------------------------------------------------------- extract


def extract(archive: Path, dest: Path, *, max_bytes: int, progress: bool | None = None) -> Path:
    """Unpack `archive` into `dest` (created) and return `dest`.

    Every member is checked before anything is written; an unsafe one raises
    `UnsafeArchiveError` naming it. A `dest` already extracted from this same archive (same size
    and mtime, recorded in its marker file) is left as it is.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise UserError(f"archive not found: {archive}")
    stamp = _stamp(archive)
    if _read_marker(dest) == stamp:
        return dest
    try:
        with _open_archive(archive) as reader:
            members = reader.check(max_bytes)
            dest.parent.mkdir(parents=True, exist_ok=True)
            with _staging_dir(dest) as staging:
                bound = _Bound(archive, max_bytes)
                with _progress_bar(_show_progress(progress)) as bar:
                    task = bar.add_task(f"extract {archive.name}", total=reader.declared)
                    reader.write(members, staging, bound, lambda n: bar.advance(task, n))
                (staging / MARKER).write_text(json.dumps(stamp), encoding="utf-8")
                _swap_into_place(staging, dest)
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise UserError(f"corrupt archive {archive}: {err}") from None
    except OSError as err:  # e.g. disk full, or a member name clashing with a folder
        raise UserError(f"cannot extract {archive} into {dest}: {err}") from None
    return dest


def _stamp(archive: Path) -> dict[str, object]:
    info = archive.stat()
    return {"archive": archive.name, "size": info.st_size, "mtime_ns": info.st_mtime_ns}


def _read_marker(dest: Path) -> object:
    try:
        return json.loads((dest / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _staging_dir(dest: Path) -> Iterator[Path]:
    """A hidden temporary folder beside `dest`, removed unless it was renamed into place."""
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    staging.chmod(0o755)  # mkdtemp's 0o700 would hide the dataset from other users
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_into_place(staging: Path, dest: Path) -> None:
    if dest.exists() or dest.is_symlink():
        # A stale tree (another archive version, or no marker): move it aside, then drop it.
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
        os.replace(dest, old / dest.name)
        os.replace(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, dest)


class _Bound:
    """Counts the bytes really written and stops once they pass `max_bytes`."""

    def __init__(self, archive: Path, max_bytes: int) -> None:
        self.archive, self.max_bytes, self.written = archive, max_bytes, 0

    def copy(self, src: IO[bytes], target: Path, member: str, advance: Advance) -> None:
        # Replace, never follow, whatever is already at `target` (a duplicate member name).
        if target.is_symlink() or target.exists():
            target.unlink()
        with target.open("xb") as out:
            while chunk := src.read(CHUNK):
                self.written += len(chunk)
                if self.written > self.max_bytes:
                    raise UnsafeArchiveError(
                        f"{self.archive}: member {member!r} expands past the bound of "
                        f"{self.max_bytes} bytes"
                    )
                out.write(chunk)
                advance(len(chunk))


def _unsafe(archive: Path, member: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"{archive}: unsafe member {member!r}: {why}")


def _path_problem(name: str) -> str | None:
    """Why a member name cannot be extracted under the destination, or None."""
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' in path"
    return None


def _parts(name: str) -> list[str]:
    return [p for p in name.split("/") if p not in ("", ".")]


def _check_size(archive: Path, sizes: dict[str, int], max_bytes: int) -> int:
    total = sum(sizes.values())
    if total > max_bytes:
        largest = max(sizes, key=sizes.__getitem__)
        raise UnsafeArchiveError(
            f"{archive} expands to {total} bytes, more than the bound {max_bytes} "
            f"(largest member {largest!r})"
        )
    return total


@contextlib.contextmanager
def _open_archive(archive: Path) -> Iterator[_TarReader | _ZipReader]:
    # By content first: a download's name need not say what it is.
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive, "r:*") as tar:
            yield _TarReader(archive, tar)
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            yield _ZipReader(archive, zf)
    else:
        raise UserError(f"not a supported archive (tar, tar.gz, tar.bz2, tar.xz, zip): {archive}")


class _TarReader:
    def __init__(self, archive: Path, tar: tarfile.TarFile) -> None:
        self.archive, self.tar, self.declared = archive, tar, 0

    def check(self, max_bytes: int) -> list[tarfile.TarInfo]:
        members = self.tar.getmembers()
        symlinks = {"/".join(_parts(m.name)): m.linkname for m in members if m.issym()}
        files_before: set[str] = set()
        sizes: dict[str, int] = {}
        for m in members:
            problem = _tar_problem(m, symlinks, files_before)
            if problem is not None:
                raise _unsafe(self.archive, m.name, problem)
            if m.isreg():
                files_before.add("/".join(_parts(m.name)))
                sizes[m.name] = sizes.get(m.name, 0) + m.size
        self.declared = _check_size(self.archive, sizes, max_bytes)
        return members

    def write(
        self, members: list[tarfile.TarInfo], root: Path, bound: _Bound, advance: Advance
    ) -> None:
        for m in members:
            target = root.joinpath(*_parts(m.name))
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if m.issym():
                os.symlink(m.linkname, target)
            elif m.islnk():
                os.link(root.joinpath(*_parts(m.linkname)), target, follow_symlinks=False)
            else:
                src = self.tar.extractfile(m)
                assert src is not None  # a regular member always has data
                bound.copy(src, target, m.name, advance)
                # As tarfile's "data" filter does: keep exec bits, drop setuid/setgid/sticky.
                target.chmod((m.mode & 0o755) | 0o600)


def _tar_problem(
    m: tarfile.TarInfo, symlinks: dict[str, str], files_before: set[str]
) -> str | None:
    """Why a tar member is unsafe to extract, or None."""
    if problem := _path_problem(m.name):
        return problem
    if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
        return "device file, FIFO or other special member"
    parts = _parts(m.name)
    if any("/".join(parts[:i]) in symlinks for i in range(1, len(parts))):
        return "path goes through a symlink in the archive"
    if m.issym() and (
        m.linkname.startswith("/") or _resolve(parts[:-1] + m.linkname.split("/"), symlinks) is None
    ):
        return f"symlink to {m.linkname!r} points outside the destination"
    # A hard link may only name a regular file extracted before it: then os.link always succeeds
    # and nothing is copied (tarfile copies the target, outside any bound, when it cannot link).
    if m.islnk() and (
        _path_problem(m.linkname) or "/".join(_parts(m.linkname)) not in files_before
    ):
        return f"hard link to {m.linkname!r} is not an earlier file in the archive"
    return _data_filter_problem(m)


def _data_filter_problem(member: tarfile.TarInfo) -> str | None:
    """A second opinion from tarfile's own "data" filter (Python >= 3.11.4), when it exists."""
    data_filter = getattr(tarfile, "data_filter", None)
    if data_filter is None:
        return None
    try:
        # A folder that does not exist: the filter then judges the names alone.
        data_filter(member, os.path.join(tempfile.gettempdir(), ".wavefoundry-no-such-dir"))
    except tarfile.FilterError as err:
        return f"refused by tarfile's data filter: {err}"
    return None


def _resolve(parts: list[str], symlinks: dict[str, str], depth: int = 0) -> list[str] | None:
    """Where a path inside the archive really lands, following the archive's own symlinks.

    Returns its components under the destination, or None if it leaves the destination.
    """
    out: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(part)
        link = symlinks.get("/".join(out))
        if link is not None:
            if depth > 32 or link.startswith("/"):
                return None  # a loop, or an absolute target
            resolved = _resolve(out[:-1] + link.split("/"), symlinks, depth + 1)
            if resolved is None:
                return None
            out = resolved
    return out


class _ZipReader:
    def __init__(self, archive: Path, zf: zipfile.ZipFile) -> None:
        self.archive, self.zip, self.declared = archive, zf, 0

    def check(self, max_bytes: int) -> list[zipfile.ZipInfo]:
        members = self.zip.infolist()
        sizes: dict[str, int] = {}
        for info in members:
            problem = _zip_problem(info)
            if problem is not None:
                raise _unsafe(self.archive, info.filename, problem)
            sizes[info.filename] = sizes.get(info.filename, 0) + info.file_size
        self.declared = _check_size(self.archive, sizes, max_bytes)
        return members

    def write(
        self, members: list[zipfile.ZipInfo], root: Path, bound: _Bound, advance: Advance
    ) -> None:
        # A zip "symlink" (a unix mode in external_attr) is written as the small file it is, as
        # zipfile itself does: nothing in a zip becomes a link.
        for info in members:
            target = root.joinpath(*_parts(info.filename))
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.zip.open(info) as src:
                bound.copy(src, target, info.filename, advance)


def _zip_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is unsafe to extract, or None."""
    if problem := _path_problem(info.filename):
        return problem
    if info.flag_bits & 0x1:
        return "encrypted"
    mode = info.external_attr >> 16
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        return "device file or FIFO"
    return None


# --------------------------------------------------------------------------- sources


def _source_name(source: str) -> str:
    path = urlparse(source).path if "://" in source else source
    return PurePosixPath(path.replace("\\", "/")).name


def archive_stem(name: str) -> str:
    """`LJSpeech-1.1.tar.bz2` -> `LJSpeech-1.1`; a name without a known suffix gets `.d`."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name + ".d"


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
