"""The training store: per split, all clips' int16 samples back to back in one `audio.npy`
(memory-mapped) plus `index.parquet` (clip id, offset, length, conditioning).

Few big files instead of many small WAVs: DVC and object storage move them fast, and a
segment is a slice of a memmap. The dataset's DVC directory hash is its data version.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

import wavefoundry.data.schema as schema
from wavefoundry.audio import resample, resampled_length
from wavefoundry.config import SPLITS
from wavefoundry.data.manifest import WavData, wav_data_chunk
from wavefoundry.errors import UserError, writing

INDEX_STATS = ("duration", "sha256")


def manifest_columns(dataset: str) -> list[str]:
    """The manifest columns `store_dataset` reads for `dataset`."""
    columns = ("clip_id", "path", "split", "status", "frames", "sample_rate")
    return list(dict.fromkeys((*columns, *schema.CONDITIONING[dataset], *INDEX_STATS)))


@dataclass
class StoreResult:
    out_dir: Path
    sample_rate: int
    clips: dict[str, int]  # per split
    seconds: dict[str, float]  # per split
    excluded: int  # rows not stored: bad status or quarantined
    data_version: str


def _read_int16(path: str, sample_rate: int) -> np.ndarray:
    """A clip as mono int16 at `sample_rate`; 16-bit mono WAV is copied without decoding."""
    data = Path(path).read_bytes()
    wav_data = wav_data_chunk(data)
    with sf.SoundFile(io.BytesIO(data)) as f:
        native = f.samplerate
        if f.channels == 1 and native == sample_rate and f.subtype == "PCM_16":
            if isinstance(wav_data, WavData) and f.format == "WAV":
                offset, size, _ = wav_data
                return np.frombuffer(data, dtype="<i2", count=size // 2, offset=offset)
            return f.read(dtype="int16")
        audio = f.read(dtype="float32", always_2d=True).mean(axis=1)
    audio = resample(audio, native, sample_rate)
    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype(np.int16)


class _HashingFile:
    """A file being written that keeps the md5 DVC will record for it.

    The md5 runs on a second thread, in write order (hashlib lets go of the GIL on large
    buffers), while the caller reads the next clip: the store costs about one md5 of its bytes.
    At most `depth` writes wait for it, so memory stays flat whatever the dataset's size.
    """

    def __init__(self, path: Path, depth: int = 16):
        self._file = open(path, "wb")  # noqa: SIM115 - closed in close()
        self.md5 = hashlib.md5()
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-md5")
        self._pending: deque[Future[None]] = deque()
        self._depth = depth

    def write(self, data: bytes | memoryview) -> int:
        written = self._file.write(data)
        self._pending.append(self._hasher.submit(self.md5.update, data))
        if len(self._pending) > self._depth:
            self._pending.popleft().result()
        return written

    def close(self) -> str:
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._hasher.shutdown()
            self._file.close()
        return self.md5.hexdigest()


def _md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _store_split(
    rows: pd.DataFrame,
    split_dir: Path,
    sample_rate: int,
    conditioning: tuple[str, ...],
    on_progress: Callable[[int], None] | None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Write one split; returns its index and the md5 of each file written (for the data version).

    One pass on purpose: the clips are read from the page cache and appended while a second
    thread hashes what was appended, which beats a memory map filled by several processes and
    hashed again afterwards.
    """
    split_dir.mkdir(parents=True, exist_ok=True)
    lengths = [
        frames if sr == sample_rate else resampled_length(int(frames), int(sr), sample_rate)
        for frames, sr in zip(rows["frames"], rows["sample_rate"], strict=True)
    ]
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    npy = _HashingFile(split_dir / "audio.npy")
    header = {"descr": "<i2", "fortran_order": False, "shape": (int(offsets[-1]),)}
    np.lib.format.write_array_header_1_0(npy, header)
    try:
        for path, length in zip(rows["path"], lengths, strict=True):
            samples = _read_int16(path, sample_rate)
            if len(samples) != length:
                raise UserError(
                    f"{path} changed since the manifest was built ({len(samples)} samples, "
                    f"expected {length})"
                )
            npy.write(samples.data)
            if on_progress:
                on_progress(1)
    except BaseException:
        npy.close()
        raise
    hashes = {"audio.npy": npy.close()}
    index = rows[["clip_id", *conditioning, *INDEX_STATS]].reset_index(drop=True).copy()
    index.insert(1, "offset", offsets[:-1])
    index.insert(2, "length", np.asarray(lengths, dtype=np.int64))
    index.to_parquet(split_dir / "index.parquet", index=False)
    hashes["index.parquet"] = _md5_of(split_dir / "index.parquet")
    return index, hashes


