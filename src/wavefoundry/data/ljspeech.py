"""LJ Speech 1.1: `metadata.csv` (ID|transcription|normalized transcription) and `wavs/<ID>.wav`.

One speaker, 22,050 Hz mono 16-bit WAV. The CSV has no quoting and no header; we read it as
bytes so that one undecodable line is quarantined instead of failing the whole file. A BOM and
CRLF line ends (a file saved on Windows) are tolerated; OS junk in `wavs/` (`._X.wav`) is not a
clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import wavefoundry.data.schema as schema
from wavefoundry.config import DatasetConfig
from wavefoundry.data.layout import (
    LayoutError,
    assign_split,
    decode_utf8,
    find_roots,
    listing_row,
    mark,
    text_bytes,
    visible_files,
)

NAME = "ljspeech"
SAMPLE_RATE = 22050


def is_root(path: Path) -> bool:
    return (path / "metadata.csv").is_file() and (path / "wavs").is_dir()


def list_clips(dirs: list[Path], cfg: DatasetConfig) -> list[dict[str, Any]]:
    roots = find_roots(dirs, is_root)
    if len(roots) != 1:
        where = ", ".join(str(d) for d in dirs)
        found = "none" if not roots else ", ".join(str(r) for r in roots)
        raise LayoutError(
            f"LJ Speech: expected one folder with metadata.csv and wavs/ under {where}; found {found}"
        )
    root = roots[0]
    rows: list[dict[str, Any]] = []
    listed: set[str] = set()
    lines = text_bytes((root / "metadata.csv").read_bytes(), "metadata.csv").splitlines()
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        clip_id = raw.split(b"|", 1)[0].decode("ascii", errors="replace").strip()
        wav = root / "wavs" / f"{clip_id}.wav"
        row = listing_row(
            clip_id, wav, assign_split(clip_id, None, cfg.split), text=None, normalized_text=None
        )
        rows.append(row)
        listed.add(clip_id)
        line, problem = decode_utf8(raw, f"metadata.csv line {number}")
        if line is None:
            mark(row, schema.BAD_METADATA, problem)
            continue
        fields = line.split("|")
        if len(fields) != 3:
            mark(
                row,
                schema.BAD_METADATA,
                f"metadata.csv line {number}: {len(fields)} fields, expected 3",
            )
            continue
        row["text"], row["normalized_text"] = fields[1], fields[2]
        if not wav.is_file():
            mark(
                row,
                schema.MISSING_AUDIO,
                f"metadata.csv lists {clip_id} but wavs/{wav.name} does not exist",
            )
    for wav in visible_files(root / "wavs", "*"):
        if wav.suffix.lower() == ".wav" and wav.stem not in listed:
            row = listing_row(
                wav.stem,
                wav,
                assign_split(wav.stem, None, cfg.split),
                text=None,
                normalized_text=None,
            )
            rows.append(mark(row, schema.UNLISTED, f"wavs/{wav.name} has no row in metadata.csv"))
    return rows
