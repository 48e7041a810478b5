"""Each adapter reads its sample corpus and its official archive form, with every conditioning column."""

import csv
import json
import shutil
import tarfile
import zipfile

import pandas as pd
import pytest
import soundfile as sf

from wavefoundry.config import DatasetConfig, StorageConfig
from wavefoundry.data import get_adapter, schema
from wavefoundry.data.download import resolve_sources
from wavefoundry.data.layout import LayoutError
from wavefoundry.data.manifest import build_manifest
from wavefoundry.errors import UserError
from wavefoundry.samples import make_archive


def manifest_of(dataset, dirs, cfg=None):
    rows = get_adapter(dataset).list_clips(dirs, cfg or DatasetConfig())
    return build_manifest(dataset, rows, workers=1)


def from_archives(tmp_path, archives):
    return resolve_sources(
        [str(a) for a in archives],
        tmp_path / "raw",
        tmp_path / "dl",
        sha256={},
        storage=StorageConfig(),
        max_bytes=2**30,
    )


def test_ljspeech_rows_match_metadata_and_audio(sample_corpora):
    root = sample_corpora["ljspeech"]
    with open(root / "metadata.csv", encoding="utf-8", newline="") as f:
        metadata = list(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE))
    manifest = manifest_of("ljspeech", [root.parent])
    assert len(manifest) == len(metadata) == 12
    assert (manifest["status"] == schema.OK).all()
    by_id = manifest.set_index("clip_id")
    for clip_id, text, normalized in metadata:
        assert by_id.loc[clip_id, "text"] == text
        assert by_id.loc[clip_id, "normalized_text"] == normalized
        info = sf.info(str(root / "wavs" / f"{clip_id}.wav"))
        assert by_id.loc[clip_id, "duration"] == pytest.approx(info.duration)
        assert by_id.loc[clip_id, "sample_rate"] == 22050
    assert set(manifest["split"]) <= {"train", "valid", "test"}


def test_ljspeech_archive_reads_the_same(sample_corpora, tmp_path):
    root = sample_corpora["ljspeech"]
    archive = make_archive(root, tmp_path / "LJSpeech-1.1.tar.bz2")
    from_dir = manifest_of("ljspeech", [root])
    from_tar = manifest_of("ljspeech", from_archives(tmp_path, [archive]))
    columns = ["clip_id", "split", "text", "normalized_text", "frames", "sha256", "status"]
    assert from_tar[columns].equals(from_dir[columns])


def test_vctk_rows_carry_speaker_info_and_the_corpus_holes(sample_corpora):
    root = sample_corpora["vctk"]
    manifest = manifest_of("vctk", [root])
    speakers = {}
    for line in (root / "speaker-info.txt").read_text().splitlines()[1:]:
        fields = line.split()
        speakers[fields[0]] = fields[1:4]
    transcripts = {p.stem for p in (root / "txt").glob("*/*.txt")}
    mic1 = {p.name[: -len("_mic1.flac")] for p in root.glob("wav48_silence_trimmed/*/*_mic1.flac")}
    assert set(manifest["clip_id"]) == transcripts | mic1
    for row in manifest.itertuples():
        age, gender, accent = speakers[row.speaker]
        assert (str(row.age), row.gender, row.accent) == (age, gender, accent)
        assert row.mic == "mic1"
    ok = manifest[manifest["status"] == schema.OK]
    assert (ok["sample_rate"] == 48000).all() and (ok["subtype"] == "PCM_16").all()
    # p315 has no transcripts: its clips are listed, with no text, and still probed.
    p315 = manifest[manifest["speaker"] == "p315"]
    assert len(p315) and p315["text"].isna().all() and (p315["status"] == schema.OK).all()
    # A transcript without audio is listed as missing audio, not dropped.
    missing = manifest[manifest["status"] == schema.MISSING_AUDIO]
    assert len(missing) >= 1 and missing["reason"].str.contains("has no audio").all()
    text_of = ok.dropna(subset=["text"]).set_index("clip_id")["text"]
    for clip_id, text in text_of.items():
        speaker = clip_id.split("_")[0]
        assert (root / "txt" / speaker / f"{clip_id}.txt").read_text().strip() == text


