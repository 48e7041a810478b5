"""`wavefoundry train`, and the other commands, given bad input: one clear line on stderr, exit 2,
no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARAMS = REPO / "params.yaml"

pytestmark = pytest.mark.slow


def run_cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """`wavefoundry ARGS` in `folder`, as a user types it there."""
    command = [sys.executable, "-m", "wavefoundry.cli", *args]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=300)


def run_train(tmp: Path, data: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(
        tmp, "train", "--params", str(PARAMS),
        "--set", f"paths.data={data}", "--set", f"paths.runs={tmp / 'runs'}",
        "--set", f"tracking.uri=sqlite:///{tmp / 'mlflow.db'}",
        "--set", f"tracking.artifact_location={tmp / 'mlartifacts'}", *args,
    )  # fmt: skip


def assert_one_line_error(done: subprocess.CompletedProcess, *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["-m", "wavernn", "-d", "ljspeech"], ["unknown model 'wavernn'", "wavenet"]),
        # --steps writes training.per_family.NAME: the name is checked before (a traceback was)
        (["-m", "tacotron3", "-d", "ljspeech", "--steps", "1"], ["unknown model 'tacotron3'"]),
        (["-m", "wavenet", "-d", "librispeech"], ["unknown dataset 'librispeech'"]),
        (["-m", "wavegan", "-d", "ljspeech"], ["wavegan does not train on ljspeech", "nsynth"]),
        (
            ["-m", "wavenet", "-d", "ljspeech", "--set", "models.wavenet.residual_chanels=8"],
            ["unknown key 'models.wavenet.residual_chanels'"],
        ),
        (
            ["-m", "wavenet", "-d", "ljspeech", "--set", "models.wavenet.layers=many"],
            ["models.wavenet.layers"],
        ),
        (["-m", "wavenet", "-d", "ljspeech", "--set", "training=fast"], ["'training'"]),
        (["-m", "wavenet", "-d", "ljspeech", "--set", "training.batch_size=0"], ["batch_size"]),
        (["-m", "wavenet", "-d", "ljspeech", "--steps", "-3"], ["--steps"]),
    ],
)
def test_bad_names_and_configs_are_one_line(
    stored_samples: Path, tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    assert_one_line_error(run_train(tmp_path, stored_samples, *args), *fragments)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        # Not "no finished tacotron3 run ...: train one first" with a command that fails too.
        (["evaluate", "-m", "tacotron3", "-d", "ljspeech"], ["unknown model 'tacotron3'"]),
        (["evaluate", "-m", "hifigan", "-d", "librispeech"], ["unknown dataset 'librispeech'"]),
        # A params file named on the command line must exist: the code's defaults (paper-sized
        # models) were used instead, silently.
        (["config", "--params", "nope.yaml"], ["params file not found: nope.yaml"]),
        (["train", "--params", "nope.yaml", "-m", "hifigan", "-d", "ljspeech"], ["nope.yaml"]),
        # A typo in a local source: not a pipeline run started and recorded as FAILED.
        (
            ["pipeline", "run", "--params", str(PARAMS), "--source", "/no/such/corpus"],
            ["source not found: /no/such/corpus"],
        ),
        # A fresh clone's default source, the sample corpus not made yet: say how to make it.
        (["prepare", "-d", "ljspeech"], ["sample corpus: make it with wavefoundry sample-data"]),
        # A misspelt --param: refused before the sample corpus was made; names in one order.
        (
            ["pipeline", "run", "--params", str(PARAMS), "--param", "nosuch=1"],
            ["no parameter nosuch (it has: config, data_config, data_revision, dataset,"],
        ),
        # A value of the wrong type ran the pipeline; a parameter with its own option ran it
        # with the other dataset's sources, to fail at ingest; --parallelism 5 was run as 2.
        (
            ["pipeline", "run", "--params", str(PARAMS), "--param", "gpu_count=abc"],
            ["pipeline parameter gpu_count takes a whole number, got 'abc'"],
        ),
        (
            ["pipeline", "run", "--params", str(PARAMS), "--param", "dataset=vctk"],
            ["--param dataset: set it with --dataset/-d"],
        ),
        (
            ["pipeline", "run", "--params", str(PARAMS), "--parallelism", "5"],
            ["--parallelism must be 1 or 2 (kfp.local runs at most 2 tasks at once), got 5"],
        ),
        # argparse's own mistakes: its usage and the message were 3-6 lines; an argument the
        # command does not take was named against the top level ("wavefoundry: error: ...").
        (
            ["ingest", "-d", "nosuch"],
            ["invalid choice: 'nosuch'", "(see wavefoundry ingest --help)"],
        ),
        (["pipeline", "run", "--runner", "docker"], ["(see wavefoundry pipeline run --help)"]),
        (["prepare", "-d", "ljspeech", "--source", "x"], ["unrecognized arguments: --source x"]),
        (["train"], ["required: --model/-m, --dataset/-d", "(see wavefoundry train --help)"]),
        (["nosuch"], ["invalid choice: 'nosuch'", "(see wavefoundry --help)"]),
        # Names evaluate and promote refuse: config showed them, pipeline run trained first.
        (
            ["config", "--params", str(PARAMS), "--set", "evaluation.judges=[pesq, bogus]"],
            ["evaluation.judges: unknown judge bogus (known: "],
        ),
        (
            [
                "pipeline",
                "run",
                "--params",
                str(PARAMS),
                "--set",
                "promotion.floor_metrics=[pesqq]",
            ],
            ["promotion.floor_metrics names unknown metric 'pesqq' (known: "],
        ),
        # `config` printed its whole dump, then the error.
        (
            ["config", "--params", str(PARAMS), "--set", "models.tacotron2.nope=1"],
            ["unknown key 'models.tacotron2.nope'"],
        ),
    ],
)
def test_bad_names_and_files_on_other_commands_are_one_line(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    done = run_cli(tmp_path, *args)
    assert_one_line_error(done, *fragments)
    assert not done.stdout  # nothing printed before the error
    assert not (tmp_path / ".wavefoundry" / "kfp" / "runs").exists()  # no pipeline run began
    assert not (tmp_path / "data").exists()  # no sample corpus made


# Files a user hands a command, broken or of another kind: each was a traceback (exit 1), or
# for a promotion file without champions, "no Bento to build" (exit 0).
BROKEN_FILES = {
    "not-json.json": b"{bad",
    "empty.json": b"",
    "list.json": b"[]",
    "trained.json": b'{"run_id": "0123abcd", "steps": 40}',  # train --out's, not promote's
    "champions.json": b'{"champions": [1]}',
    "utf16.yaml": "training:\n  steps: 3\n".encode("utf-16"),  # Notepad's "Unicode"
    "latin1.yaml": b"training:\n  seed: 1  # caf\xe9\n",
    "broken.yaml": b"training:\n  steps: [1, 2\n",
    "empty.yaml": b"# nothing set\n",
}


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["bento", "build", "--promotion", "not-json.json"], ["is not a promotion file: not JSON"]),
        (["bento", "build", "--promotion", "trained.json"], ["promote --out writes", "champions"]),
        (["bento", "build", "--promotion", "champions.json"], ["its 'champions' are not a list"]),
        (["evaluate", "--trained", "empty.json"], ["is not a training record: not JSON"]),
        (
            ["evaluate", "--trained", "list.json"],
            ["train --out writes a JSON object with 'run_id'"],
        ),
        (["promote", "--candidates", "trained.json"], ["is not a candidate file", "'version'"]),
        (["config", "--params", "utf16.yaml"], ["not UTF-8 text (byte 0xff at offset 0)"]),
        (["config", "--params", str(PARAMS), "--config", "latin1.yaml"], ["not UTF-8 text"]),
        (["config", "--params", "broken.yaml"], ["not valid YAML", "at line 3, column 1"]),
        # An empty recipe replaced the tiny one: paper-sized models, silently.
        (
            ["config", "--params", str(PARAMS), "--config", "empty.yaml", "-m", "hifigan"],
            ["empty.yaml is empty: a params file or recipe sets at least one key"],
        ),
    ],
)
def test_broken_files_and_files_of_another_kind_are_one_line(
    tmp_path: Path, args: list[str], fragments: list[str]
) -> None:
    for name, content in BROKEN_FILES.items():
        (tmp_path / name).write_bytes(content)
    done = run_cli(tmp_path, *args)
    assert_one_line_error(done, *fragments)


def test_a_dataset_that_was_never_stored_is_one_line(tmp_path: Path) -> None:
    done = run_train(tmp_path, tmp_path / "empty", "-m", "hifigan", "-d", "ljspeech")
    assert_one_line_error(done, "no stored ljspeech dataset", "wavefoundry prepare -d ljspeech")


def test_a_split_with_no_clips_is_one_line(stored_samples: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(stored_samples, data)
    shutil.rmtree(data / "processed" / "ljspeech" / "valid")
    meta = data / "processed" / "ljspeech" / "meta.json"
    meta.write_text(meta.read_text().replace('"valid"', '"unused"'))
    done = run_train(tmp_path, data, "-m", "hifigan", "-d", "ljspeech")
    assert_one_line_error(done, "no clips in its valid split", "valid_fraction")


def test_a_resume_with_nothing_to_train_is_refused(stored_samples: Path, tmp_path: Path) -> None:
    # It printed an empty table, exit 0, and logged one more model into the finished run.
    trained = run_train(tmp_path, stored_samples, "-m", "wavenet", "-d", "ljspeech", "--steps", "2")
    assert trained.returncode == 0, trained.stderr
    past = run_train(
        tmp_path, stored_samples, "-m", "wavenet", "-d", "ljspeech", "--steps", "1", "--resume"
    )
    assert_one_line_error(past, "is at step 2, past training.steps 1", "--steps above 2")
    done = run_train(
        tmp_path, stored_samples, "-m", "wavenet", "-d", "ljspeech", "--steps", "2", "--resume"
    )
    assert_one_line_error(done, "finished at step 2 already", "--steps above 2")
    more = run_train(
        tmp_path, stored_samples, "-m", "wavenet", "-d", "ljspeech", "--steps", "3", "--resume"
    )
    assert more.returncode == 0, more.stderr
    assert "3 steps" in more.stdout


def test_a_checkpoint_from_another_model_is_refused(stored_samples: Path, tmp_path: Path) -> None:
    trained = run_train(tmp_path, stored_samples, "-m", "wavenet", "-d", "ljspeech", "--steps", "1")
    assert trained.returncode == 0, trained.stderr
    source = tmp_path / "runs" / "ljspeech-wavenet" / "checkpoints"
    shutil.copytree(source, tmp_path / "runs" / "ljspeech-hifigan" / "checkpoints")
    done = run_train(tmp_path, stored_samples, "-m", "hifigan", "-d", "ljspeech", "--resume")
    assert_one_line_error(done, "'wavenet' model, not 'hifigan'")


def test_a_pipeline_task_failing_on_a_user_error_says_it_once_on_stderr(tmp_path: Path) -> None:
    from servers import free_port

    url = f"http://127.0.0.1:{free_port()}/LJSpeech-1.1.tar.gz"  # nothing listens there
    done = run_cli(tmp_path, "pipeline", "run", "--params", str(PARAMS), "--source", url)
    assert done.returncode == 1, done.stderr  # the run failed, and is recorded as FAILED
    assert "Traceback" not in done.stderr
    # The task's `error:` line and "pipeline failed at" said it twice (three times with the
    # task's own line among the progress on stdout).
    assert done.stderr.count(f"cannot reach {url}") == 1, done.stderr
    assert f"pipeline failed at resolve-data-revision: cannot reach {url}" in done.stderr
    assert "resolve-data-revision FAILED after" in done.stderr
    assert "outcome recorded in MLflow run" in done.stdout + done.stderr
