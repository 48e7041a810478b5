"""The local runner on a small pipeline of its own (no audio, no models): each component runs
through kfp.local's SubprocessRunner, and the runner supplies what kfp.local leaves out: a
ParallelFor whose results are collected, an exit handler that runs after a failure with the
final status, and a cache keyed on the inputs. Each component appends to a journal file, so
the tests see what actually ran."""

import json
import time
from pathlib import Path

import pytest
from kfp import compiler, dsl
from kfp.dsl import Dataset, Input, Output

from wavefoundry.pipeline.definition import load_spec
from wavefoundry.pipeline.local import CACHED, FAILED, SKIPPED, SUCCEEDED, LocalRun


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def greet(journal: str, text: str, out: Output[Dataset]):
    import time
    from pathlib import Path

    Path(out.path).write_text(text)
    with open(journal, "a") as f:
        f.write(f"greet {time.time()}\n")


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def shout(journal: str, word: str, greeting: Input[Dataset], fail_on: str, pause: float) -> str:
    import time
    from pathlib import Path

    started = time.time()
    if word == fail_on:
        raise ValueError(f"{word} is not a word to shout")
    time.sleep(pause)
    with open(journal, "a") as f:
        f.write(f"shout {word} {started} {time.time()}\n")
    return Path(greeting.path).read_text() + " " + word.upper()


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def gather(journal: str, shouts: list) -> str:
    with open(journal, "a") as f:
        f.write(f"gather {' | '.join(shouts)}\n")
    return " | ".join(shouts)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def finish(journal: str, status: dsl.PipelineTaskFinalStatus):
    with open(journal, "a") as f:
        f.write(f"finish {status.state} {status.error_message or '-'}\n")


@dsl.pipeline(name="toy")
def toy(journal: str, words: list = ["a", "b", "c"], fail_on: str = "", pause: float = 0.0):  # noqa: B006
    with dsl.ExitHandler(finish(journal=journal).set_caching_options(False)):
        greeting = greet(journal=journal, text="hello")
        with dsl.ParallelFor(words) as word:
            shouted = shout(
                journal=journal,
                word=word,
                greeting=greeting.outputs["out"],
                fail_on=fail_on,
                pause=pause,
            )
        gather(journal=journal, shouts=dsl.Collected(shouted.output)).set_caching_options(False)


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    package = tmp_path_factory.mktemp("toy") / "toy.yaml"
    compiler.Compiler().compile(toy, str(package))
    return load_spec(package)


def journal_lines(path: Path, first: str) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.split()[0] == first]


def states(result) -> dict[str, str]:
    return {task.path.split("/", 1)[1]: task.state for task in result.tasks}


def test_a_run_collects_the_loop_and_ends_with_the_exit_handler(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    result = LocalRun(spec, tmp_path / "root").run({"journal": str(journal)})
    assert result.state == SUCCEEDED, result.error
    assert journal_lines(journal, "gather") == ["gather hello A | hello B | hello C"]
    assert journal_lines(journal, "finish") == ["finish SUCCEEDED -"]
    assert len(journal_lines(journal, "shout")) == 3
    # The record of the run: every task, its state and log.
    record = json.loads(result.record.read_text())
    assert record["state"] == SUCCEEDED and len(record["tasks"]) == 6
    assert all(Path(t["log"]).is_file() for t in record["tasks"])


def test_a_second_run_reuses_what_is_cached_and_reruns_what_is_not(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    LocalRun(spec, tmp_path / "root").run({"journal": str(journal)})
    again = LocalRun(spec, tmp_path / "root").run({"journal": str(journal)})
    assert again.state == SUCCEEDED
    seen = states(again)
    assert seen["exit-handler-1/greet"] == CACHED
    assert [seen[f"exit-handler-1/for-loop-2-{i}-{w}/shout"] for i, w in enumerate("abc")] == [
        CACHED
    ] * 3
    assert seen["exit-handler-1/gather"] == SUCCEEDED and seen["finish"] == SUCCEEDED
    assert len(journal_lines(journal, "greet")) == 1  # ran once in two runs
    assert journal_lines(journal, "gather") == ["gather hello A | hello B | hello C"] * 2

    # Other inputs, another key: the loop runs again; without the cache, everything does.
    LocalRun(spec, tmp_path / "root").run({"journal": str(journal), "words": ["a", "d"]})
    assert len(journal_lines(journal, "shout")) == 3 + 1  # only d is new
    LocalRun(spec, tmp_path / "root", cache=False).run({"journal": str(journal)})
    assert len(journal_lines(journal, "greet")) == 2


def test_a_failure_skips_the_rest_and_the_exit_handler_hears_of_it(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    result = LocalRun(spec, tmp_path / "root").run({"journal": str(journal), "fail_on": "b"})
    assert result.state == FAILED
    assert result.error == "shout: ValueError: b is not a word to shout"
    seen = states(result)
    assert seen["exit-handler-1/for-loop-2-1-b/shout"] == FAILED
    assert seen["exit-handler-1/gather"] == SKIPPED
    assert seen["finish"] == SUCCEEDED
    assert journal_lines(journal, "gather") == []
    assert journal_lines(journal, "finish") == [
        "finish FAILED shout: ValueError: b is not a word to shout"
    ]
    failed = next(t for t in result.tasks if t.state == FAILED)
    assert "b is not a word to shout" in Path(failed.log).read_text()


def test_loop_items_run_side_by_side_with_parallelism(spec, tmp_path):
    journal = tmp_path / "journal.txt"
    started = time.perf_counter()
    result = LocalRun(spec, tmp_path / "root", parallelism=3).run(
        {"journal": str(journal), "pause": 3.0}
    )
    assert result.state == SUCCEEDED
    spans = sorted(
        (float(start), float(end))
        for _, _, start, end in (line.split() for line in journal_lines(journal, "shout"))
    )
    # Each shout sleeps 3 s; all three were running at the same moment.
    assert max(start for start, _ in spans) < min(end for _, end in spans)
    assert time.perf_counter() - started < 3 * 3.0 + 20
