"""What a shared project folder and a real disk throw at the main job (issue 12, items 3 and
4), as a user runs the CLI: two runs started together in one folder, a writer killed midway,
a full disk (a real tmpfs of a few MB) and a folder it may not write (a non-root user)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def small_params(clips: int = 6) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["sample_data"]["ljspeech_clips"] = clips
    params["workers"] = 1
    params["datasets"]["ljspeech"]["split"] = {
        "by": "hash", "valid_fraction": 0.2, "test_fraction": 0.2,
    }  # fmt: skip
    return params


def project(root: Path, clips: int = 6) -> Path:
    """params.yaml and the tiny recipe it names, with `clips` sample clips."""
    (root / "configs").mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(clips), sort_keys=False))
    tiny = yaml.safe_load((REPO / "configs" / "tiny.yaml").read_text())
    tiny["training"].update(steps=2, checkpoint_every=2, validate_every=2, log_every=1)
    tiny["training"].pop("per_family", None)  # every family this short
    (root / "configs" / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    return root


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "wavefoundry.cli", *args]


def run(cwd: Path, *args: str, user: int | None = None) -> subprocess.CompletedProcess:
    prefix = []
    if user is not None:  # as an unprivileged user: root writes anywhere
        prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
        prefix += ["--inh-caps=-all", "--bounding-set=-all"]
    return subprocess.run(
        [*prefix, *command(*args)], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def one_error_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def whole_ljspeech(folder: Path) -> int:
    """The corpus's clip count, after checking that every listed clip is there."""
    rows = (folder / "metadata.csv").read_text(encoding="utf-8").splitlines()
    for row in rows:
        assert (folder / "wavs" / f"{row.split('|')[0]}.wav").is_file(), row
    return len(rows)


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


# --- concurrent runs in one folder ----------------------------------------------------------


def test_concurrent_runs_in_one_folder_take_turns_or_refuse_in_one_line(tmp_path):
    root = project(tmp_path / "project", clips=6)
    # Two sample-data at once: they take turns on the corpus; both succeed, it is whole.
    both = [
        subprocess.Popen(command("sample-data", "-d", "ljspeech"), cwd=root, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]  # fmt: skip
    for process in both:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
    corpus = root / "data" / "sample" / "LJSpeech-1.1"
    assert whole_ljspeech(corpus) == 6
    assert not list(corpus.parent.glob(".ljspeech-making-*"))

    # A pipeline run holds the folder; a second one refuses in one line and changes nothing.
    first = subprocess.Popen(
        command("pipeline", "run"), cwd=root, text=True, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        lock = root / ".wavefoundry" / "kfp" / ".run.lock"
        deadline = time.monotonic() + 300
        while not (lock.is_file() and lock.read_text().strip()):
            assert first.poll() is None, "the first run ended before it took the folder"
            assert time.monotonic() < deadline, "the first run never took the folder"
            time.sleep(0.5)
        second = run(root, "pipeline", "run")
        line = one_error_line(second)
        assert f"pid {first.pid}" in line and "wait for it to finish" in line
        assert "pipeline run" in line
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)


def test_a_sample_corpus_writer_killed_midway_leaves_the_previous_corpus_whole(tmp_path):
    root = project(tmp_path / "project", clips=4)
    assert run(root, "sample-data", "-d", "ljspeech").returncode == 0
    corpus = root / "data" / "sample" / "LJSpeech-1.1"
    before = digest(corpus)
    # A much larger corpus, killed while it is being written.
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(clips=400), sort_keys=False))
    writer = subprocess.Popen(
        command("sample-data", "-d", "ljspeech"), cwd=root, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not any(p.glob("wavs/*.wav") for p in corpus.parent.glob(".ljspeech-making-*/*")):
        assert writer.poll() is None, "the writer finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait(timeout=60)
    assert digest(corpus) == before and whole_ljspeech(corpus) == 4
    # The next writer clears what the killed one left and makes the new corpus whole.
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(clips=5), sort_keys=False))
    assert run(root, "sample-data", "-d", "ljspeech").returncode == 0
    assert whole_ljspeech(corpus) == 5
    assert not list(corpus.parent.glob(".ljspeech-making-*"))


# --- a full disk and a folder it may not write ------------------------------------------------


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A project whose data folder is a 24 MB tmpfs (root can mount one; else skipped), in a
    folder every user may enter (the unprivileged case runs as `nobody`)."""
    root = Path(tempfile.mkdtemp(prefix="wavefoundry-disk-"))
    root.chmod(0o755)
    data = root / "data"
    data.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m,mode=0755", "tmpfs", str(data)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        shutil.rmtree(root)
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield project(root, clips=6)
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def fill(disk: Path) -> Path:
    """Write until the file system is full; the filler file."""
    filler = disk / "filler"
    with contextlib.suppress(OSError), open(filler, "wb") as handle:
        while True:
            handle.write(b"\0" * (1 << 16))
            handle.flush()
    return filler


def test_a_full_disk_or_a_read_only_folder_is_one_line_naming_the_path(small_disk: Path):
    root = small_disk
    data = root / "data"
    assert run(root, "sample-data", "-d", "ljspeech").returncode == 0
    done = run(root, "prepare", "-d", "ljspeech")
    assert done.returncode == 0, done.stderr
    store = data / "processed" / "ljspeech"
    version = data / "processed" / "ljspeech.version.json"
    manifest = data / "manifest" / "ljspeech.parquet"
    before = (digest(store), version.read_text(), manifest.read_bytes())

    filler = fill(data)
    # store on a full disk: one line naming the path; the previous store and version stay.
    line = one_error_line(run(root, "store", "-d", "ljspeech"))
    assert line == (
        "error: cannot write data/processed/ljspeech: no space left on the device (ENOSPC)"
    )
    # ingest on a full disk: the previous manifest stays.
    line = one_error_line(run(root, "ingest", "-d", "ljspeech"))
    assert "(ENOSPC)" in line and "data/manifest/ljspeech.parquet" in line
    # the sample corpus on a full disk: the previous corpus stays whole.
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(clips=7), sort_keys=False))
    line = one_error_line(run(root, "sample-data", "-d", "ljspeech"))
    assert "(ENOSPC)" in line and "data/sample/LJSpeech-1.1" in line
    assert whole_ljspeech(data / "sample" / "LJSpeech-1.1") == 6
    (root / "params.yaml").write_text(yaml.safe_dump(small_params(clips=6), sort_keys=False))
    filler.unlink()
    assert (digest(store), version.read_text(), manifest.read_bytes()) == before
    assert not [p.name for p in (data / "processed").iterdir() if p.name.startswith(".")]

    # A folder this user may not write (it reads everything else): one line, EACCES, the
    # previous store stays.
    subprocess.run(["chmod", "-R", "a+rX", str(data)], check=True)
    (data / "processed").chmod(0o555)
    line = one_error_line(run(root, "store", "-d", "ljspeech", user=65534))
    assert "permission denied (EACCES)" in line and "data/processed" in line
    (data / "manifest").chmod(0o555)
    line = one_error_line(run(root, "ingest", "-d", "ljspeech", user=65534))
    assert "(EACCES)" in line and "data/manifest" in line
    assert (digest(store), version.read_text(), manifest.read_bytes()) == before
    assert json.loads(version.read_text())["dataset"] == "ljspeech"
