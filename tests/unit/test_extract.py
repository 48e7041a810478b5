"""Safe extraction: hostile archives are refused before anything is written; good ones unpack."""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
import tarfile
import uuid
import zipfile
from pathlib import Path

import pytest

from wavefoundry.data.archive import MARKER, UnsafeArchiveError, extract
from wavefoundry.errors import UserError

# ---------------------------------------------------------------- building archives


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"payload") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
    return path


def _lying_zip(path: Path, real_size: int, declared: int) -> Path:
    """A zip whose headers claim `declared` bytes for a member that holds `real_size`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.bin", b"\0" * real_size)
    data = bytearray(buf.getvalue())
    struct.pack_into("<I", data, data.find(b"PK\x03\x04") + 22, declared)  # local header
    struct.pack_into("<I", data, data.find(b"PK\x01\x02") + 24, declared)  # central directory
    path.write_bytes(bytes(data))
    return path


OUTSIDE = f"/tmp/wavefoundry-evil-{uuid.uuid4().hex}"

HOSTILE_TARS = {
    "dotdot": ([_file("../evil")], "../evil"),
    "dotdot-deep": ([_file("ok/../../evil")], "ok/../../evil"),
    "absolute": ([_file(OUTSIDE)], OUTSIDE),
    "symlink-out": ([_link("link", "../../outside", tarfile.SYMTYPE)], "link"),
    "symlink-absolute": ([_link("link", "/etc/passwd", tarfile.SYMTYPE)], "link"),
    # Each link alone stays inside; followed together, "up" lands one level above the tree.
    "symlink-chain": (
        [_link("here", ".", tarfile.SYMTYPE), _link("up", "here/..", tarfile.SYMTYPE)],
        "up",
    ),
    "write-through-symlink": (
        [_link("sub", ".", tarfile.SYMTYPE), _file("sub/file")],
        "sub/file",
    ),
    "hardlink-out": ([_link("hard", "../outside", tarfile.LNKTYPE)], "hard"),
    "hardlink-absolute": ([_link("hard", "/etc/passwd", tarfile.LNKTYPE)], "hard"),
    "chardev": ([_file("fine.txt"), _special("dev/null", tarfile.CHRTYPE)], "dev/null"),
    "blockdev": ([_special("disk", tarfile.BLKTYPE)], "disk"),
    "fifo": ([_special("pipe", tarfile.FIFOTYPE)], "pipe"),
}

HOSTILE_ZIPS = {
    "dotdot": ({"ok.txt": b"x", "../evil.txt": b"x"}, "../evil.txt"),
    "absolute": ({OUTSIDE + ".txt": b"x"}, OUTSIDE + ".txt"),
    "drive-letter": ({"C:\\evil.txt": b"x"}, "C:\\evil.txt"),
    "backslash-root": ({"\\evil.txt": b"x"}, "\\evil.txt"),
    "backslash-dotdot": ({"a\\..\\..\\evil.txt": b"x"}, "a\\..\\..\\evil.txt"),
}


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """Where archives are extracted: `parent/target`, with `parent` created and empty."""
    parent = tmp_path / "parent"
    parent.mkdir()
    return parent / "target"


def _assert_nothing_written(target: Path) -> None:
    assert list(target.parent.iterdir()) == []  # no target, no staging folder, nothing beside
    assert not os.path.lexists(OUTSIDE)
    assert not os.path.lexists(OUTSIDE + ".txt")


# ---------------------------------------------------------------- hostile archives


@pytest.mark.parametrize("case", sorted(HOSTILE_TARS))
@pytest.mark.parametrize("compression", ["", "gz", "bz2"])
def test_hostile_tar_is_refused_and_nothing_written(
    tmp_path: Path, target: Path, case: str, compression: str
) -> None:
    members, culprit = HOSTILE_TARS[case]
    archive = _tar(tmp_path / f"{case}.tar", members, mode=f"w:{compression}")

    with pytest.raises(UnsafeArchiveError) as err:
        extract(archive, target, max_bytes=10**6)

    assert str(archive) in str(err.value)
    assert repr(culprit) in str(err.value)  # quoted, so odd names stay on one line
    _assert_nothing_written(target)


@pytest.mark.parametrize("case", sorted(HOSTILE_ZIPS))
def test_hostile_zip_is_refused_and_nothing_written(
    tmp_path: Path, target: Path, case: str
) -> None:
    entries, culprit = HOSTILE_ZIPS[case]
    archive = _zip(tmp_path / f"{case}.zip", entries)

    with pytest.raises(UnsafeArchiveError) as err:
        extract(archive, target, max_bytes=10**6)

    assert str(archive) in str(err.value)
    assert repr(culprit) in str(err.value)  # quoted, so odd names stay on one line
    _assert_nothing_written(target)


def test_tar_declaring_more_than_the_bound_is_refused(tmp_path: Path, target: Path) -> None:
    archive = _tar(
        tmp_path / "big.tar.gz",
        [_file("small.bin", b"\0" * 100), _file("huge.bin", b"\0" * 5000)],
        mode="w:gz",
    )

    with pytest.raises(
        UnsafeArchiveError, match=r"expands to 5100 bytes, more than the bound 4096"
    ):
        extract(archive, target, max_bytes=4096)
    _assert_nothing_written(target)


def test_zip_bomb_is_refused(tmp_path: Path, target: Path) -> None:
    # 10 MB of zeros compresses to about 10 kB.
    archive = _zip(tmp_path / "bomb.zip", {"zeros.bin": b"\0" * 10_000_000})
    assert archive.stat().st_size < 100_000

    with pytest.raises(UnsafeArchiveError) as err:
        extract(archive, target, max_bytes=1_000_000)

    assert "more than the bound 1000000" in str(err.value)
    assert "zeros.bin" in str(err.value)
    _assert_nothing_written(target)


def test_zip_lying_about_its_size_is_refused(tmp_path: Path, target: Path) -> None:
    # The headers claim 1 kB (under the bound); the data inflates to 2 MB (over it).
    archive = _lying_zip(tmp_path / "liar.zip", real_size=2_000_000, declared=1000)

    with pytest.raises(UserError, match="liar.zip"):
        extract(archive, target, max_bytes=100_000)
    _assert_nothing_written(target)


def test_not_an_archive_is_refused(tmp_path: Path, target: Path) -> None:
    plain = tmp_path / "notes.txt"
    plain.write_bytes(b"just some text\n" * 100)

    with pytest.raises(UserError, match="not a supported archive"):
        extract(plain, target, max_bytes=10**6)
    _assert_nothing_written(target)


def test_a_file_named_as_an_archive_that_does_not_read_as_one_is_called_corrupt(
    tmp_path: Path, target: Path
) -> None:
    # It was "not a supported archive (tar, tar.gz, ...)" for a .tar.gz.
    junk = tmp_path / "LJSpeech-1.1.tar.gz"
    junk.write_bytes(b"just some text, whatever the name says\n" * 100)

    with pytest.raises(UserError, match=r"is named \.tar\.gz but does not read as one: corrupt"):
        extract(junk, target, max_bytes=10**6)
    _assert_nothing_written(target)


def test_truncated_archive_is_a_user_error(tmp_path: Path, target: Path) -> None:
    good = _tar(tmp_path / "good.tar.bz2", [_file("a.bin", os.urandom(200_000))], mode="w:bz2")
    cut = tmp_path / "cut.tar.bz2"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    with pytest.raises(UserError, match="cut.tar.bz2"):
        extract(cut, target, max_bytes=10**6)
    _assert_nothing_written(target)


# ---------------------------------------------------------------- good archives


def _tree(root: Path) -> dict[str, bytes]:
    files = {
        "Corpus-1.0/metadata.csv": b"id|text|normalized text\n",
        "Corpus-1.0/wavs/a.wav": os.urandom(70_000),
        "Corpus-1.0/wavs/b.wav": os.urandom(3_000),
        "Corpus-1.0/empty.txt": b"",
    }
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return files


TAR_MODES = {"tar": "w", "tar.gz": "w:gz", "tar.bz2": "w:bz2"}


def _pack(tmp_path: Path, kind: str) -> tuple[Path, dict[str, bytes]]:
    src = tmp_path / "src"
    files = _tree(src)
    if kind == "zip":
        archive = tmp_path / "Corpus-1.0.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
            for name in files:
                zf.write(src / name, name)
    else:
        archive = tmp_path / f"Corpus-1.0.{kind}"
        with tarfile.open(archive, TAR_MODES[kind]) as tar:
            tar.add(src / "Corpus-1.0", "Corpus-1.0")
    return archive, files


def _extracted(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and p.name != MARKER
    }


@pytest.mark.parametrize("kind", ["tar.bz2", "tar.gz", "tar", "zip"])
def test_good_archive_extracts_byte_identical(tmp_path: Path, target: Path, kind: str) -> None:
    archive, files = _pack(tmp_path, kind)

    assert extract(archive, target, max_bytes=10**6) == target

    assert _extracted(target) == files
    assert sorted(p.name for p in target.parent.iterdir()) == ["target"]  # no staging left


def test_second_extract_is_skipped_until_the_archive_changes(tmp_path: Path, target: Path) -> None:
    archive, files = _pack(tmp_path, "tar.gz")
    extract(archive, target, max_bytes=10**6)
    edited = target / "Corpus-1.0" / "metadata.csv"
    edited.write_bytes(b"edited by hand\n")

    extract(archive, target, max_bytes=10**6)
    assert edited.read_bytes() == b"edited by hand\n"  # left alone: same archive

    stat = archive.stat()
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    extract(archive, target, max_bytes=10**6)
    assert _extracted(target) == files  # a new archive replaces the whole tree
    assert sorted(p.name for p in target.parent.iterdir()) == ["target"]


def test_tree_without_marker_is_replaced(tmp_path: Path, target: Path) -> None:
    # A folder left by something else (or an older, interrupted tool) is not taken as done.
    archive, files = _pack(tmp_path, "zip")
    target.mkdir()
    (target / "stray.txt").write_text("left over")

    extract(archive, target, max_bytes=10**6)

    assert _extracted(target) == files


def test_links_inside_the_tree_are_kept(tmp_path: Path, target: Path) -> None:
    archive = _tar(
        tmp_path / "links.tar",
        [
            _file("data/real.txt", b"real"),
            _link("data/alias.txt", "real.txt", tarfile.SYMTYPE),
            _link("top.txt", "data/real.txt", tarfile.SYMTYPE),
            _link("data/hard.txt", "data/real.txt", tarfile.LNKTYPE),
        ],
    )

    extract(archive, target, max_bytes=10**6)

    assert (target / "data" / "alias.txt").is_symlink()
    assert (target / "data" / "alias.txt").read_bytes() == b"real"
    assert (target / "top.txt").read_bytes() == b"real"
    assert (target / "data" / "hard.txt").stat().st_ino == (target / "data/real.txt").stat().st_ino


def test_setuid_bits_are_dropped(tmp_path: Path, target: Path) -> None:
    info, data = _file("run.sh", b"#!/bin/sh\n")
    info.mode = 0o4755
    archive = _tar(tmp_path / "suid.tar", [(info, data)])

    extract(archive, target, max_bytes=10**6)

    assert (target / "run.sh").stat().st_mode & 0o7777 == 0o755


# ---------------------------------------------------------------- zips made on Windows


def _windows_zip(path: Path, entries: dict[str, bytes | None], create_system: int = 0) -> Path:
    """A zip as old Windows tools write it: `create_system` 0 (MS-DOS/FAT) and, in the names,
    whatever separators the caller gives. An entry of None is a folder."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.create_system = create_system
            zf.writestr(info, data or b"")
    return path


