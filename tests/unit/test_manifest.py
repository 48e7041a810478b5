"""Probing single files: the manifest's statistics and its reasons for unusable audio."""

import hashlib
import re
import struct

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from wavefoundry.data import schema
from wavefoundry.data.manifest import (
    Unreadable,
    audio_stats,
    build_manifest,
    probe,
    write_manifest,
)

SR = 22050


def tone(seconds=1.0, amplitude=0.5, sr=SR):
    t = np.arange(int(sr * seconds)) / sr
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_probe_measures_a_good_clip(tmp_path):
    audio = np.concatenate([np.zeros(SR // 2, np.float32), tone(1.5)])
    path = tmp_path / "good.wav"
    sf.write(str(path), audio, SR, subtype="PCM_16")
    facts = probe(str(path))
    assert facts["sample_rate"] == SR and facts["channels"] == 1 and facts["subtype"] == "PCM_16"
    assert facts["frames"] == len(audio) and facts["duration"] == pytest.approx(2.0)
    assert facts["peak"] == pytest.approx(0.5, abs=1e-3)
    # A 0.5-amplitude sine has RMS 0.354 (-9.0 dBFS); a quarter of the clip is silent.
    assert facts["rms_db"] == pytest.approx(
        20 * np.log10(0.5 / np.sqrt(2) * np.sqrt(0.75)), abs=0.1
    )
    assert facts["silence"] == pytest.approx(0.25, abs=0.02)
    assert facts["clipping"] == 0 and not facts["non_finite"]
    assert facts["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert facts["bytes"] == path.stat().st_size


def test_stats_of_a_clipped_offset_signal():
    square = np.sign(tone()).reshape(-1, 1) * 1.0 + 0.0
    stats = audio_stats(square, SR)
    assert stats["clipping"] > 0.99
    stats = audio_stats(np.full((SR, 1), 0.25, np.float32), SR)
    assert stats["dc_offset"] == pytest.approx(0.25)


def test_pcm16_stats_on_the_unscaled_samples_equal_the_scaled_ones_bit_for_bit():
    rng = np.random.default_rng(3)
    samples = (rng.normal(0, 3000, (SR, 2)) + 900).clip(-32768, 32767).astype(np.int16)
    samples[:50] = 32767  # clipped
    samples[SR // 2 : SR // 2 + SR // 5] = 7  # a silent stretch on a DC offset
    unscaled = audio_stats(samples.astype(np.float32), SR, full_scale=32768.0)
    scaled = audio_stats(samples.astype(np.float32) / np.float32(32768), SR)
    assert unscaled == scaled
    assert unscaled["clipping"] > 0 and 0 < unscaled["silence"] < 1


def write_bad(kind, path):
    if kind == "random bytes":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif kind == "zero length":
        path.write_bytes(b"")
    elif kind == "truncated":
        sf.write(str(path), tone(), SR, subtype="PCM_16")
        path.write_bytes(path.read_bytes()[: 44 + 1000])
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("random bytes", "not a readable audio file"),
        ("zero length", "empty file"),
        ("truncated", "truncated"),
    ],
)
def test_unusable_files_give_a_reason(tmp_path, kind, reason):
    path = write_bad(kind, tmp_path / "bad.wav")
    with pytest.raises(Unreadable, match=reason):
        probe(str(path))


def test_format_problems_are_measured_not_hidden(tmp_path):
    stereo = tmp_path / "stereo.wav"
    sf.write(str(stereo), np.stack([tone(), tone()], axis=1), SR, subtype="PCM_16")
    eight_bit = tmp_path / "8bit.wav"
    sf.write(str(eight_bit), tone(), SR, subtype="PCM_U8")
    nan = tmp_path / "nan.wav"
    samples = tone()
    samples[100] = np.nan
    sf.write(str(nan), samples, SR, subtype="FLOAT")
    assert probe(str(stereo))["channels"] == 2
    assert probe(str(eight_bit))["subtype"] == "PCM_U8"
    assert probe(str(nan))["non_finite"] is True


def test_build_manifest_keeps_every_row(tmp_path):
    good = tmp_path / "good.wav"
    sf.write(str(good), tone(), SR, subtype="PCM_16")
    bad = write_bad("random bytes", tmp_path / "bad.wav")
    rows = [
        {
            "clip_id": "a",
            "path": str(good),
            "split": "train",
            "status": "ok",
            "reason": "",
            "text": "x",
            "normalized_text": "x",
        },
        {
            "clip_id": "b",
            "path": str(bad),
            "split": "train",
            "status": "ok",
            "reason": "",
            "text": "y",
            "normalized_text": "y",
        },
        {
            "clip_id": "c",
            "path": str(tmp_path / "gone.wav"),
            "split": "test",
            "status": schema.MISSING_AUDIO,
            "reason": "listed, no audio",
            "text": "z",
            "normalized_text": "z",
        },
    ]
    manifest = build_manifest("ljspeech", rows, workers=2)
    assert list(manifest.columns) == list(schema.columns("ljspeech"))
    assert manifest["status"].tolist() == [schema.OK, schema.UNREADABLE, schema.MISSING_AUDIO]
    assert manifest.loc[1, "reason"].startswith("not a readable audio file")
    assert manifest.loc[2, "reason"] == "listed, no audio"
    assert manifest.loc[0, "frames"] == SR


# ---------------------------------------------------------------- WAV headers that lie


def _header_sizes(path, riff=None, data=None):
    """Overwrite the RIFF and/or data chunk sizes of a WAV file, as a streaming writer leaves them."""
    raw = bytearray(path.read_bytes())
    if riff is not None:
        raw[4:8] = struct.pack("<I", riff)
    if data is not None:
        at = raw.index(b"data")
        raw[at + 4 : at + 8] = struct.pack("<I", data)
    path.write_bytes(bytes(raw))
    return path


# name -> (subtype, RIFF size, data size); None leaves the size the writer gave.
STREAMED = {
    "sox to a pipe (0x7FFFF000)": ("PCM_16", 0x7FFFF024, 0x7FFFF000),
    "ffmpeg to a pipe (0xFFFFFFFF)": ("PCM_16", 0xFFFFFFFF, 0xFFFFFFFF),
    "0x7FFFFFFF data size": ("PCM_16", None, 0x7FFFFFFF),
    "float WAV, sox placeholder": ("FLOAT", 0x7FFFF024, 0x7FFFF000),
    "data size past a complete RIFF": ("PCM_16", None, 2 * 22036 + 4096),
}


@pytest.mark.parametrize("case", list(STREAMED))
def test_wav_sizes_that_are_placeholders_or_exceed_the_file_read_as_the_samples_present(
    tmp_path, case
):
    from wavefoundry.data.store import store_dataset

    subtype, riff, data = STREAMED[case]
    audio = tone(22036 / SR)
    path = tmp_path / "LJ001-0001.wav"
    sf.write(str(path), audio, SR, subtype=subtype)
    _header_sizes(path, riff, data)
    assert len(sf.read(str(path))[0]) == 22036, "libsndfile reads the samples present"

    row = {"clip_id": "LJ001-0001", "path": str(path), "split": "train", "status": "ok"}
    manifest = build_manifest(
        "ljspeech", [{**row, "reason": "", "text": "a", "normalized_text": "a"}], 1
    )
    clip = manifest.iloc[0]
    assert (clip["status"], clip["reason"], clip["frames"]) == (schema.OK, "", 22036)
    assert "read the" in clip["warning"] and "bytes present" in clip["warning"]
    if data in (0x7FFFF000, 0xFFFFFFFF, 0x7FFFFFFF):
        assert f"placeholder data size 0x{data:08X}" in clip["warning"]
    else:
        assert "RIFF size that ends with the file" in clip["warning"]
    # The store reads the same samples the manifest counted.
    stored = store_dataset(
        "ljspeech", manifest, set(), tmp_path / "out", tmp_path / "version.json", SR
    )
    assert stored.clips == {"train": 1}
    assert np.load(tmp_path / "out" / "train" / "audio.npy").shape == (22036,)


# name -> (subtype, how many bytes of the file to keep, RIFF size to write)
CUT = {
    "16-bit, cut in the data": ("PCM_16", 44 + 20_000, None),
    "float, cut in the data": ("FLOAT", 80 + 20_000, None),
    "16-bit, cut, RIFF size a placeholder": ("PCM_16", 44 + 20_000, 0xFFFFFFFF),
}


@pytest.mark.parametrize("case", list(CUT))
def test_a_genuinely_cut_wav_is_still_caught(tmp_path, case):
    subtype, keep, riff = CUT[case]
    path = tmp_path / "cut.wav"
    sf.write(str(path), tone(), SR, subtype=subtype)
    path.write_bytes(path.read_bytes()[:keep])
    _header_sizes(path, riff)
    with pytest.raises(Unreadable, match="truncated: data chunk declares"):
        probe(str(path))


# ---------------------------------------------------------------- DC offset


def _noise(seconds, level_db, seed=0):
    rng = np.random.default_rng(seed)
    return (10 ** (level_db / 20) * rng.standard_normal(int(SR * seconds))).astype(np.float32)


def test_level_and_silence_statistics_are_measured_after_removing_dc(tmp_path):
    # The clip: silence (noise at -80 dBFS) sitting on a DC offset of 0.2.
    path = tmp_path / "dc.wav"
    sf.write(str(path), 0.2 + _noise(2.0, -80), SR, subtype="PCM_16")
    facts = probe(str(path))
    assert facts["silence"] == 1.0
    assert facts["rms_db"] < -70
    assert facts["dc_offset"] == pytest.approx(0.2, abs=1e-3)
    assert facts["peak"] == pytest.approx(0.2, abs=1e-3), "peak is of the samples as stored"

    # Half a tone, half silence, all on a negative offset: half silent, the tone's own level.
    half = np.concatenate([tone(1.0, amplitude=0.1), _noise(1.0, -90)]) - 0.3
    stats = audio_stats(half.reshape(-1, 1), SR)
    assert stats["silence"] == pytest.approx(0.5, abs=0.02)
    assert stats["rms_db"] == pytest.approx(20 * np.log10(0.1 / np.sqrt(2) * np.sqrt(0.5)), abs=0.5)
    assert stats["dc_offset"] == pytest.approx(-0.3, abs=1e-3)

    # A DC that drifts (a recorder warming up): still silence.
    drift = np.linspace(-0.1, 0.25, 2 * SR, dtype=np.float32) + _noise(2.0, -80, seed=1)
    assert audio_stats(drift.reshape(-1, 1), SR)["silence"] > 0.98

    # Stereo with the offset in one channel: the offset is that channel's, and it is silent.
    stereo = np.stack([_noise(2.0, -85, seed=2), 0.15 + _noise(2.0, -85, seed=3)], axis=1)
    stats = audio_stats(stereo, SR)
    assert stats["dc_offset"] == pytest.approx(0.15, abs=1e-3)
    assert stats["silence"] == 1.0 and stats["rms_db"] < -80


# ---------------------------------------------------------------- determinism


def _unreadable_files(folder):
    """Files a decoder refuses, each in its own way."""
    flac = folder / "tone.flac"
    sf.write(str(flac), tone(), SR, format="FLAC")
    # An ID3v2 tag in front of the FLAC, its padding longer than its header says.
    id3 = b"ID3\x04\x00\x00\x00\x00\x01\x00" + bytes(256)
    files = {
        "id3-in-front.flac": id3 + flac.read_bytes(),
        "random.wav": np.random.default_rng(0).bytes(5000),
        "text.wav": b"this is not audio\n" * 40,
        "mp3-named-wav.wav": b"\xff\xfb\x90\x00" + bytes(2000),
        "ogg-garbage.ogg": b"OggS\x00\x02" + np.random.default_rng(1).bytes(3000),
        "cut.flac": flac.read_bytes()[:200],
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [str(folder / name) for name in files]


def test_manifest_reasons_are_deterministic(tmp_path):
    paths = _unreadable_files(tmp_path)
    rows = [
        {"clip_id": f"c{i}", "path": p, "split": "train", "status": "ok", "reason": "",
         "text": "a", "normalized_text": "a"}
        for i, p in enumerate(paths)
    ]  # fmt: skip
    first = build_manifest("ljspeech", rows, workers=1)
    second = build_manifest("ljspeech", rows, workers=2)  # other processes, other addresses
    assert (first["status"] == schema.UNREADABLE).all(), first[["path", "reason"]]
    for reason in first["reason"]:
        assert not re.search(r"0x[0-9a-fA-F]{6,}|object at|BytesIO", reason), reason
    pd.testing.assert_frame_equal(first, second)
    written = [write_manifest(m, tmp_path / f"{i}.parquet") for i, m in enumerate((first, second))]
    assert written[0].read_bytes() == written[1].read_bytes()
    assert first.set_index("clip_id").loc["c0", "reason"] == (
        "not a readable audio file (Format not recognised.)"
    )
