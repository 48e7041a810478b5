"""The manifest: one row per clip with its conditioning and per-clip audio statistics.

Probing reads each file once (hash and decode from the same bytes) in a pool of processes.
Numpy and soundfile only: workers never import torch, so the pool starts in milliseconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import soundfile as sf

import wavefoundry.data.schema as schema
from wavefoundry.errors import writing

CLIP_LEVEL = 0.999  # |x| at or above this counts as clipped
SILENCE_DB = -50.0  # a 20 ms frame quieter than this counts as silent
FRAME_SECONDS = 0.02


class Unreadable(Exception):
    """A file that is not usable audio; the message becomes the manifest's reason."""


# Data sizes a writer puts in a header it cannot go back and fix (output to a pipe or a
# stream): 0xFFFFFFFF (ffmpeg), 0x7FFFFFFF, 0x7FFFF000 (SoX).
PLACEHOLDER_SIZES = frozenset({0xFFFFFFFF, 0x7FFFFFFF, 0x7FFFF000})


class WavData(NamedTuple):
    """Where a RIFF/WAVE file's samples are: `size` bytes from `offset`, and a `warning` ("" or
    why the header's own data size was not believed)."""

    offset: int
    size: int
    warning: str


def wav_data_chunk(data: bytes) -> WavData | str | None:
    """For RIFF/WAVE bytes: where the data chunk is, or a reason the file is cut short.

    libsndfile quietly reads what is there, so a cut-off download would otherwise pass as a
    shorter clip. A data size larger than the file is believed to be a cut unless the header
    shows it is not: a streaming writer's placeholder (`PLACEHOLDER_SIZES`), or a RIFF size that
    says the file is complete as it is. Then the samples present are read, as libsndfile does,
    with a warning. None for anything that is not RIFF/WAVE.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    riff_size = struct.unpack("<I", data[4:8])[0]
    position = 12
    while position + 8 <= len(data):
        chunk_id = data[position : position + 4]
        size = struct.unpack("<I", data[position + 4 : position + 8])[0]
        body = position + 8
        if chunk_id == b"data":
            available = len(data) - body
            if size <= available:
                return WavData(body, size, "")
            if size in PLACEHOLDER_SIZES:
                warning = (
                    f"WAV header gives the placeholder data size 0x{size:08X} (written to a "
                    f"stream); read the {available} bytes present"
                )
            elif riff_size + 8 == len(data):
                warning = (
                    f"WAV header gives a data size of {size} bytes but a RIFF size that ends "
                    f"with the file; read the {available} bytes present"
                )
            else:
                return f"truncated: data chunk declares {size} bytes, file holds {available}"
            return WavData(body, available, warning)
        position = body + size + (size & 1)
    return "truncated: no data chunk"


def audio_stats(audio: np.ndarray, sample_rate: int, full_scale: float = 1.0) -> dict[str, Any]:
    """Level statistics of (frames, channels) float32 audio whose full scale is `full_scale`.

    `full_scale` is 1.0 for float audio and 32768 for 16-bit PCM samples as they are stored,
    converted to float32 without scaling: every statistic is a ratio to full scale, and scaling
    by a power of two is exact, so both give the same numbers bit for bit. `audio` is used as
    scratch space (it is changed).

    `peak` and `clipping` are of the samples as stored. `rms_db` is measured after removing each
    channel's DC offset, and `silence` after removing each 20 ms frame's own mean: a clip of
    noise at -80 dBFS sitting on a DC offset of 0.2 is silent, not loud. `dc_offset` is the
    mean of the channel furthest from 0 (signed).
    """
    if audio.size == 0:
        return {
            "peak": 0.0,
            "rms_db": -np.inf,
            "clipping": 0.0,
            "silence": 1.0,
            "dc_offset": 0.0,
            "non_finite": False,
        }
    high, low = audio.max(), audio.min()
    finite = bool(np.isfinite(high) and np.isfinite(low))
    x = audio if finite else np.nan_to_num(audio, nan=0.0, posinf=full_scale, neginf=-full_scale)
    if not finite:
        high, low = x.max(), x.min()
    flat = x.reshape(-1)
    level = CLIP_LEVEL * full_scale  # a Python float: compared in the array's own dtype
    clipped = 0
    if high >= level or low <= -level:  # rare: the two passes only when a sample is that loud
        clipped = np.count_nonzero(flat >= level) + np.count_nonzero(flat <= -level)
    peak = float(max(high, -low)) / full_scale
    means = x.mean(axis=0, dtype=np.float64)
    mono = x.mean(axis=1) if x.shape[1] > 1 else x[:, 0]
    frame = max(1, int(sample_rate * FRAME_SECONDS))
    frames = mono[: len(mono) // frame * frame].reshape(-1, frame)
    if len(frames):
        frames = frames - frames.mean(axis=1, keepdims=True)
        frame_power = np.einsum("ij,ij->i", frames, frames) / frame
        floor = 10 ** (SILENCE_DB / 10) * full_scale * full_scale
        silence = float(np.count_nonzero(frame_power < floor) / len(frames))
    else:
        silence = 1.0
    x -= means.astype(np.float32)  # in place: the DC-free signal for the RMS
    mean_square = float(np.dot(flat, flat)) / flat.size / (full_scale * full_scale)
    return {
        "peak": peak,
        "rms_db": 10 * np.log10(mean_square) if mean_square > 0 else -np.inf,
        "clipping": clipped / flat.size,
        "silence": silence,
        "dc_offset": float(means[np.argmax(np.abs(means))]) / full_scale,
        "non_finite": not finite,
    }


PCM16_FULL_SCALE = 32768.0


def _decode(data: bytes, wav_data: WavData | None) -> tuple[dict[str, Any], np.ndarray, float]:
    """Header facts, (frames, channels) float32 samples and their full scale (`audio_stats`)."""
    with sf.SoundFile(io.BytesIO(data)) as f:
        info = {"sample_rate": f.samplerate, "channels": f.channels, "subtype": f.subtype}
        declared = f.frames
        if wav_data is not None and f.subtype == "PCM_16" and f.format == "WAV":
            # 16-bit WAV (LJ Speech, NSynth): the samples in the bytes already read, unscaled.
            offset, size, _ = wav_data
            samples = np.frombuffer(data, dtype="<i2", count=size // 2, offset=offset)
            audio = samples[: len(samples) // f.channels * f.channels].reshape(-1, f.channels)
            audio, full_scale = audio.astype(np.float32), PCM16_FULL_SCALE
        else:
            audio, full_scale = f.read(dtype="float32", always_2d=True), 1.0
    if len(audio) < declared:
        raise Unreadable(
            f"truncated: header declares {declared} frames, the file holds {len(audio)}"
        )
    return info, audio, full_scale


def probe(path: str) -> dict[str, Any]:
    """Everything the manifest records about one audio file; raises `Unreadable`."""
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise Unreadable(f"cannot read file: {err.strerror}") from None
    facts: dict[str, Any] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if not data:
        raise Unreadable("empty file (0 bytes)")
    wav_data = wav_data_chunk(data)
    if isinstance(wav_data, str):
        raise Unreadable(wav_data)
    try:
        info, audio, full_scale = _decode(data, wav_data)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as err:
        raise Unreadable(f"not a readable audio file ({schema.error_text(err)})") from None
    facts.update(info)
    facts[schema.WARNING] = wav_data.warning if wav_data is not None else ""
    facts["frames"] = len(audio)
    facts["duration"] = len(audio) / info["sample_rate"]
    facts.update(audio_stats(audio, info["sample_rate"], full_scale))
    return facts


_EMPTY_STATS: dict[str, Any] = {
    "sample_rate": 0,
    "channels": 0,
    "frames": 0,
    "duration": 0.0,
    "subtype": "",
    "peak": np.nan,
    "rms_db": np.nan,
    "clipping": np.nan,
    "silence": np.nan,
    "dc_offset": np.nan,
    "non_finite": False,
    "bytes": 0,
    "sha256": "",
}


def _probe_or_reason(path: str) -> dict[str, Any]:
    try:
        return probe(path)
    except Unreadable as err:
        return {"reason": str(err)}


def _probe_chunk(paths: list[str]) -> list[dict[str, Any]]:
    return [_probe_or_reason(p) for p in paths]


def probe_all(
    paths: list[str], workers: int, on_progress: Callable[[int], None] | None = None
) -> list[dict[str, Any]]:
    """Probe files on `workers` processes, in order; `on_progress(n)` after each chunk of n."""
    chunk = max(1, min(64, len(paths) // (workers * 8) or 1))
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    results: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if workers > 1 and len(chunks) > 1:
            mapped = stack.enter_context(ProcessPoolExecutor(max_workers=workers)).map(
                _probe_chunk, chunks
            )
        else:
            mapped = map(_probe_chunk, chunks)
        for part in mapped:
            results.extend(part)
            if on_progress:
                on_progress(len(part))
    return results


def default_workers(configured: int = 0) -> int:
    return configured or len(os.sched_getaffinity(0))


def build_manifest(
    dataset: str,
    rows: list[dict[str, Any]],
    workers: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Probe the audio of every listed row and return the manifest (schema.columns order).

    Rows whose audio is missing keep their listing status; unreadable audio becomes
    status "unreadable" with the decoder's reason. No row is dropped.
    """
    probed_at = [
        i for i, row in enumerate(rows) if row["path"] and row["status"] != schema.MISSING_AUDIO
    ]
    facts = probe_all([rows[i]["path"] for i in probed_at], default_workers(workers), on_progress)
    records = [{**row, **_EMPTY_STATS, schema.WARNING: "", "dataset": dataset} for row in rows]
    for i, found in zip(probed_at, facts, strict=True):
        if "reason" in found and len(found) == 1:
            if records[i]["status"] == schema.OK:
                records[i]["status"] = schema.UNREADABLE
                records[i]["reason"] = found["reason"]
            else:
                records[i]["reason"] += f"; {found['reason']}"
        else:
            records[i].update(found)
    frame = pd.DataFrame.from_records(records, columns=list(schema.columns(dataset)))
    return frame.sort_values("clip_id", kind="stable", ignore_index=True)


def write_manifest(manifest: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    try:
        with writing(path):
            manifest.to_parquet(tmp, index=False)
        tmp.replace(path)
    except BaseException:  # a full disk: the previous manifest stays, no half-written file
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_manifest(path: Path, columns: list[str] | None = None) -> pd.DataFrame:
    """The manifest at `path`, or only its `columns` (a stage that reads a few columns of a
    large manifest keeps its memory flat)."""
    from wavefoundry.errors import UserError

    if not path.is_file():
        raise UserError(f"no manifest at {path}: run `wavefoundry ingest` for this dataset first")
    return pd.read_parquet(path, columns=columns)
