"""The Great Expectations suite over a manifest: verdict, quarantine list, report and summary.

Great Expectations is slow to import and to run, so each manifest below is validated once (a
module-scoped fixture) and several tests read what that one run wrote.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib.metadata import version

import numpy as np
import pandas as pd
import pytest

from wavefoundry.config import ValidationConfig
from wavefoundry.data import schema
from wavefoundry.validation import (
    QUARANTINE_COLUMNS,
    ManifestError,
    load_quarantine,
    quarantined_ids,
    render_summary,
    validate_manifest,
)
from wavefoundry.validation.suite import fmt_number, fmt_percent

RULES = ValidationConfig()
SPLITS = ("train", "train", "train", "train", "train", "train", "train", "train", "valid", "test")


def _stats(sample_rate: int, seconds: float, index: int) -> dict:
    frames = int(round(sample_rate * seconds))
    return {
        "sample_rate": sample_rate,
        "channels": 1,
        "frames": frames,
        "duration": frames / sample_rate,
        "subtype": "PCM_16",
        "peak": 0.71,
        "rms_db": -21.4,
        "clipping": 0.0,
        "silence": 0.12,
        "dc_offset": 1e-4,
        "non_finite": False,
        "bytes": 44 + 2 * frames,
        "sha256": f"{index:064x}",
        "status": schema.OK,
        "reason": "",
    }


def ljspeech_clip(i: int) -> dict:
    clip_id = f"LJ{1 + i // 100:03d}-{i % 100 + 1:04d}"
    return {
        "dataset": "ljspeech",
        "clip_id": clip_id,
        "path": f"data/raw/ljspeech/LJSpeech-1.1/wavs/{clip_id}.wav",
        "split": SPLITS[i % 10],
        "text": "Printing, in the only sense with which we are at present concerned,",
        "normalized_text": "Printing, in the only sense with which we are at present concerned,",
        **_stats(22050, 2.0 + (i % 7) * 0.9, i),
    }


def vctk_clip(i: int, speaker: str = "p225") -> dict:
    clip_id = f"{speaker}_{i + 1:03d}"
    return {
        "dataset": "vctk",
        "clip_id": clip_id,
        "path": f"data/raw/vctk/VCTK-Corpus-0.92/wav48_silence_trimmed/{speaker}/{clip_id}_mic1.flac",
        "split": SPLITS[i % 10],
        "speaker": speaker,
        "gender": "F",
        "age": 23,
        "accent": "English",
        "region": "Southern England",
        "text": "Please call Stella.",
        "mic": "mic1",
        **_stats(48000, 1.5 + (i % 5) * 0.7, i),
    }


def nsynth_clip(i: int) -> dict:
    pitch, velocity = 21 + (i * 7) % 88, (25, 50, 75, 100, 127)[i % 5]
    note = f"guitar_acoustic_{i // 20:03d}-{pitch:03d}-{velocity:03d}"
    return {
        "dataset": "nsynth",
        "clip_id": note,
        "path": f"data/raw/nsynth/nsynth-train/audio/{note}.wav",
        "split": ("train", "valid", "test")[i % 3],
        "note_str": note,
        "pitch": pitch,
        "velocity": velocity,
        "instrument": i // 20,
        "instrument_str": f"guitar_acoustic_{i // 20:03d}",
        "instrument_family": 3,
        "instrument_family_str": "guitar",
        "instrument_source": 0,
        "instrument_source_str": "acoustic",
        "qualities": "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]",
        "qualities_str": "[]",
        **_stats(16000, 4.0, i),
        "silence": 0.4,
    }


CLIP = {"ljspeech": ljspeech_clip, "vctk": vctk_clip, "nsynth": nsynth_clip}


def manifest(dataset: str, rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame.from_records(rows, columns=list(schema.columns(dataset)))


def good_rows(dataset: str, n: int) -> list[dict]:
    return [CLIP[dataset](i) for i in range(n)]


def unusable(row: dict, status: str, reason: str) -> dict:
    """A row as ingest writes it when the audio could not be read: zero / empty / NaN stats."""
    return {
        **row,
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
        "status": status,
        "reason": reason,
    }


def read(path) -> str:
    return path.read_text(encoding="utf-8")


# All good -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["ljspeech", "vctk", "nsynth"])
def test_a_good_manifest_passes_with_an_empty_quarantine(tmp_path, dataset):
    frame = manifest(dataset, good_rows(dataset, 30))
    result = validate_manifest(frame, dataset, RULES.for_dataset(dataset), tmp_path)
    assert result.success and result.failed_expectations == []
    assert (result.clips, result.quarantined, result.passed) == (30, 0, 30)
    assert read(result.quarantine_path) == ",".join(QUARANTINE_COLUMNS) + "\n"
    assert quarantined_ids(tmp_path) == set()
    report = json.loads(read(result.report_path))
    assert report["success"] is True and report["quarantine"]["count"] == 0
    assert all(e["success"] for e in report["expectations"])
    assert read(result.summary_path).startswith(
        f"{dataset}: 30 clips, 30 pass, 0 quarantined — suite PASSED"
    )


# One bad row of each kind -------------------------------------------------------------------

# clip index -> (what is wrong with it, the reason it must be quarantined with)
LJ_BAD = {
    3: ({"sample_rate": 16000}, "sample rate 16000 Hz, expected 22050 Hz"),
    5: ({"channels": 2}, "2 channels, expected 1"),
    8: ({"subtype": "PCM_U8"}, "subtype PCM_U8, expected one of PCM_16"),
    13: ({"duration": 0.21, "frames": 4630}, "duration 0.21 s outside 0.5–12.0 s"),
    21: ({"clipping": 0.032}, "clipping 3.2% of samples, limit 0.1%"),
    34: ({"silence": 0.85}, "silence 85% of frames, limit 60%"),
    40: ({"non_finite": True}, "contains NaN or inf samples"),
    47: ({"text": "   ", "normalized_text": "   "}, "empty transcript"),
    52: ({"text": None, "normalized_text": None}, "no transcript"),
    60: ({"clip_id": "LJ001-0062"}, "duplicate clip id"),  # clip 61 is LJ001-0062 too
    61: ({}, "duplicate clip id"),
}
LJ_UNUSABLE = {
    70: (schema.UNREADABLE, "not a readable audio file (Format not recognised)"),
    80: (schema.MISSING_AUDIO, "listed in metadata.csv, no wavs/LJ001-0081.wav"),
    90: (schema.UNLISTED, "wavs/LJ001-0091.wav is not in metadata.csv"),
}


def test_validation_logs_nothing_of_great_expectations_internals(tmp_path, caplog):
    """A pipeline task logs at INFO: the task's output is the suite's summary, not GX's
    context set-up (one of whose records printed a stray `[]` line in every run)."""
    with caplog.at_level(logging.INFO):
        result = validate_manifest(
            manifest("ljspeech", good_rows("ljspeech", 3)), "ljspeech", RULES.ljspeech, tmp_path
        )
    assert result.success
    assert [r.getMessage() for r in caplog.records if r.name.startswith("great_expectations")] == []


@pytest.fixture(scope="module")
def ljspeech_bad(tmp_path_factory):
    rows = good_rows("ljspeech", 120)
    for i, (change, _) in LJ_BAD.items():
        rows[i].update(change)
    for i, (status, reason) in LJ_UNUSABLE.items():
        rows[i] = unusable(rows[i], status, reason)
    rows[90].update(text=None, normalized_text=None)  # an unlisted file has no transcript
    frame = manifest("ljspeech", rows)
    before = frame.copy(deep=True)
    out = tmp_path_factory.mktemp("ljspeech-bad")
    result = validate_manifest(frame, "ljspeech", RULES.ljspeech, out)
    return {"frame": frame, "before": before, "result": result, "out": out}


def _by_path(quarantine: pd.DataFrame) -> dict[str, pd.Series]:
    return {row["path"]: row for _, row in quarantine.iterrows()}


@pytest.mark.parametrize("index", sorted(LJ_BAD))
def test_each_bad_clip_is_quarantined_with_a_concrete_reason(ljspeech_bad, index):
    row = _by_path(load_quarantine(ljspeech_bad["result"].quarantine_path))[
        ljspeech_bad["frame"].loc[index, "path"]
    ]
    assert row["reasons"] == LJ_BAD[index][1]
    assert row["status"] == "ok"


def test_only_the_bad_clips_are_quarantined_each_once(ljspeech_bad):
    frame, result = ljspeech_bad["frame"], ljspeech_bad["result"]
    quarantine = load_quarantine(result.quarantine_path)
    bad = sorted(set(LJ_BAD) | set(LJ_UNUSABLE))
    assert sorted(quarantine["path"]) == sorted(frame.loc[bad, "path"])
    assert result.quarantined == len(quarantine) == len(bad)
    assert quarantined_ids(ljspeech_bad["out"]) == set(frame.loc[bad, "clip_id"])
    assert list(quarantine.columns) == list(QUARANTINE_COLUMNS)


@pytest.mark.parametrize("index", sorted(LJ_UNUSABLE))
def test_an_unusable_clip_is_quarantined_once_for_its_own_reason(ljspeech_bad, index):
    # Its zero sample rate, zero duration and missing transcript are not held against it again.
    row = _by_path(load_quarantine(ljspeech_bad["result"].quarantine_path))[
        ljspeech_bad["frame"].loc[index, "path"]
    ]
    status, reason = LJ_UNUSABLE[index]
    assert row["status"] == status
    assert row["reasons"] == f"{status}: {reason}"
    assert row["expectations"] == "readable (status ok)"


def test_a_duplicate_id_fails_the_suite_and_the_rest_stays_within_mostly(ljspeech_bad):
    result = ljspeech_bad["result"]
    assert not result.success
    assert result.failed_expectations == ["unique clip ids"]
    summary = read(result.summary_path).splitlines()
    assert summary[0] == "ljspeech: 120 clips, 106 pass, 14 quarantined — suite FAILED"
    assert summary[1].startswith("  failed: unique clip ids: 2 of 120 clips")
    assert summary[-1] == "quarantine: quarantine.csv"  # beside summary.txt


def test_validation_leaves_the_manifest_as_it_was(ljspeech_bad):
    pd.testing.assert_frame_equal(ljspeech_bad["frame"], ljspeech_bad["before"])
    assert sorted(p.name for p in ljspeech_bad["out"].iterdir()) == [
        "quarantine.csv",
        "report.json",
        "summary.txt",
    ]


def test_nsynth_pitch_and_velocity_out_of_range_are_quarantined(tmp_path):
    rows = good_rows("nsynth", 60)
    rows[4].update(pitch=12)
    rows[9].update(velocity=60)
    rows[17].update(duration=3.5, frames=56000)
    rows[30] = unusable(
        rows[30], schema.UNREADABLE, "truncated: header says 64000 frames, 20000 present"
    )
    rows[30].update(pitch=np.nan, velocity=np.nan)
    frame = manifest("nsynth", rows)
    result = validate_manifest(frame, "nsynth", RULES.nsynth, tmp_path)
    quarantine = load_quarantine(result.quarantine_path).set_index("clip_id")["reasons"].to_dict()
    assert quarantine == {
        rows[4]["clip_id"]: "pitch 12 outside 21–108",
        rows[9]["clip_id"]: "velocity 60 not in 25, 50, 75, 100, 127",
        rows[17]["clip_id"]: "duration 3.5 s outside 3.99–4.01 s",
        rows[30]["clip_id"]: "unreadable: truncated: header says 64000 frames, 20000 present",
    }
    # 1 of 59 readable clips is 1.7% each, within format_mostly's 5%; duration allows 2%.
    assert result.success, result.failed_expectations


# Mostly -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vctk_p315(tmp_path_factory):
    """VCTK 0.92 has no transcripts for p315: 8 of 58 clips (14%), within text_mostly=0.8."""
    rows = [vctk_clip(i, "p225") for i in range(50)] + [vctk_clip(i, "p315") for i in range(8)]
    for row in rows[50:]:
        row["text"] = None
    out = tmp_path_factory.mktemp("vctk-p315")
    return validate_manifest(manifest("vctk", rows), "vctk", RULES.vctk, out), rows


def test_a_few_bad_clips_within_mostly_pass_the_suite_but_stay_quarantined(vctk_p315):
    result, rows = vctk_p315
    assert result.success and result.failed_expectations == []
    assert quarantined_ids(result.quarantine_path.parent) == {r["clip_id"] for r in rows[50:]}
    assert set(load_quarantine(result.quarantine_path)["reasons"]) == {"no transcript"}
    assert read(result.summary_path) == (
        "vctk: 58 clips, 50 pass, 8 quarantined — suite PASSED\nquarantine: quarantine.csv\n"
    )


def test_the_report_records_every_expectation_and_its_thresholds(vctk_p315):
    result, _ = vctk_p315
    report = json.loads(read(result.report_path))
    assert {k: report[k] for k in ("dataset", "success", "clips", "passed", "quarantined")} == {
        "dataset": "vctk",
        "success": True,
        "clips": 58,
        "passed": 50,
        "quarantined": 8,
    }
    assert report["quarantine"] == {"count": 8, "path": "quarantine.csv"}
    assert report["great_expectations_version"] == version("great_expectations")
    expectations = {e["key"]: e for e in report["expectations"]}
    assert list(expectations) == [
        "row_count",
        "unique_clip_id",
        "readable",
        "sample_rate",
        "channels",
        "subtype",
        "duration",
        "clipping",
        "silence",
        "dc_offset",
        "finite",
        "text_present",
        "text_not_empty",
    ]
    text = expectations["text_present"]
    assert text["success"] is True
    assert (text["unexpected_count"], text["element_count"]) == (8, 58)
    assert text["unexpected_percent"] == pytest.approx(100 * 8 / 58, abs=1e-3)
    assert text["mostly"] == 0.8
    assert expectations["duration"]["thresholds"] == {"min_value": 0.5, "max_value": 20.0}
    assert expectations["sample_rate"]["thresholds"] == {"value_set": [48000]}
    assert expectations["sample_rate"]["row_condition"] == 'status == "ok"'
    assert expectations["row_count"]["observed_value"] == 58
    assert report["rules"]["text_mostly"] == 0.8


def test_too_many_bad_clips_fail_the_suite_naming_the_expectations(tmp_path):
    rows = good_rows("ljspeech", 40)
    for row in rows[:4]:  # 10% at the wrong rate; format_mostly allows 5%
        row["sample_rate"] = 44100
    rules = RULES.ljspeech.model_copy(update={"min_clips": 100})
    result = validate_manifest(manifest("ljspeech", rows), "ljspeech", rules, tmp_path)
    assert not result.success
    assert result.failed_expectations == ["at least 100 clips", "sample rate 22050 Hz"]
    assert result.quarantined == 4
    assert render_summary(result).splitlines() == [
        "ljspeech: 40 clips, 36 pass, 4 quarantined — suite FAILED",
        "  failed: at least 100 clips: found 40",
        "  failed: sample rate 22050 Hz: 4 of 40 clips unexpected (10%), at most 5% allowed",
        f"quarantine: {result.quarantine_path}",
    ]
    assert read(result.summary_path) == render_summary(result, "quarantine.csv") + "\n"
    report = json.loads(read(result.report_path))
    assert report["failed_expectations"] == result.failed_expectations
    rate = next(e for e in report["expectations"] if e["key"] == "sample_rate")
    assert (rate["success"], rate["unexpected_count"], rate["mostly"]) == (False, 4, 0.95)


# Without Great Expectations -----------------------------------------------------------------


def test_a_manifest_missing_a_column_is_refused_before_any_work(tmp_path):
    frame = manifest("ljspeech", good_rows("ljspeech", 3)).drop(columns=["text", "silence"])
    with pytest.raises(ManifestError, match="ljspeech manifest lacks column.s. silence, text"):
        validate_manifest(frame, "ljspeech", RULES.ljspeech, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_missing_quarantine_list_says_to_validate_first(tmp_path):
    with pytest.raises(ManifestError, match="run `wavefoundry validate` first"):
        quarantined_ids(tmp_path)


@pytest.mark.parametrize(
    ("value", "text"), [(0.032, "3.2%"), (0.001, "0.1%"), (0.85, "85%"), (np.nan, "missing")]
)
def test_fractions_read_as_percentages(value, text):
    assert fmt_percent(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(16000, "16000"), (16000.0, "16000"), (0.2099999, "0.21"), (None, "missing")],
)
def test_numbers_read_as_written(value, text):
    assert fmt_number(value) == text


def test_importing_the_package_does_not_import_great_expectations():
    code = "import sys, wavefoundry.validation; print('great_expectations' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# DC offset and determinism ------------------------------------------------------------------


def test_dc_offset_has_its_own_expectation(tmp_path):
    import soundfile as sf

    from wavefoundry.data.manifest import build_manifest

    sr, rng = 22050, np.random.default_rng(0)
    t = np.arange(2 * sr) / sr
    speech = 0.3 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 3 * t)) / 2
    noise = 1e-4 * rng.standard_normal(len(t))  # -80 dBFS
    clips = {
        "LJ001-0001": speech,
        "LJ001-0002": speech + 0.01,  # a small offset is tolerated
        "LJ001-0003": 0.2 + noise,  # the "silent" clip on a DC offset of 0.2
        "LJ001-0004": speech - 0.08,  # sounds fine, sits off centre
    }
    rows = []
    for clip_id, audio in clips.items():
        path = tmp_path / f"{clip_id}.wav"
        sf.write(str(path), audio.astype(np.float32), sr, subtype="PCM_16")
        rows.append(
            {"clip_id": clip_id, "path": str(path), "split": "train", "status": "ok",
             "reason": "", "text": "Some text.", "normalized_text": "Some text."}
        )  # fmt: skip
    result = validate_manifest(
        build_manifest("ljspeech", rows, 1), "ljspeech", RULES.ljspeech, tmp_path / "out"
    )
    reasons = load_quarantine(result.quarantine_path).set_index("clip_id")["reasons"].to_dict()
    assert reasons == {
        "LJ001-0003": "silence 100% of frames, limit 60%; DC offset 0.2, limit ±0.05",
        "LJ001-0004": "DC offset -0.08, limit ±0.05",
    }
    dc = next(e for e in result.expectations if e.key == "dc_offset")
    assert dc.thresholds == {"min_value": -0.05, "max_value": 0.05}
    assert (dc.unexpected_count, dc.element_count) == (2, 4)


def test_reports_are_deterministic(tmp_path):
    rows = good_rows("ljspeech", 30)
    rows[3] = unusable(
        rows[3], schema.UNREADABLE, "not a readable audio file (Format not recognised.)"
    )
    rows[7]["silence"] = 0.9
    written = []
    for run in ("first", "second"):
        out = tmp_path / run / "validated"  # where a pipeline task's temporary folder would be
        validate_manifest(manifest("ljspeech", rows), "ljspeech", RULES.ljspeech, out)
        written.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert set(written[0]) == {"report.json", "summary.txt", "quarantine.csv"}
    assert written[0] == written[1]
    for data in written[0].values():
        assert str(tmp_path).encode() not in data
