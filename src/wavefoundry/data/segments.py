"""Training examples from the store: fixed-length segments with their conditioning, in O(1).

Kept apart from `store.py` so that writing the store never imports torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from wavefoundry.errors import UserError


class SegmentDataset(Dataset):
    """Segments of `segment_length` samples from one stored split (`processed/<dataset>/<split>`).

    Item i is a segment of clip i % clips at an offset drawn from (seed, epoch, i): an epoch is
    reproducible, so a resumed run draws the same segments. With `random_offset=False` every
    segment starts at its clip's first sample (a note's onset). Shorter clips are zero-padded. Each
    item is {"audio": float32 tensor in [-1, 1], "clip_id": str, <conditioning columns>}.
    """

    def __init__(
        self,
        split_dir: Path,
        segment_length: int,
        seed: int = 0,
        items: int | None = None,
        random_offset: bool = True,
    ):
        split_dir = Path(split_dir)
        if not (split_dir / "index.parquet").is_file():
            raise UserError(f"no stored split at {split_dir}: run `wavefoundry store` first")
        self.index = pd.read_parquet(split_dir / "index.parquet")
        if self.index.empty:
            raise UserError(f"stored split {split_dir} has no clips")
        if segment_length <= 0:
            raise UserError(f"segment length must be positive, got {segment_length}")
        self.audio = np.load(split_dir / "audio.npy", mmap_mode="r")
        self.segment_length = segment_length
        self.seed = seed
        self.epoch = 0
        self.items = items or len(self.index)
        self.random_offset = random_offset
        self._offsets = self.index["offset"].to_numpy()
        self._lengths = self.index["length"].to_numpy()
        self._conditioning = self.index.drop(columns=["offset", "length"]).to_dict("records")

    def __len__(self) -> int:
        return self.items

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, item: int) -> dict[str, Any]:
        clip = item % len(self._offsets)
        offset, length = int(self._offsets[clip]), int(self._lengths[clip])
        start = 0
        if self.random_offset and length > self.segment_length:
            rng = np.random.default_rng((self.seed, self.epoch, item))
            start = int(rng.integers(0, length - self.segment_length + 1))
        samples = self.audio[offset + start : offset + min(length, start + self.segment_length)]
        segment = torch.zeros(self.segment_length)
        segment[: len(samples)] = torch.from_numpy(samples.astype(np.float32) / 32768.0)
        return {"audio": segment, **self._conditioning[clip]}


def collate_segments(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack "audio" to (B, T); integer columns become int64 tensors, float columns float32
    tensors, anything else (text, names, missing values) stays a list."""
    batch: dict[str, Any] = {"audio": torch.stack([item["audio"] for item in items])}
    for key in items[0]:
        if key == "audio":
            continue
        values = [item[key] for item in items]
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in values):
            batch[key] = torch.tensor([int(v) for v in values], dtype=torch.long)
        elif all(isinstance(v, float | np.floating) for v in values):
            batch[key] = torch.tensor([float(v) for v in values], dtype=torch.float32)
        else:
            batch[key] = values
    return batch


class UtteranceDataset(SegmentDataset):
    """Whole clips of one stored split, for models that read a clip with its transcript
    (text-to-speech). Item i is clip i % clips from its first sample, cut to `max_length`
    samples; {"audio": float32 tensor of the clip's own length, "length": int, "clip_id",
    <conditioning columns>}. `lengths` (samples per clip, capped) lets a sampler bucket
    similar lengths together."""

    def __init__(self, split_dir: Path, max_length: int, items: int | None = None):
        super().__init__(split_dir, max_length, items=items, random_offset=False)
        self.lengths = np.minimum(self._lengths, max_length)

    def __getitem__(self, item: int) -> dict[str, Any]:
        clip = item % len(self._offsets)
        offset, length = int(self._offsets[clip]), int(self.lengths[clip])
        samples = self.audio[offset : offset + length]
        audio = torch.from_numpy(samples.astype(np.float32) / 32768.0)
        return {"audio": audio, "length": length, **self._conditioning[clip]}


def collate_utterances(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Zero-pad "audio" to the longest clip, (B, T_max); "length" (B,) keeps each clip's own
    samples; the other columns as `collate_segments` does."""
    longest = max(item["audio"].numel() for item in items)
    padded = [
        {**item, "audio": torch.nn.functional.pad(item["audio"], (0, longest - item["length"]))}
        for item in items
    ]
    return collate_segments(padded)