def dvc_directory_hash(file_md5: dict[str, str]) -> str:
    """DVC's content hash of a directory from its files' md5s (relative posix paths).

    The `md5: <hex>.dir` that `dvc add` and dvc.lock record: the md5 of the JSON list of
    {"md5", "relpath"} entries sorted by path (dvc_data's Tree.digest). A test checks it
    against what `dvc repro` writes.
    """
    entries = [{"md5": md5, "relpath": relpath} for relpath, md5 in sorted(file_md5.items())]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest() + ".dir"


def store_dataset(
    dataset: str,
    manifest: pd.DataFrame,
    quarantined: set[str],
    out_dir: Path,
    version_file: Path,
    sample_rate: int,
    on_progress: Callable[[int], None] | None = None,
) -> StoreResult:
    """Write the processed dataset from the manifest's usable, unquarantined clips."""
    # The rows to store, in clip id order, found on two columns: each split's rows are then
    # taken from the manifest once (whole-manifest copies would grow with the dataset).
    usable = manifest.loc[
        (manifest["status"] == schema.OK) & ~manifest["clip_id"].isin(quarantined), ["split"]
    ]
    usable = usable.loc[manifest.loc[usable.index, "clip_id"].sort_values(kind="stable").index]
    if usable.empty:
        raise UserError(
            f"{dataset}: no usable clips to store ({len(manifest)} in the manifest, all quarantined or unreadable)"
        )
    conditioning = schema.CONDITIONING[dataset]
    # Built beside the target and swapped in at the end: an interrupted store never leaves a
    # half-written folder that looks like a dataset.
    building = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(building, ignore_errors=True)
    clips, seconds, file_md5 = {}, {}, {}
    try:
        with writing(out_dir):
            for split in SPLITS:
                rows = manifest.loc[usable.index[usable["split"] == split]]
                if rows.empty:
                    continue
                index, hashes = _store_split(
                    rows, building / split, sample_rate, conditioning, on_progress
                )
                file_md5.update({f"{split}/{name}": md5 for name, md5 in hashes.items()})
                clips[split] = len(index)
                seconds[split] = float(index["length"].sum() / sample_rate)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    meta = {
        "dataset": dataset,
        "sample_rate": sample_rate,
        "dtype": "int16",
        "splits": {s: {"clips": clips[s], "seconds": round(seconds[s], 3)} for s in clips},
        "conditioning": list(conditioning),
    }
    try:
        with writing(out_dir):
            (building / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    file_md5["meta.json"] = _md5_of(building / "meta.json")
    version = dvc_directory_hash(file_md5)
    # The version file first (beside, then renamed), then the folder swapped in: a full disk
    # or a crash at any point leaves the previous store and its version, or the new ones.
    version_tmp = version_file.with_name(f".{version_file.name}.partial")
    try:
        with writing(version_file):
            version_tmp.write_text(
                json.dumps({"dataset": dataset, "data_version": version, **meta}, indent=2) + "\n"
            )
    except BaseException:
        version_tmp.unlink(missing_ok=True)
        shutil.rmtree(building, ignore_errors=True)
        raise
    old = out_dir.with_name(f".{out_dir.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    building.rename(out_dir)
    version_tmp.replace(version_file)
    shutil.rmtree(old, ignore_errors=True)
    return StoreResult(out_dir, sample_rate, clips, seconds, len(manifest) - len(usable), version)