def test_vctk_mic2_lists_p280_as_missing(sample_corpora):
    manifest = manifest_of("vctk", [sample_corpora["vctk"]], DatasetConfig(mic="mic2"))
    p280 = manifest[manifest["speaker"] == "p280"]
    assert len(p280) and (p280["status"] == schema.MISSING_AUDIO).all()
    assert p280["reason"].str.contains("no mic2 recording").all()
    assert (manifest["mic"] == "mic2").all()


def test_vctk_zip_reads_the_same(sample_corpora, tmp_path):
    root = sample_corpora["vctk"]
    archive = make_archive(root, tmp_path / "VCTK-Corpus-0.92.zip")
    columns = ["clip_id", "speaker", "text", "frames", "sha256", "status"]
    assert manifest_of("vctk", from_archives(tmp_path, [archive]))[columns].equals(
        manifest_of("vctk", [root])[columns]
    )


def test_nsynth_rows_equal_examples_json(sample_corpora):
    root = sample_corpora["nsynth"]
    manifest = manifest_of("nsynth", [root])
    expected = {}
    for split in ("train", "valid", "test"):
        examples = json.loads((root / f"nsynth-{split}" / "examples.json").read_text())
        expected.update({k: (split, v) for k, v in examples.items()})
    assert set(manifest["clip_id"]) == set(expected)
    for row in manifest.to_dict("records"):
        split, attributes = expected[row["clip_id"]]
        assert row["split"] == split and row["status"] == schema.OK
        for key in (
            "pitch",
            "velocity",
            "instrument",
            "instrument_str",
            "instrument_family_str",
            "instrument_source_str",
            "qualities_str",
        ):
            value = row[key].tolist() if hasattr(row[key], "tolist") else row[key]
            assert value == attributes[key], key
        assert row["frames"] == 64000 and row["sample_rate"] == 16000


def test_nsynth_split_archives_read_the_same(sample_corpora, tmp_path):
    root = sample_corpora["nsynth"]
    archives = [
        make_archive(d, tmp_path / f"{d.name}.jsonwav.tar.gz")
        for d in sorted(root.glob("nsynth-*"))
    ]
    columns = ["clip_id", "split", "pitch", "velocity", "frames", "sha256"]
    from_tars = manifest_of("nsynth", from_archives(tmp_path, archives))
    assert from_tars[columns].equals(manifest_of("nsynth", [root])[columns])


@pytest.mark.parametrize("dataset", ["ljspeech", "vctk", "nsynth"])
def test_a_folder_without_the_layout_is_one_clear_error(tmp_path, dataset):
    (tmp_path / "something").mkdir()
    with pytest.raises(LayoutError) as info:
        get_adapter(dataset).list_clips([tmp_path], DatasetConfig())
    assert str(tmp_path) in str(info.value)


def test_an_unknown_dataset_is_a_user_error():
    with pytest.raises(UserError, match="unknown dataset 'timit'"):
        get_adapter("timit")


def test_vctk_can_hold_out_whole_speakers(sample_corpora):
    speakers = sorted(manifest_of("vctk", [sample_corpora["vctk"]])["speaker"].unique())
    split = {"by": "speaker", "valid_speakers": speakers[2:3], "test_speakers": speakers[:2]}
    manifest = manifest_of("vctk", [sample_corpora["vctk"]], DatasetConfig(split=split))
    by_speaker = manifest.groupby("speaker")["split"].agg(set).to_dict()
    assert [by_speaker[s] for s in speakers[:3]] == [{"test"}, {"test"}, {"valid"}]
    assert all(by_speaker[s] == {"train"} for s in speakers[3:]) and len(speakers) > 3


