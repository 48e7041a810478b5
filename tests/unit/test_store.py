"""The training store: int16 memmaps + index, quarantine respected, segments in O(1)."""

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from wavefoundry.data.manifest import build_manifest
from wavefoundry.data.segments import SegmentDataset
from wavefoundry.data.store import dvc_directory_hash, store_dataset
from wavefoundry.errors import UserError


def make_clips(tmp_path, sr=16000, lengths=(16000, 8000, 24000, 4000)):
    rng = np.random.default_rng(1)
    rows = []
    for i, length in enumerate(lengths):
        samples = rng.integers(-20000, 20000, length, dtype=np.int16)
        path = tmp_path / f"c{i}.wav"
        sf.write(str(path), samples, sr, subtype="PCM_16")
        rows.append(
            {
                "clip_id": f"c{i}",
                "path": str(path),
                "split": "train" if i < 3 else "test",
                "status": "ok",
                "reason": "",
                "pitch": 60 + i,
                "velocity": 100,
                "note_str": f"c{i}",
            }
        )
    return build_manifest("nsynth", rows)


def test_store_packs_clips_back_to_back(tmp_path):
    manifest = make_clips(tmp_path)
    out = tmp_path / "processed" / "nsynth"
    result = store_dataset(
        "nsynth", manifest, {"c1"}, out, tmp_path / "processed" / "v.json", 16000
    )
    assert result.clips == {"train": 2, "test": 1}
    assert result.excluded == 1
    index = pd.read_parquet(out / "train" / "index.parquet")
    assert index["clip_id"].tolist() == ["c0", "c2"]
    assert index["offset"].tolist() == [0, 16000] and index["length"].tolist() == [16000, 24000]
    assert index["pitch"].tolist() == [60, 62]
    audio = np.load(out / "train" / "audio.npy", mmap_mode="r")
    assert audio.dtype == np.int16 and len(audio) == 40000
    original, _ = sf.read(manifest.loc[2, "path"], dtype="int16")
    assert np.array_equal(audio[16000:], original)
    version = json.loads((tmp_path / "processed" / "v.json").read_text())
    assert version["data_version"] == result.data_version and result.data_version.endswith(".dir")
    # The same input gives the same version; different input a different one.
    again = store_dataset("nsynth", manifest, {"c1"}, out, tmp_path / "v2.json", 16000)
    assert again.data_version == result.data_version
    other = store_dataset("nsynth", manifest, set(), out, tmp_path / "v3.json", 16000)
    assert other.data_version != result.data_version


def test_store_resamples_to_the_requested_rate(tmp_path):
    manifest = make_clips(tmp_path, sr=48000, lengths=(48000, 12345))
    out = tmp_path / "p"
    result = store_dataset("nsynth", manifest, set(), out, tmp_path / "v.json", 22050)
    index = pd.read_parquet(out / "train" / "index.parquet")
    assert index["length"].tolist() == [22050, 5671]
    assert result.seconds["train"] == pytest.approx((22050 + 5671) / 22050)


def test_store_refuses_when_nothing_is_usable(tmp_path):
    manifest = make_clips(tmp_path)
    with pytest.raises(UserError, match="no usable clips"):
        store_dataset(
            "nsynth",
            manifest,
            set(manifest["clip_id"]),
            tmp_path / "p",
            tmp_path / "v.json",
            16000,
            1,
        )


def test_segments_are_slices_with_conditioning_and_reproducible(tmp_path):
    manifest = make_clips(tmp_path)
    out = tmp_path / "p"
    store_dataset("nsynth", manifest, set(), out, tmp_path / "v.json", 16000)
    data = SegmentDataset(out / "train", segment_length=10000, seed=3)
    assert len(data) == 3
    audio = np.load(out / "train" / "audio.npy")
    for item in range(3):
        segment = data[item]
        row = data.index.iloc[item]
        clip = audio[row["offset"] : row["offset"] + row["length"]] / 32768.0
        assert segment["clip_id"] == row["clip_id"] and segment["pitch"] == row["pitch"]
        if row["length"] >= 10000:
            # The segment is a contiguous slice of its own clip.
            starts = [
                s
                for s in range(row["length"] - 9999)
                if np.array_equal(clip[s : s + 10000], segment["audio"])
            ]
            assert starts
        else:
            assert np.array_equal(
                segment["audio"][: row["length"]].numpy(), clip.astype(np.float32)
            )
            assert not segment["audio"][row["length"] :].any()
    assert np.array_equal(
        SegmentDataset(out / "train", 10000, seed=3)[2]["audio"], data[2]["audio"]
    )
    data.set_epoch(1)
    assert not np.array_equal(
        data[2]["audio"], SegmentDataset(out / "train", 10000, seed=3)[2]["audio"]
    )


def test_a_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="run `wavefoundry store` first"):
        SegmentDataset(tmp_path / "nowhere", 100)


def test_the_directory_hash_is_dvcs(tmp_path):
    """The same hash dvc_data computes for the folder (DVC's own library, no subprocess)."""
    from dvc_data.hashfile.build import build
    from dvc_data.hashfile.db import HashFileDB
    from dvc_objects.fs.local import LocalFileSystem
    from dvc_objects.fs.memory import MemoryFileSystem

    manifest = make_clips(tmp_path)
    out = tmp_path / "p"
    result = store_dataset("nsynth", manifest, set(), out, tmp_path / "v.json", 16000)
    _, _, tree = build(
        HashFileDB(MemoryFileSystem(), "/s"), str(out), LocalFileSystem(), "md5", dry_run=True
    )
    assert result.data_version == tree.hash_info.value
    assert dvc_directory_hash({"a": "0" * 32}) != dvc_directory_hash({"b": "0" * 32})
    # More clips in a split than the md5 thread lets wait, some resampled: still DVC's hash.
    manifest = make_clips(tmp_path, lengths=tuple(range(1000, 2200, 30)))
    resampled = store_dataset("nsynth", manifest, {"c7"}, out, tmp_path / "v.json", 22050)
    _, _, tree = build(
        HashFileDB(MemoryFileSystem(), "/s"), str(out), LocalFileSystem(), "md5", dry_run=True
    )
    assert resampled.clips == {"train": 3, "test": 36}
    assert resampled.data_version == tree.hash_info.value != result.data_version


def test_a_clip_changed_since_the_manifest_fails_and_keeps_the_previous_store(tmp_path):
    manifest = make_clips(tmp_path)
    out = tmp_path / "p"
    first = store_dataset("nsynth", manifest, set(), out, tmp_path / "v.json", 16000)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    sf.write(manifest.loc[1, "path"], np.zeros(100, dtype=np.int16), 16000, subtype="PCM_16")
    with pytest.raises(UserError, match="changed since the manifest was built"):
        store_dataset("nsynth", manifest, set(), out, tmp_path / "v2.json", 16000)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert not list(tmp_path.glob(".p.partial")) and not (tmp_path / "v2.json").exists()
    assert first.data_version.endswith(".dir")
