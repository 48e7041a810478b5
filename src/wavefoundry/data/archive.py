"""Unpacking a dataset archive safely.

`extract` unpacks tar (plain, gz, bz2, xz) and zip archives. It checks every member before
writing anything (no absolute paths, no `..`, no links out of the tree, no device files, a bound
on the expanded size), counts the bytes it really writes, and builds the tree in a temporary
folder that is renamed into place, so a half-extracted tree never looks finished. A marker file
in the tree names the archive it came from, so the same archive is not unpacked twice. Zip names
with "\\" separators (made on Windows) are read as Info-ZIP's `unzip` reads them
(`zip_member_name`), before the checks. `archive_stem` names the folder an archive unpacks into.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from wavefoundry.errors import UserError

CHUNK = 1 << 20
MARKER = ".wavefoundry-extracted"
ARCHIVE_SUFFIXES = (".tar.bz2", ".tar.gz", ".tar.xz", ".tbz2", ".tgz", ".tar", ".zip")


Advance = Callable[[int], object]  # progress callback: bytes just written


class UnsafeArchiveError(UserError):
    """An archive with a member that would land outside its folder, or expand too far."""


# --------------------------------------------------------------------------- progress


def byte_progress(progress: bool | None) -> Progress:
    """A bar counting bytes (extracted here, downloaded in `download`) on stderr; with `progress`
    None, drawn only on a terminal."""
    enabled = sys.stderr.isatty() if progress is None else progress
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )


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
                with byte_progress(progress) as bar:
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


# --------------------------------------------------------------------------- member checks


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


# --------------------------------------------------------------------------- tar and zip


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
        named = next((k for k in ARCHIVE_SUFFIXES if archive.name.lower().endswith(k)), None)
        if named:  # not "unsupported": the name says it is one we read
            raise UserError(
                f"{archive} is named {named} but does not read as one: corrupt or cut short? "
                "fetch it again"
            )
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


# zipfile's `create_system` of MS-DOS and Windows FAT: the host whose names may use "\\".
_FAT_HOST = 0


def zip_member_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name with "/" separators, as Info-ZIP's `unzip` reads it: a name made on an
    MS-DOS/Windows (FAT) host with no "/" in it uses "\\" as its separator (old Windows tools,
    PowerShell's Compress-Archive); any other name is taken as it is. The safety checks then see
    the normalised name."""
    name = info.filename
    if info.create_system == _FAT_HOST and "/" not in name:
        return name.replace("\\", "/")
    return name


class _ZipReader:
    def __init__(self, archive: Path, zf: zipfile.ZipFile) -> None:
        self.archive, self.zip, self.declared = archive, zf, 0

    def check(self, max_bytes: int) -> list[tuple[str, zipfile.ZipInfo]]:
        members = [(zip_member_name(info), info) for info in self.zip.infolist()]
        sizes: dict[str, int] = {}
        for name, info in members:
            problem = _zip_problem(name, info)
            if problem is not None:
                raise _unsafe(self.archive, info.filename, problem)
            sizes[name] = sizes.get(name, 0) + info.file_size
        self.declared = _check_size(self.archive, sizes, max_bytes)
        return members

    def write(
        self,
        members: list[tuple[str, zipfile.ZipInfo]],
        root: Path,
        bound: _Bound,
        advance: Advance,
    ) -> None:
        # A zip "symlink" (a unix mode in external_attr) is written as the small file it is, as
        # zipfile itself does: nothing in a zip becomes a link.
        for name, info in members:
            target = root.joinpath(*_parts(name))
            if name.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with self.zip.open(info) as src:
                bound.copy(src, target, name, advance)


def _zip_problem(name: str, info: zipfile.ZipInfo) -> str | None:
    """Why a zip member (`name` as `zip_member_name` reads it) is unsafe to extract, or None."""
    if problem := _path_problem(name):
        return problem
    if info.flag_bits & 0x1:
        return "encrypted"
    mode = info.external_attr >> 16
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        return "device file or FIFO"
    return None


# --------------------------------------------------------------------------- names


def archive_stem(name: str) -> str:
    """`LJSpeech-1.1.tar.bz2` -> `LJSpeech-1.1`; a name without a known suffix gets `.d`."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name + ".d"