def test_hash_splits_are_stable_and_near_the_fractions():
    from wavefoundry.config import SplitConfig
    from wavefoundry.data.layout import assign_split, hash_fraction

    cfg = SplitConfig(valid_fraction=0.1, test_fraction=0.2)
    ids = [f"LJ{c:03d}-{n:04d}" for c in range(1, 11) for n in range(1, 301)]
    splits = [assign_split(i, None, cfg) for i in ids]
    assert splits == [assign_split(i, None, cfg) for i in ids]
    assert splits.count("test") / len(ids) == pytest.approx(0.2, abs=0.02)
    assert splits.count("valid") / len(ids) == pytest.approx(0.1, abs=0.02)
    # Pinned: a change of hash would silently reshuffle every split of every stored dataset.
    assert [assign_split(i, None, cfg) for i in ("LJ001-0001", "LJ001-0002", "LJ001-0003")] == [
        "train",
        "train",
        "test",
    ]
    assert hash_fraction("LJ001-0001") == pytest.approx(0.465134884884364)


# ---------------------------------------------------------------- files saved on Windows


def _resave(path, encoding):
    """`path` saved again as a Windows editor does: with a byte-order mark and CRLF line ends."""
    text = path.read_bytes().decode("utf-8").replace("\r\n", "\n").replace("\n", "\r\n")
    path.write_bytes(text.encode(encoding))  # utf-8-sig and utf-16 both write the BOM


# (dataset, the text files to resave, relative to the corpus root)
TEXT_FILES = {
    "ljspeech metadata.csv": ("ljspeech", ["metadata.csv"]),
    "vctk speaker-info.txt": ("vctk", ["speaker-info.txt"]),
    "vctk transcripts": ("vctk", ["txt/*/*.txt"]),
    "nsynth examples.json": ("nsynth", ["nsynth-*/examples.json"]),
}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
@pytest.mark.parametrize("files", list(TEXT_FILES))
def test_every_text_file_an_adapter_reads_tolerates_a_bom_and_crlf(
    sample_corpora, tmp_path, files, encoding
):
    dataset, patterns = TEXT_FILES[files]
    root = tmp_path / sample_corpora[dataset].name
    shutil.copytree(sample_corpora[dataset], root)
    resaved = [path for pattern in patterns for path in root.glob(pattern)]
    for path in resaved:
        _resave(path, encoding)
    assert resaved and all(p.read_bytes()[:2] in (b"\xef\xbb", b"\xff\xfe") for p in resaved)

    clean = manifest_of(dataset, [sample_corpora[dataset]]).drop(columns=["path"])
    windows = manifest_of(dataset, [root]).drop(columns=["path"])
    # Every clip reads exactly as from the clean files: no phantom row, no garbled id or text.
    pd.testing.assert_frame_equal(windows, clean)
    assert not windows["clip_id"].str.contains("\ufeff|\r").any()
    for column in ("text", "normalized_text", "speaker", "region", "instrument_str"):
        if column in windows:
            assert not windows[column].dropna().astype(str).str.contains("\ufeff|\r").any()


def test_a_bom_that_does_not_match_the_bytes_is_one_clear_error(sample_corpora, tmp_path):
    root = tmp_path / "LJSpeech-1.1"
    shutil.copytree(sample_corpora["ljspeech"], root)
    (root / "metadata.csv").write_bytes(b"\xff\xfe" + "LJ|a|a\n".encode("utf-16-le") + b"\x00")
    with pytest.raises(LayoutError, match=r"metadata.csv: starts with a UTF-16-LE byte-order mark"):
        manifest_of("ljspeech", [root])


# ---------------------------------------------------------------- OS junk

APPLEDOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(4070)


