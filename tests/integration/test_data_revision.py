"""The data revision a pipeline keys its cached ingest on: read off the sources without
downloading them, the same while the data is the same, new as soon as it changes."""

import shutil

import boto3
import pytest

from wavefoundry.config import StorageConfig
from wavefoundry.data.download import source_revision
from wavefoundry.errors import UserError


def revision(*sources: str, sha256=None, storage=None) -> str:
    return source_revision(list(sources), sha256=sha256 or {}, storage=storage or StorageConfig())


def test_a_folder_keeps_its_revision_until_a_file_changes(sample_corpora, tmp_path):
    folder = tmp_path / "LJSpeech-1.1"
    shutil.copytree(sample_corpora["ljspeech"], folder)
    first = revision(str(folder))
    shutil.copytree(folder, tmp_path / "copy")  # same content elsewhere, newer mtimes
    assert revision(str(tmp_path / "copy")) == first == revision(str(folder))
    wav = next(folder.rglob("*.wav"))
    data = bytearray(wav.read_bytes())
    data[-1] ^= 1  # one sample, one bit
    wav.write_bytes(bytes(data))
    assert revision(str(folder)) != first
    (folder / "wavs" / "new.wav").write_bytes(b"")
    assert len({first, revision(str(folder))}) == 2


def test_a_url_is_asked_for_its_etag_and_not_downloaded(http_server, tmp_path):
    (tmp_path / "LJSpeech-1.1.tar.bz2").write_bytes(b"archive, first release")
    server = http_server(tmp_path)
    url = f"{server.url}/LJSpeech-1.1.tar.bz2"
    first = revision(url)
    assert revision(url) == first
    assert server.bytes_sent == 0, "only HEAD requests"
    (tmp_path / "LJSpeech-1.1.tar.bz2").write_bytes(b"archive, second release")
    assert revision(url) != first
    # A known sha256 is the revision itself: the server is not asked.
    asked = len(server.requests)
    assert revision(url, sha256={"LJSpeech-1.1.tar.bz2": "ab" * 32}) != first
    assert len(server.requests) == asked
    with pytest.raises(UserError, match="http 404"):
        revision(f"{server.url}/missing.tar.bz2")


def test_an_s3_object_is_asked_for_its_etag(moto_server, aws_credentials):
    s3 = boto3.client("s3", endpoint_url=moto_server)
    s3.create_bucket(Bucket="revisions")
    s3.put_object(Bucket="revisions", Key="nsynth-test.jsonwav.tar.gz", Body=b"notes v1")
    storage = StorageConfig(s3_endpoint_url=moto_server)
    uri = "s3://revisions/nsynth-test.jsonwav.tar.gz"
    first = revision(uri, storage=storage)
    assert revision(uri, storage=storage) == first
    s3.put_object(Bucket="revisions", Key="nsynth-test.jsonwav.tar.gz", Body=b"notes v2")
    assert revision(uri, storage=storage) != first
    with pytest.raises(UserError, match="no such key"):
        revision("s3://revisions/missing.tar.gz", storage=storage)
    with pytest.raises(UserError, match="no such bucket"):
        revision("s3://nowhere/x.tar.gz", storage=storage)


def test_a_missing_local_source_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="source not found"):
        revision(str(tmp_path / "nothing-here"))


def test_os_junk_does_not_change_a_folders_revision(sample_corpora, tmp_path):
    """Opening a folder in Finder or Explorer writes .DS_Store / Thumbs.db: not new data."""
    folder = tmp_path / "LJSpeech-1.1"
    shutil.copytree(sample_corpora["ljspeech"], folder)
    first = revision(str(folder))
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (folder / "wavs" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / "wavs" / "._LJ001-0001.wav").write_bytes(b"\x00\x05\x16\x07")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._metadata.csv").write_bytes(b"\x00\x05\x16\x07")
    assert revision(str(folder)) == first
    (folder / "wavs" / "LJ999-0001.wav").write_bytes(b"RIFF")  # a real new file still counts
    assert revision(str(folder)) != first
