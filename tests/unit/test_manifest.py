"""Probing single files: the manifest's statistics and its reasons for unusable audio."""

import hashlib

import numpy as np
import pytest
import soundfile as sf

from wavefoundry.data import schema
from wavefoundry.data.manifest import Unreadable, audio_stats, build_manifest, probe

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
