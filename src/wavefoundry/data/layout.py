"""What every dataset adapter shares: finding a dataset's root, listing rows, assigning splits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import wavefoundry.data.schema as schema
from wavefoundry.config import SplitConfig
from wavefoundry.errors import UserError


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
                deeper.extend(sorted(child for child in folder.iterdir() if child.is_dir()))
        level = deeper
    return found


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


def decode_utf8(data: bytes, where: str) -> tuple[str | None, str]:
    """(text, "") or (None, reason) for bytes that are not UTF-8."""
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError as err:
        bad = data[err.start : err.start + 1].hex()
        return None, f"{where}: not valid UTF-8 (byte 0x{bad} at position {err.start})"
