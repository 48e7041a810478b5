"""The training store: per split, all clips' int16 samples back to back in one `audio.npy`
(memory-mapped) plus `index.parquet` (clip id, offset, length, conditioning).

Few big files instead of many small WAVs: DVC and object storage move them fast, and a
segment is a slice of a memmap. The dataset's DVC directory hash is its data version.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf

from wavefoundry.audio import resample, resampled_length
from wavefoundry.config import SPLITS
from wavefoundry.data import schema
from wavefoundry.errors import UserError

INDEX_STATS = ("duration", "sha256")


@dataclass
class StoreResult:
    out_dir: Path
    sample_rate: int
    clips: dict[str, int]  # per split
    seconds: dict[str, float]  # per split
    excluded: int  # rows not stored: bad status or quarantined
    data_version: str


def _read_int16(path: str, sample_rate: int) -> np.ndarray:
    """A clip as mono int16 at `sample_rate`; 16-bit mono input is copied without conversion."""
    with sf.SoundFile(path) as f:
        if f.channels == 1 and f.samplerate == sample_rate and f.subtype == "PCM_16":
            return f.read(dtype="int16")
        audio = f.read(dtype="float32", always_2d=True).mean(axis=1)
        native = f.samplerate
    audio = resample(audio, native, sample_rate)
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def _write_clips(task: tuple[str, int, list[tuple[str, int, int]]]) -> int:
    """Fill slices of an existing audio.npy; runs in a worker process."""
    npy, sample_rate, clips = task
    store = np.load(npy, mmap_mode="r+")
    for path, offset, length in clips:
        samples = _read_int16(path, sample_rate)
        if len(samples) != length:
            raise UserError(
                f"{path} changed since the manifest was built ({len(samples)} samples, expected {length})"
            )
        store[offset : offset + length] = samples
    store.flush()
    return len(clips)


def _store_split(
    rows: pd.DataFrame,
    split_dir: Path,
    sample_rate: int,
    conditioning: tuple[str, ...],
    workers: int,
    on_progress: Callable[[int], None] | None,
) -> pd.DataFrame:
    split_dir.mkdir(parents=True, exist_ok=True)
    lengths = [
        frames if sr == sample_rate else resampled_length(int(frames), int(sr), sample_rate)
        for frames, sr in zip(rows["frames"], rows["sample_rate"], strict=True)
    ]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    npy = split_dir / "audio.npy"
    np.lib.format.open_memmap(npy, mode="w+", dtype=np.int16, shape=(int(offsets[-1]),)).flush()
    clips = list(zip(rows["path"], offsets[:-1].tolist(), lengths, strict=True))
    size = max(1, min(32, len(clips) // (workers * 4) or 1))
    tasks = [(str(npy), sample_rate, clips[i : i + size]) for i in range(0, len(clips), size)]
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for done in pool.map(_write_clips, tasks):
                if on_progress:
                    on_progress(done)
    else:
        for task in tasks:
            done = _write_clips(task)
            if on_progress:
                on_progress(done)
    index = rows[["clip_id", *conditioning, *INDEX_STATS]].reset_index(drop=True).copy()
    index.insert(1, "offset", offsets[:-1])
    index.insert(2, "length", np.asarray(lengths, dtype=np.int64))
    index.to_parquet(split_dir / "index.parquet", index=False)
    return index


def data_version(path: Path) -> str:
    """DVC's content hash of a directory (the `md5: ....dir` that `dvc add` and dvc.lock record)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    staging = HashFileDB(MemoryFileSystem(), "/staging")
    _, _, tree = build(staging, str(path), LocalFileSystem(), "md5", dry_run=True)
    return tree.hash_info.value


def store_dataset(
    dataset: str,
    manifest: pd.DataFrame,
    quarantined: set[str],
    out_dir: Path,
    version_file: Path,
    sample_rate: int,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> StoreResult:
    """Write the processed dataset from the manifest's usable, unquarantined clips."""
    usable = manifest[(manifest["status"] == schema.OK) & ~manifest["clip_id"].isin(quarantined)]
    usable = usable.sort_values("clip_id", kind="stable")
    if usable.empty:
        raise UserError(
            f"{dataset}: no usable clips to store ({len(manifest)} in the manifest, all quarantined or unreadable)"
        )
    conditioning = schema.CONDITIONING[dataset]
    if out_dir.exists():
        shutil.rmtree(out_dir)
    clips, seconds = {}, {}
    for split in SPLITS:
        rows = usable[usable["split"] == split]
        if rows.empty:
            continue
        index = _store_split(rows, out_dir / split, sample_rate, conditioning, workers, on_progress)
        clips[split] = len(index)
        seconds[split] = float(index["length"].sum() / sample_rate)
    meta = {
        "dataset": dataset,
        "sample_rate": sample_rate,
        "dtype": "int16",
        "splits": {s: {"clips": clips[s], "seconds": round(seconds[s], 3)} for s in clips},
        "conditioning": list(conditioning),
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    version = data_version(out_dir)
    version_file.write_text(
        json.dumps({"dataset": dataset, "data_version": version, **meta}, indent=2) + "\n"
    )
    return StoreResult(out_dir, sample_rate, clips, seconds, len(manifest) - len(usable), version)


def read_data_version(version_file: Path) -> dict[str, Any]:
    if not version_file.is_file():
        raise UserError(
            f"no data version at {version_file}: run `wavefoundry store` for this dataset first"
        )
    return json.loads(version_file.read_text())


class SegmentDataset:
    """Fixed-length segments of a stored split, with their conditioning, in O(1) each.

    Item i is a segment of clip i % clips at an offset drawn from (seed, epoch, i), so an
    epoch is reproducible and a resumed run draws the same segments. Short clips are zero-padded.
    A torch `Dataset` by duck typing; it returns numpy arrays and lets the collate convert.
    """

    def __init__(
        self, split_dir: Path, segment_length: int, seed: int = 0, items: int | None = None
    ):
        split_dir = Path(split_dir)
        if not (split_dir / "index.parquet").is_file():
            raise UserError(f"no stored split at {split_dir}: run `wavefoundry store` first")
        self.index = pd.read_parquet(split_dir / "index.parquet")
        if self.index.empty:
            raise UserError(f"stored split {split_dir} has no clips")
        self.audio = np.load(split_dir / "audio.npy", mmap_mode="r")
        self.segment_length = segment_length
        self.seed = seed
        self.epoch = 0
        self.items = items or len(self.index)
        self._offsets = self.index["offset"].to_numpy()
        self._lengths = self.index["length"].to_numpy()
        self._records = self.index.drop(columns=["offset", "length"]).to_dict("records")

    def __len__(self) -> int:
        return self.items

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, item: int) -> dict[str, Any]:
        clip = item % len(self._offsets)
        offset, length = int(self._offsets[clip]), int(self._lengths[clip])
        start = 0
        if length > self.segment_length:
            start = int(
                np.random.default_rng((self.seed, self.epoch, item)).integers(
                    0, length - self.segment_length + 1
                )
            )
        samples = self.audio[offset + start : offset + min(length, start + self.segment_length)]
        segment = np.zeros(self.segment_length, dtype=np.float32)
        segment[: len(samples)] = samples / 32768.0
        return {"audio": segment, **self._records[clip]}
