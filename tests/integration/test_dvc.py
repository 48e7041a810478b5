"""DVC versions the data: `dvc repro` the data stages in a fresh git repo, push to an S3
remote on a loopback S3-compatible server (moto), delete cache and outputs, pull, and get
byte-identical processed data. The recorded data version is DVC's own hash."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SMALL = {
    "sample_data": {
        "seed": 0,
        "ljspeech_clips": 8,
        "vctk_speakers": 6,
        "vctk_clips_per_speaker": 4,
        "nsynth_instruments_per_split": {"train": 2, "valid": 1, "test": 1},
        "nsynth_notes_per_instrument": 2,
    }
}

pytestmark = pytest.mark.slow


def digest_tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != ".gitignore"  # DVC's git bookkeeping, not data
    }


@pytest.fixture
def dvc_project(tmp_path, moto_server, aws_credentials):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dvc.yaml", "pyproject.toml"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "src", project / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "configs", project / "configs")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update(SMALL)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def sh(*args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(args, cwd=project, env=env, capture_output=True, text=True)
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
        return result

    bucket = "wavefoundry-dvc-roundtrip"
    boto3.client("s3", endpoint_url=moto_server).create_bucket(Bucket=bucket)
    sh("git", "init", "-q")
    sh("dvc", "init", "-q")
    sh("dvc", "remote", "add", "-d", "s3", f"s3://{bucket}/store")
    sh("dvc", "remote", "modify", "s3", "endpointurl", moto_server)
    return project, sh, bucket


def test_repro_push_pull_round_trip_is_byte_identical(dvc_project, moto_server):
    project, sh, bucket = dvc_project
    # The data stages (the model stages after them are tests/e2e's: dvc repro to a champion).
    sh("dvc", "repro", "store")
    processed = project / "data" / "processed"
    before = digest_tree(processed)
    assert {"ljspeech/train/audio.npy", "vctk/train/index.parquet", "nsynth/test/audio.npy"} <= set(
        before
    )

    # The data version each store wrote is the hash DVC recorded for that output.
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    for dataset in ("ljspeech", "vctk", "nsynth"):
        outs = {o["path"]: o for o in lock["stages"][f"store@{dataset}"]["outs"]}
        version = json.loads((processed / f"{dataset}.version.json").read_text())["data_version"]
        assert outs[f"data/processed/{dataset}"]["md5"] == version

    sh("dvc", "push", "--with-deps", "store")
    listed = boto3.client("s3", endpoint_url=moto_server).list_objects_v2(
        Bucket=bucket, Prefix="store/"
    )
    assert listed["KeyCount"] > 0

    shutil.rmtree(project / ".dvc" / "cache")
    shutil.rmtree(project / "data")
    sh("dvc", "pull", "--with-deps", "store")
    assert digest_tree(processed) == before
    # Nothing is out of date after the pull: the stages would not rerun.
    status = sh("dvc", "status", "--json", "--with-deps", "store")
    assert json.loads(status.stdout) == {}
