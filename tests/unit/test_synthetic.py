"""The sample corpora, read the way a user of the real datasets reads them: csv, json, soundfile."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from wavefoundry.config import SampleDataConfig
from wavefoundry.errors import UserError
from wavefoundry.samples import (
    make_archive,
    make_ljspeech,
    make_nsynth,
    make_sample_data,
    make_vctk,
)

FAMILIES = [
    "bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string",
    "synth_lead", "vocal",
]  # fmt: skip
SOURCES = ["acoustic", "electronic", "synthetic"]
QUALITIES = [
    "bright", "dark", "distortion", "fast_decay", "long_release", "multiphonic",
    "nonlinear_env", "percussive", "reverb", "tempo-synced",
]  # fmt: skip
NSYNTH_TYPES = {
    "note": int,
    "note_str": str,
    "instrument": int,
    "instrument_str": str,
    "pitch": int,
    "velocity": int,
    "sample_rate": int,
    "qualities": list,
    "qualities_str": list,
    "instrument_family": int,
    "instrument_family_str": str,
    "instrument_source": int,
    "instrument_source_str": str,
}


def tree_digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def read_metadata(root: Path) -> list[list[str]]:
    with open(root / "metadata.csv", encoding="utf-8", newline="") as f:
        return list(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE))


def median_f0(x: np.ndarray, sr: int) -> float:
    """Median pitch of the loud frames, by autocorrelation (40 ms frames at 16 kHz)."""
    if sr != 16000:
        x = signal.resample_poly(x, 16000, sr)
        sr = 16000
    frame = 640
    frames = np.stack([x[s : s + frame] for s in range(0, len(x) - frame, frame // 2)])
    rms = np.sqrt(np.mean(frames**2, axis=1))
    voiced = frames[rms > 0.3 * rms.max()]
    voiced = voiced - voiced.mean(axis=1, keepdims=True)
    spectrum = np.fft.rfft(voiced * np.hanning(frame), n=2 * frame)
    autocorrelation = np.fft.irfft(np.abs(spectrum) ** 2)[:, :frame]
    lo, hi = sr // 400, sr // 60
    lags = lo + np.argmax(autocorrelation[:, lo:hi], axis=1)
    return float(np.median(sr / lags))


def lowest_partial(x: np.ndarray, sr: int) -> float:
    """Frequency of the lowest strong spectral peak of the held part of a note."""
    held = x[int(0.1 * sr) : int(1.1 * sr)]
    spectrum = np.abs(np.fft.rfft(held * np.hanning(len(held)), n=4 * len(held)))
    freqs = np.fft.rfftfreq(4 * len(held), 1 / sr)
    peaks, _ = signal.find_peaks(spectrum, height=0.15 * spectrum.max())
    return float(freqs[peaks[freqs[peaks] > 20][0]])


# ------------------------------------------------------------------------------ LJ Speech


@pytest.fixture(scope="module")
def lj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ljspeech(tmp_path_factory.mktemp("lj"), clips=24, seed=0)


def test_ljspeech_metadata_lists_every_wav_once(lj: Path) -> None:
    assert lj.name == "LJSpeech-1.1"
    rows = read_metadata(lj)
    assert len(rows) == 24
    assert all(len(row) == 3 for row in rows)
    ids = [row[0] for row in rows]
    assert all(re.fullmatch(r"LJ\d{3}-\d{4}", clip_id) for clip_id in ids)
    assert ids[0] == "LJ001-0001"
    assert len(set(ids)) == len(ids)
    assert {p.stem for p in (lj / "wavs").glob("*.wav")} == set(ids)
    assert all(row[1].strip() and row[2].strip() for row in rows)
    assert (lj / "README").is_file()


def test_ljspeech_normalized_column_spells_out_numbers(lj: Path) -> None:
    rows = read_metadata(lj)
    differing = [row for row in rows if row[1] != row[2]]
    assert differing, "some rows should carry a number or title that the normalized column expands"
    for _, _, normalized in rows:
        assert not re.search(r"\d", normalized)
        assert "Mr." not in normalized
    assert any(re.search(r"\d", text) for _, text, _ in differing)


def test_ljspeech_audio_is_mono_pcm16_clips_of_speech_length(lj: Path) -> None:
    for wav in sorted((lj / "wavs").glob("*.wav")):
        info = sf.info(wav)
        assert (info.format, info.subtype, info.channels, info.samplerate) == (
            "WAV",
            "PCM_16",
            1,
            22050,
        )
        x, sr = sf.read(wav)
        assert 1.0 <= len(x) / sr <= 10.0
        peak = np.max(np.abs(x))
        assert 0.1 < peak < 1.0
        assert 10 ** (-3.1 / 20) < peak < 10 ** (-0.9 / 20)  # peaks around -3 to -1 dBFS
        # Near-silence at both ends, speech in between.
        edge = int(0.05 * sr)
        assert np.sqrt(np.mean(x[:edge] ** 2)) < 10 ** (-45 / 20)
        assert np.sqrt(np.mean(x[-edge:] ** 2)) < 10 ** (-45 / 20)
        assert np.sqrt(np.mean(x**2)) > 10 ** (-30 / 20)


def test_ljspeech_sounds_like_speech_not_noise(lj: Path) -> None:
    x, sr = sf.read(lj / "wavs" / "LJ001-0001.wav")
    freqs, psd = signal.welch(x, sr, nperseg=1024)
    # Voiced speech puts most energy low, with a harmonic (non-flat) spectrum...
    assert psd[freqs < 1000].sum() > 4 * psd[freqs > 5000].sum()
    flatness = np.exp(np.mean(np.log(psd + 1e-20))) / np.mean(psd)
    assert flatness < 0.25  # white noise: about 1
    # ...and comes in syllables: a strongly modulated 10 ms energy envelope.
    hop = sr // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    envelope = np.sqrt(np.mean(frames**2, axis=1))
    assert envelope.std() / envelope.mean() > 0.6
    # The pitch sits in a speaking voice's range.
    assert 120 < median_f0(x, sr) < 300


def test_ljspeech_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = make_ljspeech(tmp_path / "a", clips=3, seed=7)
    b = make_ljspeech(tmp_path / "b", clips=3, seed=7)
    c = make_ljspeech(tmp_path / "c", clips=3, seed=8)
    assert tree_digest(a) == tree_digest(b)
    assert tree_digest(a).keys() == tree_digest(c).keys()
    assert tree_digest(a)["metadata.csv"] != tree_digest(c)["metadata.csv"]
    assert tree_digest(a)["wavs/LJ001-0001.wav"] != tree_digest(c)["wavs/LJ001-0001.wav"]


def test_ljspeech_rendered_in_processes_is_byte_identical(tmp_path: Path) -> None:
    serial = make_ljspeech(tmp_path / "serial", clips=5, seed=2)
    parallel = make_ljspeech(tmp_path / "parallel", clips=5, seed=2, workers=2)
    assert tree_digest(parallel) == tree_digest(serial)


def test_ljspeech_hours_sets_the_amount_of_audio(tmp_path: Path) -> None:
    root = make_ljspeech(tmp_path, hours=20 / 3600)
    total = sum(sf.info(p).duration for p in (root / "wavs").glob("*.wav"))
    assert 20 <= total < 30
    assert len(read_metadata(root)) == len(list((root / "wavs").glob("*.wav")))


def test_ljspeech_regenerating_replaces_the_corpus(tmp_path: Path) -> None:
    root = make_ljspeech(tmp_path, clips=2)
    (root / "wavs" / "LJ999-0001.wav").write_bytes(b"stale")
    again = make_ljspeech(tmp_path, clips=1)
    assert sorted(p.name for p in (again / "wavs").iterdir()) == ["LJ001-0001.wav"]
    assert len(read_metadata(again)) == 1


# ------------------------------------------------------------------------------ VCTK


@pytest.fixture(scope="module")
def vctk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_vctk(tmp_path_factory.mktemp("vctk"), speakers=5, clips_per_speaker=3, seed=0)


def read_speaker_info(root: Path) -> dict[str, dict[str, str]]:
    lines = (root / "speaker-info.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0].split()[:5] == ["ID", "AGE", "GENDER", "ACCENTS", "REGION"]
    speakers = {}
    for line in lines[1:]:
        fields = line.split()
        speakers[fields[0]] = {
            "age": fields[1],
            "gender": fields[2],
            "accent": fields[3],
            "region": " ".join(fields[4:]),
        }
    return speakers


def test_vctk_speaker_info_describes_the_speakers(vctk: Path) -> None:
    assert vctk.name == "VCTK-Corpus-0.92"
    speakers = read_speaker_info(vctk)
    audio_speakers = {p.name for p in (vctk / "wav48_silence_trimmed").iterdir()}
    assert set(speakers) == audio_speakers
    assert {"p280", "p315", "p362"} <= set(speakers)
    for info in speakers.values():
        assert info["age"].isdigit()
        assert info["gender"] in {"F", "M"}
    # Real VCTK rows, REGION with spaces included.
    assert speakers["p225"] == {
        "age": "23",
        "gender": "F",
        "accent": "English",
        "region": "Southern England",
    }
    assert speakers["p315"]["gender"] == "M"
    assert (vctk / "README.txt").is_file()
    assert (vctk / "license_text").is_file()


def test_vctk_audio_is_48k_pcm16_flac_per_mic(vctk: Path) -> None:
    flacs = sorted((vctk / "wav48_silence_trimmed").rglob("*.flac"))
    assert flacs
    for path in flacs:
        assert re.fullmatch(r"p\d{3}_\d{3}_mic[12]\.flac", path.name)
        info = sf.info(path)
        assert (info.format, info.subtype, info.channels, info.samplerate) == (
            "FLAC",
            "PCM_16",
            1,
            48000,
        )
        x, _ = sf.read(path)
        assert 0.1 < np.max(np.abs(x)) < 1.0
        assert 0.5 < info.duration < 15


def test_vctk_reproduces_the_corpus_quirks(vctk: Path) -> None:
    audio = vctk / "wav48_silence_trimmed"
    # p315: recordings, but no txt folder at all.
    assert not (vctk / "txt" / "p315").exists()
    assert list((audio / "p315").glob("*_mic1.flac"))
    # p280: mic1 only.
    assert list((audio / "p280").glob("*_mic1.flac"))
    assert not list((audio / "p280").glob("*_mic2.flac"))
    # p362: a transcript whose audio is missing.
    orphans = [
        t
        for t in (vctk / "txt" / "p362").glob("*.txt")
        if not (audio / "p362" / f"{t.stem}_mic1.flac").exists()
    ]
    assert len(orphans) == 1
    # Everyone else: every transcript has both microphones, one sentence per file.
    for text in (vctk / "txt").rglob("*.txt"):
        content = text.read_text(encoding="utf-8")
        assert content.endswith("\n") and content.count("\n") == 1
        speaker = text.parent.name
        if speaker in {"p280", "p362"}:
            continue
        for mic in ("mic1", "mic2"):
            assert (audio / speaker / f"{text.stem}_{mic}.flac").is_file()
    assert (vctk / "txt" / "p225" / "p225_001.txt").read_text(
        encoding="utf-8"
    ) == "Please call Stella.\n"


def test_vctk_mic2_is_the_same_utterance_coloured_differently(vctk: Path) -> None:
    mic1, sr = sf.read(vctk / "wav48_silence_trimmed" / "p225" / "p225_002_mic1.flac")
    mic2, _ = sf.read(vctk / "wav48_silence_trimmed" / "p225" / "p225_002_mic2.flac")
    assert len(mic1) == len(mic2)
    assert not np.array_equal(mic1, mic2)
    hop = sr // 100
    env1 = np.sqrt(np.mean(mic1[: len(mic1) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    env2 = np.sqrt(np.mean(mic2[: len(mic2) // hop * hop].reshape(-1, hop) ** 2, axis=1))
    assert np.corrcoef(env1, env2)[0, 1] > 0.9


def test_vctk_male_and_female_speakers_differ_in_pitch(vctk: Path) -> None:
    speakers = read_speaker_info(vctk)
    pitch = {}
    for speaker in ("p225", "p226", "p315", "p362"):
        clips = sorted((vctk / "wav48_silence_trimmed" / speaker).glob("*_mic1.flac"))
        pitch[speaker] = np.median([median_f0(*sf.read(p)) for p in clips])
    female = [pitch[s] for s in pitch if speakers[s]["gender"] == "F"]
    male = [pitch[s] for s in pitch if speakers[s]["gender"] == "M"]
    assert female and male
    assert min(female) > 1.35 * max(male)
    assert all(80 < f < 160 for f in male) and all(160 < f < 280 for f in female)


def test_vctk_same_seed_same_bytes(tmp_path: Path) -> None:
    a = make_vctk(tmp_path / "a", speakers=2, clips_per_speaker=1, seed=3)
    b = make_vctk(tmp_path / "b", speakers=2, clips_per_speaker=1, seed=3)
    assert tree_digest(a) == tree_digest(b)


# ------------------------------------------------------------------------------ NSynth


@pytest.fixture(scope="module")
def nsynth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_nsynth(
        tmp_path_factory.mktemp("nsynth"),
        instruments_per_split={"train": 4, "valid": 2, "test": 2},
        notes_per_instrument=3,
        seed=0,
    )


def load_examples(root: Path) -> dict[str, dict[str, dict]]:
    return {
        split: json.loads((root / f"nsynth-{split}" / "examples.json").read_text(encoding="utf-8"))
        for split in ("train", "valid", "test")
    }


def test_nsynth_examples_json_has_nsynth_keys_and_types(nsynth: Path) -> None:
    assert nsynth.name == "nsynth"
    examples = load_examples(nsynth)
    assert [len(v) for v in examples.values()] == [12, 6, 6]
    for split, notes in examples.items():
        wavs = {p.stem for p in (nsynth / f"nsynth-{split}" / "audio").glob("*.wav")}
        assert wavs == set(notes)
        for note_str, note in notes.items():
            assert set(note) == set(NSYNTH_TYPES)
            for key, kind in NSYNTH_TYPES.items():
                assert type(note[key]) is kind, (key, note[key])
            assert note["note_str"] == note_str
            family, source = note["instrument_family_str"], note["instrument_source_str"]
            assert FAMILIES.index(family) == note["instrument_family"]
            assert SOURCES.index(source) == note["instrument_source"]
            assert re.fullmatch(rf"{family}_{source}_\d{{3}}", note["instrument_str"])
            assert (
                note_str == f"{note['instrument_str']}-{note['pitch']:03d}-{note['velocity']:03d}"
            )
            assert 21 <= note["pitch"] <= 108
            assert note["velocity"] in {25, 50, 75, 100, 127}
            assert note["sample_rate"] == 16000
            assert len(note["qualities"]) == 10 and set(note["qualities"]) <= {0, 1}
            assert all(type(q) is int for q in note["qualities"])
            assert note["qualities_str"] == [
                q for q, flag in zip(QUALITIES, note["qualities"], strict=True) if flag
            ]


def test_nsynth_splits_share_no_instrument_and_notes_are_unique(nsynth: Path) -> None:
    examples = load_examples(nsynth)
    instruments = {
        split: {n["instrument"] for n in notes.values()} for split, notes in examples.items()
    }
    names = {
        split: {n["instrument_str"] for n in notes.values()} for split, notes in examples.items()
    }
    splits = list(examples)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not instruments[a] & instruments[b]
            assert not names[a] & names[b]
    note_ids = [n["note"] for notes in examples.values() for n in notes.values()]
    assert len(set(note_ids)) == len(note_ids)
    # One instrument id per instrument name.
    pairs = {
        (n["instrument"], n["instrument_str"])
        for notes in examples.values()
        for n in notes.values()
    }
    assert len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


def test_nsynth_notes_are_four_seconds_at_the_right_pitch_and_decay(nsynth: Path) -> None:
    checked = 0
    for split, notes in load_examples(nsynth).items():
        for note_str, note in notes.items():
            path = nsynth / f"nsynth-{split}" / "audio" / f"{note_str}.wav"
            info = sf.info(path)
            assert (info.format, info.subtype, info.channels) == ("WAV", "PCM_16", 1)
            assert (info.samplerate, info.frames) == (16000, 64000)
            x, sr = sf.read(path)
            assert 0.05 < np.max(np.abs(x)) < 1.0
            held, last = np.mean(x[: 3 * sr] ** 2), np.mean(x[3 * sr :] ** 2)
            assert last < 0.5 * held
            if 45 <= note["pitch"] <= 84:
                expected = 440 * 2 ** ((note["pitch"] - 69) / 12)
                assert abs(12 * np.log2(lowest_partial(x, sr) / expected)) < 1.0, note_str
                checked += 1
    assert checked >= 3


def test_nsynth_louder_velocity_louder_note(tmp_path: Path) -> None:
    root = make_nsynth(tmp_path, instruments_per_split={"train": 6}, notes_per_instrument=4, seed=1)
    notes = json.loads((root / "nsynth-train" / "examples.json").read_text())
    peaks: dict[int, list[float]] = {}
    for note_str, note in notes.items():
        x, _ = sf.read(root / "nsynth-train" / "audio" / f"{note_str}.wav")
        peaks.setdefault(note["velocity"], []).append(float(np.max(np.abs(x))))
    ordered = [np.mean(peaks[v]) for v in sorted(peaks)]
    assert len(ordered) >= 2 and ordered == sorted(ordered)
    # Splits left out exist, empty.
    assert json.loads((root / "nsynth-test" / "examples.json").read_text()) == {}


def test_nsynth_same_seed_same_bytes(tmp_path: Path) -> None:
    sizes = {"train": 1, "valid": 1, "test": 1}
    a = make_nsynth(tmp_path / "a", instruments_per_split=sizes, notes_per_instrument=1, seed=5)
    b = make_nsynth(tmp_path / "b", instruments_per_split=sizes, notes_per_instrument=1, seed=5)
    assert tree_digest(a) == tree_digest(b)


# ------------------------------------------------------------------------------ archives


@pytest.fixture(scope="module")
def small_corpora(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("small")
    return {
        ".tar.bz2": make_ljspeech(out, clips=2),
        ".zip": make_vctk(out, speakers=4, clips_per_speaker=1),
        ".tar.gz": make_nsynth(out, instruments_per_split={"test": 1}, notes_per_instrument=2)
        / "nsynth-test",
    }


def extract(archive: Path, into: Path) -> None:
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    else:
        with tarfile.open(archive) as tar:
            tar.extractall(into, filter="data")


@pytest.mark.parametrize(
    ("suffix", "name"),
    [
        (".tar.bz2", "LJSpeech-1.1.tar.bz2"),
        (".zip", "VCTK-Corpus-0.92.zip"),
        (".tar.gz", "nsynth-test.jsonwav.tar.gz"),
    ],
)
def test_archive_round_trips_with_the_dataset_folder_on_top(
    small_corpora: dict[str, Path], tmp_path: Path, suffix: str, name: str
) -> None:
    dataset = small_corpora[suffix]
    archive = make_archive(dataset, tmp_path / name)
    assert archive == tmp_path / name
    if suffix == ".zip":
        with zipfile.ZipFile(archive) as zf:
            members = zf.namelist()
    else:
        with tarfile.open(archive) as tar:
            members = tar.getnames()
            assert all(m.uid == 0 and m.gid == 0 for m in tar.getmembers())
            assert len({m.mtime for m in tar.getmembers()}) == 1
    assert {m.split("/")[0] for m in members} == {dataset.name}
    assert members == sorted(members)
    extract(archive, tmp_path / "x")
    assert tree_digest(tmp_path / "x" / dataset.name) == tree_digest(dataset)
    again = make_archive(dataset, tmp_path / "again" / name)
    assert again.read_bytes() == archive.read_bytes()


def test_archive_rejects_an_unknown_type(small_corpora: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match="rar"):
        make_archive(small_corpora[".zip"], tmp_path / "VCTK.rar")


# ------------------------------------------------------------------------------ sample-data


def test_make_sample_data_writes_each_dataset_and_rewrites_cleanly(tmp_path: Path) -> None:
    cfg = SampleDataConfig(
        seed=1,
        ljspeech_clips=2,
        vctk_speakers=2,
        vctk_clips_per_speaker=1,
        nsynth_instruments_per_split={"train": 1, "valid": 1, "test": 1},
        nsynth_notes_per_instrument=1,
    )
    made = make_sample_data(tmp_path, ["ljspeech", "vctk", "nsynth"], cfg)
    assert made == {
        "ljspeech": tmp_path / "LJSpeech-1.1",
        "vctk": tmp_path / "VCTK-Corpus-0.92",
        "nsynth": tmp_path / "nsynth",
    }
    assert len(read_metadata(made["ljspeech"])) == 2
    assert sorted(p.name for p in made["nsynth"].iterdir()) == [
        "nsynth-test",
        "nsynth-train",
        "nsynth-valid",
    ]
    first = tree_digest(made["vctk"])
    (made["vctk"] / "txt" / "stale.txt").write_text("left over\n")
    again = make_sample_data(tmp_path, ["vctk"], cfg)
    assert tree_digest(again["vctk"]) == first


@pytest.mark.parametrize("datasets", [["librispeech"], []])
def test_make_sample_data_refuses_what_it_cannot_make(tmp_path: Path, datasets: list[str]) -> None:
    with pytest.raises(UserError):
        make_sample_data(tmp_path, datasets, SampleDataConfig())
    assert not any(tmp_path.iterdir())
