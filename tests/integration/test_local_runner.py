"""kfp.local's own orchestrator on a small pipeline of its own (no audio, no models), as
`pipeline/local_run.py` drives it: a ParallelFor whose results are collected, an exit handler
that runs after a failure with the final status, a task cache keyed on the inputs; and what
local_run adds: the run record (a state per task, each task's log), the failing task's error
line handed to the exit handler, and a loop body that takes another task's output parameter
getting it (kfp.local hands it the loop item). Each component appends to a journal file, so
the tests see what actually ran."""

import json
from pathlib import Path

import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

from wavefoundry.pipeline.local_run import CACHED, FAILED, SKIPPED, SUCCEEDED, run


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def greet(journal: str, text: str, out: Output[Dataset]) -> str:
    import time
    from pathlib import Path

    Path(out.path).write_text(text)
    with open(journal, "a") as f:
        f.write(f"greet {time.time()}\n")
    return text


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def shout(
    journal: str, word: str, greeting: Input[Dataset], said: str, fail_on: str, pause: float
) -> str:
    import time
    from pathlib import Path

    started = time.time()
    if word == fail_on:
        raise ValueError(f"{word} is not a word to shout")
    time.sleep(pause)
    with open(journal, "a") as f:
        f.write(f"shout {word} {started} {time.time()}\n")
    # The artifact and the parameter greet made, both handed into the loop.
    return Path(greeting.path).read_text() + " " + said + " " + word.upper()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def gather(journal: str, shouts: list) -> str:
    with open(journal, "a") as f:
        f.write(f"gather {' | '.join(shouts)}\n")
    return " | ".join(shouts)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def finish(journal: str, status: dsl.PipelineTaskFinalStatus):
    import os
    from pathlib import Path

    from wavefoundry.pipeline.steps import ERRORS_ENV

    errors = Path(os.environ.get(ERRORS_ENV) or "/nonexistent")
    error = errors.read_text().strip() if errors.is_file() else "-"
    with open(journal, "a") as f:
        f.write(f"finish {status.state} {error}\n")


@dsl.pipeline(name="toy")
def toy(journal: str, words: list = ["a", "b", "c"], fail_on: str = "", pause: float = 0.0):  # noqa: B006
    with dsl.ExitHandler(finish(journal=journal).set_caching_options(False)):
        greeting = greet(journal=journal, text="hello")
        with dsl.ParallelFor(words) as word:
            shouted = shout(
                journal=journal,
                word=word,
                greeting=greeting.outputs["out"],
                said=greeting.outputs["Output"],
                fail_on=fail_on,
                pause=pause,
            )
        gather(journal=journal, shouts=dsl.Collected(shouted.output)).set_caching_options(False)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    package = tmp_path_factory.mktemp("toy") / "toy.yaml"
    compiler.Compiler().compile(toy, str(package))
    return package


def journal_lines(path: Path, first: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.split()[0] == first]


def states(result) -> dict[str, str]:
    return {task.path: task.state for task in result.tasks}


def test_a_run_collects_the_loop_and_ends_with_the_exit_handler(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    result = run(spec, {"journal": str(journal)}, tmp_path / "root")
    assert result.state == SUCCEEDED, result.error
    assert journal_lines(journal, "gather") == [
        "gather hello hello A | hello hello B | hello hello C"
    ]
    assert journal_lines(journal, "finish") == ["finish SUCCEEDED -"]
    assert len(journal_lines(journal, "shout")) == 3
    # The record of the run: every task, its state and log.
    record = json.loads(result.record.read_text())
    assert record["state"] == SUCCEEDED and len(record["tasks"]) == 6
    assert all(Path(t["log"]).is_file() for t in record["tasks"])


def test_a_second_run_reuses_what_is_cached_and_reruns_what_is_not(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    first = run(spec, {"journal": str(journal)}, tmp_path / "root")
    again = run(spec, {"journal": str(journal)}, tmp_path / "root")
    assert again.state == SUCCEEDED
    seen = [(task.path, task.state) for task in again.tasks]
    assert ("greet", CACHED) in seen
    assert next(t for t in again.tasks if t.path == "greet").cached_from == first.job_name
    assert [state for path, state in seen if path == "shout"] == [CACHED] * 3
    assert ("gather", SUCCEEDED) in seen and ("finish", SUCCEEDED) in seen
    assert len(journal_lines(journal, "greet")) == 1  # ran once in two runs
    assert (
        journal_lines(journal, "gather")
        == ["gather hello hello A | hello hello B | hello hello C"] * 2
    )

    # Other inputs, another key: the loop runs again; without the cache, everything does.
    run(spec, {"journal": str(journal), "words": ["a", "d"]}, tmp_path / "root")
    assert len(journal_lines(journal, "shout")) == 3 + 1  # only d is new
    run(spec, {"journal": str(journal)}, tmp_path / "root", cache=False)
    assert len(journal_lines(journal, "greet")) == 2


def test_a_failure_skips_the_rest_and_the_exit_handler_hears_of_it(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    result = run(spec, {"journal": str(journal), "fail_on": "b"}, tmp_path / "root")
    assert result.state == FAILED
    assert result.error == "shout: ValueError: b is not a word to shout"
    seen = states(result)
    assert seen["for-loop-2-iteration-1/shout"] == FAILED
    assert seen["gather"] == SKIPPED
    assert seen["finish"] == SUCCEEDED
    assert journal_lines(journal, "gather") == []
    # kfp.local's final status says "Task exit-handler-1 failed."; the task's own error is
    # handed on by local_run.
    assert journal_lines(journal, "finish") == [
        "finish FAILED shout: ValueError: b is not a word to shout"
    ]
    failed = next(t for t in result.tasks if t.state == FAILED)
    assert "b is not a word to shout" in Path(failed.log).read_text()


def test_loop_items_run_side_by_side_with_parallelism(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    result = run(
        spec, {"journal": str(journal), "words": ["a", "b"], "pause": 3.0}, tmp_path / "root",
        parallelism=2,
    )  # fmt: skip
    assert result.state == SUCCEEDED
    spans = sorted(
        (float(start), float(end))
        for _, _, start, end in (line.split() for line in journal_lines(journal, "shout"))
    )
    # Each shout sleeps 3 s; both were running at the same moment.
    assert max(start for start, _ in spans) < min(end for _, end in spans)


def test_one_at_a_time_without_parallelism(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    result = run(
        spec, {"journal": str(journal), "words": ["a", "b"], "pause": 1.0}, tmp_path / "root"
    )
    assert result.state == SUCCEEDED
    spans = sorted(
        (float(start), float(end))
        for _, _, start, end in (line.split() for line in journal_lines(journal, "shout"))
    )
    assert spans[0][1] <= spans[1][0]


def test_each_task_prints_its_lines_to_progress_and_its_log(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    seen: list[tuple[str, str]] = []
    result = run(
        spec, {"journal": str(journal), "fail_on": "c"}, tmp_path / "root",
        progress=lambda task, line: seen.append((task, line)),
    )  # fmt: skip
    assert ("for-loop-2-iteration-2/shout", "ValueError: c is not a word to shout") in seen
    assert not any("executor_input" in line or line in "{}" for _, line in seen)
    failed = next(t for t in result.tasks if t.state == FAILED)
    assert "c is not a word to shout" in Path(failed.log).read_text()
