"""What every dataset adapter shares: finding a dataset's root, listing rows, assigning splits."""

from __future__ import annotations

import codecs
import hashlib
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import wavefoundry.data.schema as schema
from wavefoundry.config import SplitConfig
from wavefoundry.data.archive import MARKER
from wavefoundry.errors import UserError

# Names an operating system leaves beside the data, never part of a dataset. Every name that
# starts with "." counts too: macOS's AppleDouble `._X.wav` and `.DS_Store`, `.Spotlight-V100/`,
# `.Trashes/`, and any other hidden file or folder.
OS_JUNK = frozenset(
    name.casefold()
    for name in ("__MACOSX", "Thumbs.db", "ehthumbs.db", "desktop.ini", "$RECYCLE.BIN")
)


class LayoutError(UserError):
    """A source that does not hold the dataset's official layout."""


def find_roots(
    dirs: Iterable[Path], is_root: Callable[[Path], bool], max_depth: int = 2
) -> list[Path]:
    """Every folder at most `max_depth` below one of `dirs` for which `is_root` holds.

    An extracted archive has the dataset folder inside it (LJSpeech-1.1/, nsynth-test/), while a
    user may point straight at the dataset folder: both work.
    """
    found: list[Path] = []
    level = [Path(d) for d in dirs]
    for _ in range(max_depth + 1):
        deeper: list[Path] = []
        for folder in level:
            if is_root(folder):
                found.append(folder)
            elif folder.is_dir():
                deeper.extend(
                    sorted(c for c in folder.iterdir() if c.is_dir() and not is_os_junk(c.name))
                )
        level = deeper
    return found


def is_os_junk(name: str) -> bool:
    """True for a file or folder name an OS leaves beside data (`._*`, `.DS_Store`, `__MACOSX`,
    `Thumbs.db`, `desktop.ini`, any hidden name): the adapters never list them as clips."""
    return name.startswith(".") or name.casefold() in OS_JUNK


def visible_files(folder: Path, pattern: str) -> list[Path]:
    """The files under `folder` matching `pattern` (a glob), sorted, OS junk left out: no part
    of the path below `folder` may be junk (`audio/._x.wav`, `__MACOSX/...`, `.git/...`)."""
    return sorted(
        path
        for path in folder.glob(pattern)
        if path.is_file() and not any(is_os_junk(p) for p in path.relative_to(folder).parts)
    )


def count_os_junk(dirs: Iterable[Path]) -> int:
    """How many files under `dirs` are OS junk or sit in a junk folder: what ingest ignored.

    Archives and folders are treated alike (an archive is counted in the folder it was
    extracted into); the extraction marker is ours, not junk.
    """
    count = 0
    for top in dirs:
        for folder, _, files in os.walk(top):
            below = Path(folder).relative_to(top).parts
            inside_junk = any(is_os_junk(part) for part in below)
            count += sum(
                1
                for name in files
                if inside_junk or (is_os_junk(name) and not (name == MARKER and not below))
            )
    return count


def listing_row(
    clip_id: str, path: Path | None, split: str | None, **conditioning: Any
) -> dict[str, Any]:
    """A manifest row before the audio is probed: status "ok" until something says otherwise."""
    return {
        "clip_id": clip_id,
        "path": str(path) if path is not None else "",
        "split": split,
        "status": schema.OK,
        "reason": "",
        **conditioning,
    }


def mark(row: dict[str, Any], status: str, reason: str) -> dict[str, Any]:
    row["status"] = status
    row["reason"] = reason
    return row


def hash_fraction(key: str) -> float:
    """A stable number in [0, 1) for a key: the same on every machine and Python run."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_split(clip_id: str, speaker: str | None, cfg: SplitConfig) -> str:
    """Deterministic split: by a hash of the clip id, or by held-out speakers."""
    if cfg.by == "speaker":
        if speaker in cfg.test_speakers:
            return "test"
        if speaker in cfg.valid_speakers:
            return "valid"
        return "train"
    fraction = hash_fraction(clip_id)
    if fraction < cfg.test_fraction:
        return "test"
    if fraction < cfg.test_fraction + cfg.valid_fraction:
        return "valid"
    return "train"


# Longest first: the UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def text_bytes(data: bytes, where: str) -> bytes:
    """A text file's bytes as UTF-8 with no byte-order mark, line ends left as they are.

    Windows editors save "UTF-8 with BOM" (EF BB BF first) or, as "Unicode", UTF-16 with a BOM;
    Excel and Notepad also end lines with CRLF. Every text file an adapter reads (metadata.csv,
    speaker-info.txt, transcripts, examples.json) comes through here, and every reader splits
    lines with `splitlines()` (CRLF, LF and CR alike). Bytes without a BOM are returned as they
    are. Raises `LayoutError` for a file whose BOM names an encoding its bytes are not in.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            body = data[len(bom) :]
            if encoding == "utf-8":
                return body
            try:
                return body.decode(encoding).encode("utf-8")
            except UnicodeDecodeError as err:
                raise LayoutError(
                    f"{where}: starts with a {encoding.upper()} byte-order mark but is not "
                    f"{encoding.upper()} text ({err.reason} at byte {err.start + len(bom)})"
                ) from None
    return data


def decode_utf8(data: bytes, where: str) -> tuple[str | None, str]:
    """(text, "") or (None, reason) for bytes that are not UTF-8."""
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as err:
        bad = data[err.start : err.start + 1].hex()
        return None, f"{where}: not valid UTF-8 (byte 0x{bad} at position {err.start})"