def _files_under(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MARKER
    }


WINDOWS_ZIPS = {
    # What PowerShell's Compress-Archive (.NET Framework) writes: "\" between folders.
    "backslashes from a FAT host": (
        0,
        {
            "LJSpeech-1.1\\": None,
            "LJSpeech-1.1\\wavs\\": None,
            "LJSpeech-1.1\\metadata.csv": b"LJ001-0001|Hi.|Hi.\r\n",
            "LJSpeech-1.1\\wavs\\LJ001-0001.wav": b"RIFF....WAVE",
        },
        {"LJSpeech-1.1/metadata.csv", "LJSpeech-1.1/wavs/LJ001-0001.wav"},
    ),
    # A name that already uses "/" keeps its "\" as a character, as unzip does.
    "mixed separators": (0, {"VCTK/txt/p225\\p225_001.txt": b"x"}, {"VCTK/txt/p225\\p225_001.txt"}),
    # A Unix host may put "\" in a file name: unzip keeps it.
    "backslash from a unix host": (3, {"notes\\readme.txt": b"x"}, {"notes\\readme.txt"}),
}


@pytest.mark.parametrize("case", list(WINDOWS_ZIPS))
def test_zip_backslash_separators_are_normalised_as_unzip_does(
    tmp_path: Path, target: Path, case: str
) -> None:
    create_system, entries, expected = WINDOWS_ZIPS[case]
    archive = _windows_zip(tmp_path / "made-on-windows.zip", entries, create_system)
    files = _files_under(extract(archive, target, max_bytes=1 << 20, progress=False))
    assert set(files) == expected
    unzip = shutil.which("unzip")
    if unzip:  # the reference: Info-ZIP's own reading of the same archive
        by_unzip = tmp_path / "by-unzip"
        subprocess.run([unzip, "-q", str(archive), "-d", str(by_unzip)], check=False)
        assert _files_under(by_unzip) == files


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("LJSpeech-1.1\\..\\..\\evil.txt", "'..' in path"),
        ("\\evil.txt", "absolute path"),
        ("C:\\Windows\\evil.txt", "absolute path"),
        ("..\\evil.txt", "'..' in path"),
    ],
)
def test_normalised_zip_names_face_the_same_safety_checks(
    tmp_path: Path, target: Path, name: str, why: str
) -> None:
    archive = _windows_zip(tmp_path / "evil.zip", {"LJSpeech-1.1\\ok.txt": b"x", name: b"owned"})
    with pytest.raises(UnsafeArchiveError, match=re.escape(why)) as info:
        extract(archive, target, max_bytes=1 << 20, progress=False)
    assert repr(name) in str(info.value)
    _assert_nothing_written(target)
    assert not list(tmp_path.rglob("evil.txt"))