def _add_os_junk(top, root):
    """What macOS and Windows leave in a dataset folder (`root`, under `top`): an AppleDouble
    `._X` beside every file, `.DS_Store` in every folder, `Thumbs.db` and `desktop.ini`,
    hidden folders, and `__MACOSX/` as Archive Utility packs it. Returns how many files."""
    added = []
    for path in sorted(root.rglob("*")):
        if path.is_file():
            added.append(path.with_name(f"._{path.name}"))
            added[-1].write_bytes(APPLEDOUBLE)
    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
        added.append(folder / ".DS_Store")
    for name in ("Thumbs.db", "desktop.ini"):
        (root / name).write_bytes(b"\xd0\xcf\x11\xe0junk")
        added.append(root / name)
    for hidden in (top / ".Trashes" / "501" / "old.wav", top / ".Spotlight-V100" / "Store-V2"):
        hidden.parent.mkdir(parents=True, exist_ok=True)
        hidden.write_bytes(b"not data")
        added.append(hidden)
    for path in sorted(root.rglob("*.*")):
        if path.is_file() and not path.name.startswith("."):
            mac = top / "__MACOSX" / path.relative_to(top)
            mac = mac.with_name(f"._{path.name}")
            mac.parent.mkdir(parents=True, exist_ok=True)
            mac.write_bytes(APPLEDOUBLE)
            added.append(mac)
    return len(added)


def _pack(top, archive):
    """Everything under `top`, hidden files included, as a Mac's tar or Archive Utility packs it."""
    files = sorted(p for p in top.rglob("*") if p.is_file())
    if archive.name.endswith(".zip"):
        with zipfile.ZipFile(archive, "w") as zf:
            for path in files:
                zf.write(path, path.relative_to(top).as_posix())
    else:
        with tarfile.open(archive, "w:gz") as tar:
            for path in files:
                tar.add(path, path.relative_to(top).as_posix())
    return archive


def _ingest(dataset, source, data):
    from wavefoundry import stages
    from wavefoundry.config import load_config

    cfg = load_config(None, overrides=[f"paths.data={data}", "workers=1"])
    result = stages.ingest(cfg, dataset, [str(source)])
    return result, pd.read_parquet(result.manifest_path)


@pytest.mark.parametrize("form", ["folder", "archive"])
@pytest.mark.parametrize("dataset", ["ljspeech", "vctk", "nsynth"])
def test_os_junk_is_ignored_for_every_dataset_and_counted(sample_corpora, tmp_path, dataset, form):
    corpus = sample_corpora[dataset]
    top = tmp_path / "from-a-mac"
    shutil.copytree(corpus, top / corpus.name)
    junk = _add_os_junk(top, top / corpus.name)
    source = top
    if form == "archive":
        suffix = ".zip" if dataset == "vctk" else ".tar.gz"
        source = _pack(top, tmp_path / f"{corpus.name}{suffix}")

    clean, clean_manifest = _ingest(dataset, corpus, tmp_path / "clean")
    mac, mac_manifest = _ingest(dataset, source, tmp_path / "mac")

    columns = [c for c in clean_manifest.columns if c != "path"]
    pd.testing.assert_frame_equal(mac_manifest[columns], clean_manifest[columns])
    assert (mac.clips, mac.usable, mac.problems) == (clean.clips, clean.usable, clean.problems)
    assert (clean.os_junk, mac.os_junk) == (0, junk)


@pytest.mark.parametrize("dataset", ["ljspeech", "vctk"])
def test_a_zip_made_on_windows_ingests_like_the_folder(sample_corpora, tmp_path, dataset):
    """Old Windows tools (PowerShell's Compress-Archive) store `LJSpeech-1.1\\wavs\\X.wav`."""
    corpus = sample_corpora[dataset]
    archive = tmp_path / f"{corpus.name}.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(corpus.rglob("*")):
            name = str(path.relative_to(corpus.parent)) + ("" if path.is_file() else "/")
            info = zipfile.ZipInfo(name.replace("/", "\\"))
            info.create_system = 0  # MS-DOS / Windows FAT
            zf.writestr(info, path.read_bytes() if path.is_file() else b"")
    assert any("\\wavs\\" in n or "\\txt\\" in n for n in zipfile.ZipFile(archive).namelist())
    columns = ["clip_id", "split", "text", "frames", "sha256", "status", "reason"]
    from_zip = manifest_of(dataset, from_archives(tmp_path, [archive]))
    assert from_zip[columns].equals(manifest_of(dataset, [corpus])[columns])
