"""What a user runs against real data: the official archives, from a folder, an http(s)
server and an S3-compatible store, through `wavefoundry sample-data --archives` and
`wavefoundry ingest --source`. Each gives the same manifest as the folder itself."""

import hashlib
import shutil

import boto3
import pandas as pd
import pytest

from wavefoundry.cli import main

COLUMNS = ["clip_id", "split", "pitch", "velocity", "instrument_str", "frames", "sha256", "status"]
SMALL = [
    "--set", "sample_data.nsynth_instruments_per_split={train: 2, valid: 1, test: 1}",
    "--set", "sample_data.nsynth_notes_per_instrument=2",
]  # fmt: skip


@pytest.fixture
def nsynth_archives(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sample-data", "-d", "nsynth", "--archives", *SMALL]) == 0
    archives = sorted((tmp_path / "data" / "sample").glob("nsynth-*.jsonwav.tar.gz"))
    assert [a.name for a in archives] == [
        "nsynth-test.jsonwav.tar.gz",
        "nsynth-train.jsonwav.tar.gz",
        "nsynth-valid.jsonwav.tar.gz",
    ]
    assert main(["ingest", "-d", "nsynth"]) == 0
    reference = pd.read_parquet("data/manifest/nsynth.parquet")[COLUMNS]
    served = tmp_path / "served"
    served.mkdir()
    for archive in archives:
        shutil.copy(archive, served / archive.name)
    shutil.rmtree("data/manifest")
    return served, reference


def ingest(*sources, extra=()):
    args = ["ingest", "-d", "nsynth", *extra]
    for source in sources:
        args += ["--source", source]
    return main(args)


def test_ingest_from_http_archives_with_checksums(nsynth_archives, http_server):
    served, reference = nsynth_archives
    server = http_server(served)
    names = sorted(p.name for p in served.iterdir())
    sha = ", ".join(f"{n}: {hashlib.sha256((served / n).read_bytes()).hexdigest()}" for n in names)
    assert (
        ingest(
            *(f"{server.url}/{n}" for n in names),
            extra=["--set", f"datasets.nsynth.sha256={{{sha}}}"],
        )
        == 0
    )
    assert pd.read_parquet("data/manifest/nsynth.parquet")[COLUMNS].equals(reference)
    downloaded = sorted(p.name for p in (served.parent / "data" / "downloads").iterdir())
    assert downloaded == sorted([*names, *(f"{n}.source" for n in names)])  # each, and its URL


def test_ingest_from_s3_archives(nsynth_archives, moto_server, aws_credentials):
    served, reference = nsynth_archives
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="nsynth-archives")
    for archive in served.iterdir():
        s3.upload_file(str(archive), "nsynth-archives", f"v2.2/{archive.name}")
    sources = [f"s3://nsynth-archives/v2.2/{p.name}" for p in sorted(served.iterdir())]
    assert ingest(*sources, extra=["--set", f"storage.s3_endpoint_url={moto_server}"]) == 0
    assert pd.read_parquet("data/manifest/nsynth.parquet")[COLUMNS].equals(reference)


def test_a_checksum_mismatch_is_refused_with_one_line(nsynth_archives, http_server, capsys):
    served, _ = nsynth_archives
    server = http_server(served)
    bad = "{nsynth-test.jsonwav.tar.gz: '" + "0" * 64 + "'}"
    code = ingest(
        f"{server.url}/nsynth-test.jsonwav.tar.gz", extra=["--set", f"datasets.nsynth.sha256={bad}"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("error: checksum mismatch") and "\n" not in err
    assert not (served.parent / "data" / "manifest" / "nsynth.parquet").exists()
