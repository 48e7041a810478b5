"""VCTK 0.92: `wav48_silence_trimmed/<spk>/<spk>_<NNN>_mic{1,2}.flac`, `txt/<spk>/<spk>_<NNN>.txt`,
`speaker-info.txt`. 48 kHz 16-bit FLAC; mic1 by default, mic2 on request.

Text files may carry a BOM and CRLF line ends, and OS junk (`._X.flac`, `.DS_Store`) is never a
clip. The corpus has documented holes that must show up as rows, not vanish: p315 has no text,
p280 has no mic2, some p362 transcripts have no audio.
"""

from __future__ import annotations

import re
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

NAME = "vctk"
SAMPLE_RATE = 48000
AUDIO_DIR = "wav48_silence_trimmed"
_CLIP = re.compile(r"^(?P<speaker>[a-z]+\d+)_(?P<number>\d+)_(?P<mic>mic[12])\.flac$")


def is_root(path: Path) -> bool:
    return (path / "speaker-info.txt").is_file() and (path / AUDIO_DIR).is_dir()


def read_speaker_info(path: Path) -> dict[str, dict[str, Any]]:
    """speaker id -> age, gender, accent, region. REGION may hold spaces and a (comment)."""
    speakers: dict[str, dict[str, Any]] = {}
    data = text_bytes(path.read_bytes(), path.name)
    text, _ = decode_utf8(data, path.name)
    for line in (text if text is not None else data.decode("latin-1")).splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        speaker = (
            fields[0] if fields[0][0].isalpha() else f"p{fields[0]}"
        )  # 0.80 wrote bare numbers
        region = re.sub(r"\(.*?\)", "", " ".join(fields[4:])).strip()
        age = int(fields[1]) if fields[1].isdigit() else None
        speakers[speaker] = {
            "age": age,
            "gender": fields[2],
            "accent": fields[3],
            "region": region or None,
        }
    return speakers


def _read_transcript(path: Path) -> tuple[str | None, str]:
    if not path.is_file():
        return None, ""
    where = f"txt/{path.parent.name}/{path.name}"
    text, problem = decode_utf8(text_bytes(path.read_bytes(), where), where)
    return (text.strip() if text is not None else None), problem


def list_clips(dirs: list[Path], cfg: DatasetConfig) -> list[dict[str, Any]]:
    roots = find_roots(dirs, is_root)
    if len(roots) != 1:
        where = ", ".join(str(d) for d in dirs)
        raise LayoutError(
            f"VCTK: expected one folder with speaker-info.txt and {AUDIO_DIR}/ under {where}; "
            f"found {len(roots)}"
        )
    root = roots[0]
    speakers = read_speaker_info(root / "speaker-info.txt")

    # Every utterance named by a transcript or by an audio file of the requested mic.
    audio: dict[str, Path] = {}
    other_mic: set[str] = set()
    for file in visible_files(root / AUDIO_DIR, "*/*"):
        match = _CLIP.match(file.name)
        if not match:
            continue
        clip_id = f"{match['speaker']}_{match['number']}"
        if match["mic"] == cfg.mic:
            audio[clip_id] = file
        else:
            other_mic.add(clip_id)
    transcripts = {p.stem: p for p in visible_files(root / "txt", "*/*.txt")}

    rows = []
    for clip_id in sorted(audio.keys() | transcripts.keys()):
        speaker = clip_id.rsplit("_", 1)[0]
        info = speakers.get(speaker, {"age": None, "gender": None, "accent": None, "region": None})
        wav = audio.get(clip_id)
        row = listing_row(
            clip_id,
            wav,
            assign_split(clip_id, speaker, cfg.split),
            speaker=speaker,
            mic=cfg.mic,
            text=None,
            **info,
        )
        rows.append(row)
        if clip_id in transcripts:
            row["text"], problem = _read_transcript(transcripts[clip_id])
            if problem:
                mark(row, schema.BAD_METADATA, problem)
                continue
        if wav is None:
            if clip_id in other_mic:
                reason = f"no {cfg.mic} recording of {clip_id} (only the other microphone)"
            else:
                reason = f"txt/{speaker}/{clip_id}.txt has no audio"
            mark(row, schema.MISSING_AUDIO, reason)
        elif speaker not in speakers:
            mark(row, schema.UNLISTED, f"speaker {speaker} is not in speaker-info.txt")
    return rows
