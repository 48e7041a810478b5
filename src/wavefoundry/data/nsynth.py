"""NSynth: `nsynth-<split>/examples.json` (note_str -> note attributes) and `audio/<note_str>.wav`.

4 s notes, 16 kHz mono 16-bit. The three official splits share no instrument, so the split
comes from the folder, never from a hash. examples.json may carry a BOM; OS junk in `audio/`
(`._X.wav`) is not a note.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import wavefoundry.data.schema as schema
from wavefoundry.config import DatasetConfig
from wavefoundry.data.layout import (
    LayoutError,
    find_roots,
    listing_row,
    mark,
    text_bytes,
    visible_files,
)
from wavefoundry.errors import UserError

NAME = "nsynth"
SAMPLE_RATE = 16000
SPLIT_FOLDERS = {"nsynth-train": "train", "nsynth-valid": "valid", "nsynth-test": "test"}
# examples.json's attributes of a note; note_str is its key.
FIELDS = tuple(column for column in schema.CONDITIONING["nsynth"] if column != "note_str")


def is_root(path: Path) -> bool:
    return path.name in SPLIT_FOLDERS and (path / "examples.json").is_file()


def _read_examples(path: Path) -> dict[str, dict[str, Any]]:
    try:
        examples = json.loads(text_bytes(path.read_bytes(), f"{path.parent.name}/{path.name}"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"NSynth: {path} is not valid JSON: {err}") from None
    if not isinstance(examples, dict):
        raise UserError(
            f"NSynth: {path} should map note_str to attributes, found {type(examples).__name__}"
        )
    return examples


def list_clips(dirs: list[Path], cfg: DatasetConfig) -> list[dict[str, Any]]:
    roots = find_roots(dirs, is_root, max_depth=3)
    if not roots:
        where = ", ".join(str(d) for d in dirs)
        raise LayoutError(f"NSynth: no nsynth-{{train,valid,test}}/examples.json under {where}")
    seen = [r.name for r in roots]
    if len(seen) != len(set(seen)):
        raise LayoutError(f"NSynth: the same split appears twice under the sources: {sorted(seen)}")
    rows = []
    for root in roots:
        split = SPLIT_FOLDERS[root.name]
        examples = _read_examples(root / "examples.json")
        audio = {p.stem: p for p in visible_files(root / "audio", "*.wav")}
        for note_str in sorted(examples.keys() | audio.keys()):
            wav = audio.get(note_str)
            row = listing_row(note_str, wav, split, note_str=note_str, **dict.fromkeys(FIELDS))
            rows.append(row)
            if note_str not in examples:
                mark(
                    row,
                    schema.UNLISTED,
                    f"{root.name}/audio/{note_str}.wav has no entry in examples.json",
                )
                continue
            attributes = examples[note_str]
            missing = [f for f in FIELDS if not isinstance(attributes, dict) or f not in attributes]
            if missing:
                mark(
                    row,
                    schema.BAD_METADATA,
                    f"{root.name}/examples.json: {note_str} lacks {', '.join(missing)}",
                )
                continue
            row.update({f: attributes[f] for f in FIELDS})
            if wav is None:
                mark(
                    row,
                    schema.MISSING_AUDIO,
                    f"examples.json lists {note_str} but {root.name}/audio/{note_str}.wav does not exist",
                )
    return rows
