"""A compiled pipeline on this machine, through kfp.local's own orchestrator and task cache.

`run` hands the compiled spec to `kfp.local` (`local.init(runner=..., enable_caching=True,
cache_root=...)`), which walks the DAG: the exit handler with its `PipelineTaskFinalStatus`,
each `ParallelFor` item with its results fanned in by `dsl.Collected`, each task whose
caching is on looked up in its file cache. The runner is one argument: kfp.local's
`SubprocessRunner(use_venv=False)` (this environment) by default, or its `DockerRunner` in the
component image (`runner_for("container", ...)`, container_runner.py).

What is ours is the console around it, for gaps measured with kfp 2.17.3 (README, "The
local runner"):

- kfp.local reports a run as log text and returns no per-task states; `Console` reads its
  log records as they come (a task starts, ends, is a cache hit, is skipped), keeps each task's
  output in its own log file and writes the run record (`run.json`, a row per task);
- a cache hit is logged at INFO outside kfp.local's logger, so nobody sees it: we listen;
- tasks of a loop run on threads whose output interleaves; we attribute it by thread;
- tasks on two threads can leave builtins.print swapped for an indenting one; we restore it;
- a ParallelFor body's inputs that are other tasks' output parameters become the loop item
  (the training tasks got the family as their data version); we give them back;
- a task's retry policy (for a cluster's preempted pods) is honoured with its backoff, so a
  failing task waits minutes before it fails; we run each task once;
- the exit handler's `PipelineTaskFinalStatus` says only "Task exit-handler-1 failed."; the
  failing task's own error line is handed to it in a file (`steps.ERRORS_ENV` names it).
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import logging
import os
import re
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wavefoundry.errors import UserError

SUCCEEDED, FAILED, CACHED, SKIPPED = "SUCCEEDED", "FAILED", "CACHED", "SKIPPED"
# How kfp.local runs each task; `runner_for(name, arguments, root)` makes one.
RUNNERS = ("subprocess", "container")


@contextlib.contextmanager
def runner_for(name: str, arguments: dict[str, Any], root: Path) -> Iterator[Any]:
    """A kfp.local runner by name, for a run with `arguments` under `root` (as `run` takes
    them), while the block runs: `subprocess` runs each component's command in this
    environment (`SubprocessRunner(use_venv=False)`); `container` runs it in the component
    image through kfp.local's `DockerRunner` on podman (`container_runner.docker_runner`: the
    image must be built; podman's API is started and stopped around the block). Raises
    UserError for an unknown name or a container run that cannot start."""
    from kfp import local

    if name == "subprocess":
        yield local.SubprocessRunner(use_venv=False)
    elif name == "container":
        from wavefoundry.pipeline.container_runner import docker_runner

        with docker_runner(arguments, root) as runner:
            yield runner
    else:
        raise UserError(f"unknown runner '{name}' (known: {', '.join(RUNNERS)})")


@dataclass
class TaskRecord:
    """One task of a run as it went: `path` is its folder in the run (`for-loop-2-iteration-0/
    train`), its name where it made no folder."""

    path: str
    state: str
    seconds: float = 0.0
    error: str = ""
    log: str = ""  # where its output is kept
    cached_from: str = ""  # the run whose outputs a cached task handed on
    tail: str = ""  # the last lines the task itself printed (without kfp's around them)


@dataclass
class RunResult:
    pipeline: str
    job_name: str
    state: str
    seconds: float
    tasks: list[TaskRecord]
    error: str
    record: Path
    folder: Path  # the run's task outputs

    def outputs(self, task: str) -> dict[str, Any]:
        """A task's output artifacts' metadata and its output parameters, as it wrote them."""
        return task_outputs(self.folder, task)


def task_outputs(folder: Path, task: str) -> dict[str, Any]:
    """The output artifacts' metadata and output parameters that `task` wrote in the run
    folder `folder` (`runs/<job name>`); {} when it wrote none."""
    path = Path(folder) / task / "executor_output.json"
    if not path.is_file():
        return {}
    written = json.loads(path.read_text())
    found = dict(written.get("parameterValues", {}))
    for name, listing in written.get("artifacts", {}).items():
        artifacts = listing.get("artifacts", [])
        if artifacts:
            found[name] = artifacts[0].get("metadata", {})
    return found


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LOG = re.compile(r"^\d\d:\d\d:\d\d\.\d+ - (?:INFO|ERROR|WARNING) - (.*)$")
_START = re.compile(r"^Executing task '([^']+)'$")
_END = re.compile(r"^Task '([^']+)' finished with status (\w+)")
_HIT = re.compile(r"^Task (\S+) cache hit \(key=(\w+)\)")
_SKIP = re.compile(r"^Skipping task (\S+): upstream")
_FOLDER = re.compile(r'"outputFile": "(.+)/executor_output\.json"')
_ERROR_LINE = re.compile(r"^\s*error: (.+)$")
_EXCEPTION_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")
# kfp.local's and the KFP executor's own lines around a task's output, and its separators.
KFP_LINE = re.compile(r"^\s*(\[KFP Executor |\d\d:\d\d:\d\d\.\d+ - |-{20,}$)")


def error_of(log: str) -> str:
    """The message a failed task ended with: its `error:` line, else its exception's."""
    lines = log.splitlines()
    for pattern, pick in ((_ERROR_LINE, "{0}"), (_EXCEPTION_LINE, "{0}: {1}")):
        for line in reversed(lines):
            if match := pattern.match(line):
                return pick.format(*match.groups())
    return "it exited with an error; its log is above"


@dataclass
class _Running:
    name: str
    started: float
    lines: list[str] = field(default_factory=list)
    folder: str = ""
    skipping: bool = False
    own: list[str] = field(default_factory=list)  # what the task itself printed
    brace: int | None = None  # the indent of the executor input's opening brace


class Console(io.TextIOBase):
    """stdout during a run: kfp.local's log lines become task records, each task's own lines
    go to its log (and to the terminal with `echo`; `progress` lines always)."""

    def __init__(
        self,
        stream: Any,
        run_root: Path,
        cache_root: Path,
        report: Callable[[TaskRecord | str], None],
        echo: bool,
        progress: Callable[[str, str], None] | None,
        errors: Path,
    ):
        self.stream, self.run_root, self.cache_root = stream, run_root, cache_root
        self.report, self.echo, self.progress, self.error_file = report, echo, progress, errors
        self.local = threading.local()
        self.lock = threading.Lock()
        self.records: list[TaskRecord] = []
        self.first_failure: TaskRecord | None = None

    # --- stdout ------------------------------------------------------------------------

    def write(self, text: str) -> int:
        if getattr(self.local, "passing", False):  # what report and progress print
            return self.stream.write(text)
        pending = getattr(self.local, "pending", "") + text
        *lines, self.local.pending = pending.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def _line(self, raw: str) -> None:
        line = _ANSI.sub("", raw)
        logged = _LOG.match(line)
        running: _Running | None = getattr(self.local, "task", None)
        if logged:
            self._event(logged.group(1), running)
            return
        if running is None:
            return  # kfp.local's separators and output listings between tasks
        running.lines.append(line)
        if not running.folder and (found := _FOLDER.search(line)):
            running.folder = found.group(1)
        if line.strip().endswith("Got executor_input:"):
            running.skipping = True  # the JSON that follows, to its closing brace
        elif running.skipping:
            indent = len(line) - len(line.lstrip())
            if running.brace is None and line.strip() == "{":
                running.brace = indent
            elif line.strip() == "}" and indent == running.brace:
                running.skipping, running.brace = False, None
        elif line.strip() and not KFP_LINE.match(line):
            running.own.append(line.strip())
            if self.progress and not self.echo:
                self._pass(self.progress, self._path(running), line.strip())
        if self.echo and not running.skipping:
            self.stream.write(line + "\n")

    def _event(self, message: str, running: _Running | None) -> None:
        if match := _START.match(message):
            self.local.task = _Running(match.group(1), time.perf_counter())
            self._pass(self.report, match.group(1))
        elif match := _END.match(message):
            if running is not None:
                self.local.task = None
                self._finish(running, SUCCEEDED if match.group(2) == "SUCCESS" else FAILED)
        elif match := _HIT.match(message):
            self._record(TaskRecord(*self._cached(match.group(1), match.group(2))))
        elif match := _SKIP.match(message):
            self._record(TaskRecord(match.group(1), SKIPPED))

    def _path(self, running: _Running) -> str:
        if running.folder:
            with contextlib.suppress(ValueError):
                parts = Path(running.folder).relative_to(self.run_root).parts
                return "/".join(parts[1:]) or running.name  # inside <job name>/
        return running.name

    def _finish(self, running: _Running, state: str) -> None:
        path = self._path(running)
        text = "\n".join(running.lines) + "\n"
        folder = Path(running.folder) if running.folder else self.run_root / "unplaced" / path
        log = folder / "log.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            log.write_text(text, encoding="utf-8")
        except OSError:
            log = Path()
        error = error_of(text) if state == FAILED else ""
        record = TaskRecord(
            path,
            state,
            time.perf_counter() - running.started,
            error,
            str(log) if log.name else "",
            tail="\n".join(running.own[-15:]),
        )
        if state == FAILED and self.first_failure is None:
            self.first_failure = record
            with contextlib.suppress(OSError):
                self.error_file.write_text(
                    f"{path.rsplit('/', 1)[-1]}: {error}\n", encoding="utf-8"
                )
        self._record(record)

    def _cached(self, name: str, key: str) -> tuple[str, str, float, str, str, str]:
        """A cache hit's path and the run that made its outputs, from the cache entry."""
        for entry in sorted(self.cache_root.glob(f"{key}*.json")):
            outputs = json.loads(entry.read_text())
            for value in outputs.values():
                uri = value.get("uri", "") if isinstance(value, dict) else ""
                inside = uri and Path(uri).is_relative_to(self.run_root)
                parts = Path(uri).relative_to(self.run_root).parts if inside else ()
                if len(parts) >= 3:  # <job name>/<task folders...>/<output>
                    return "/".join(parts[1:-1]), CACHED, 0.0, "", "", parts[0]
        return name, CACHED, 0.0, "", "", ""

    def _record(self, record: TaskRecord) -> None:
        with self.lock:
            self.records.append(record)
        self._pass(self.report, record)

    def _pass(self, listener: Callable[..., None], *event: Any) -> None:
        """Call a listener whose own printing goes straight to the terminal."""
        self.local.passing = True
        try:
            listener(*event)
        finally:
            self.local.passing = False


class _Listen(logging.Handler):
    """kfp.local's records logged outside its own logger (a cache hit, a skipped task),
    into the console as the lines its logger would have written."""

    def __init__(self, console: Console):
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        self.console.write(f"{stamp}.000 - {record.levelname} - {record.getMessage()}\n")


@contextlib.contextmanager
def _listening(console: Console) -> Iterator[None]:
    root = logging.getLogger()
    before, level = root.handlers[:], root.level
    root.handlers = [_Listen(console)]
    root.setLevel(logging.INFO)
    # kfp.local indents a task's output by swapping builtins.print, which tasks on two threads
    # can leave swapped for good; put it back.
    print_before = builtins.print
    try:
        with contextlib.redirect_stdout(console), warnings.catch_warnings():
            # The components' image is a Python image, which kfp.local cannot tell from its
            # name; resources and retries are for a cluster's nodes.
            warnings.filterwarnings("ignore", "You may be attemping to run a task")
            warnings.filterwarnings("ignore", ".*have no effect in the current local runner")
            yield
    finally:
        root.handlers, root.level = before, level
        builtins.print = print_before


def for_this_machine(spec: Any, parallelism: int) -> None:
    """The spec as it runs here: each ParallelFor runs `parallelism` items at a time (kfp.local
    caps it at 2 threads whatever it is asked), and no task is retried: a retry policy is for a
    cluster's preempted pods, and kfp.local would wait its backoff (1, 2, 4 minutes) before a
    failing task fails."""
    for component in [spec.root, *spec.components.values()]:
        if component.WhichOneof("implementation") != "dag":
            continue
        for task in component.dag.tasks.values():
            if task.WhichOneof("iterator"):
                task.iterator_policy.parallelism_limit = parallelism
            task.ClearField("retry_policy")


@contextlib.contextmanager
def _loop_bodies_keep_their_inputs() -> Iterator[None]:
    """kfp 2.17.3's kfp.local gives every input of a ParallelFor body that is another task's
    output parameter the loop item instead (task_spec_utils.
    create_parameter_loop_iteration_task_spec): the training tasks got their family as the
    data version. Each iteration's spec gets those inputs back, as the DAG says."""
    from kfp.local.orchestrator import task_spec_utils

    made_by_kfp = task_spec_utils.create_parameter_loop_iteration_task_spec

    def iteration(original: Any, loop_item: Any, loop_task_name: str) -> Any:
        made = made_by_kfp(original, loop_item, loop_task_name)
        for name, given in original.inputs.parameters.items():
            if given.HasField("task_output_parameter"):
                made.inputs.parameters[name].CopyFrom(given)
        return made

    task_spec_utils.create_parameter_loop_iteration_task_spec = iteration
    try:
        yield
    finally:
        task_spec_utils.create_parameter_loop_iteration_task_spec = made_by_kfp


def run(
    package: Path | None,
    arguments: dict[str, Any],
    root: Path,
    *,
    runner: Any = None,
    cache: bool = True,
    parallelism: int = 1,
    echo: bool = False,
    report: Callable[[TaskRecord | str], None] | None = None,
    progress: Callable[[str, str], None] | None = None,
) -> RunResult:
    """Run the compiled pipeline `package` (None: a fresh compile) with `arguments` through
    kfp.local: task outputs under `root/runs/<job name>/`, the task cache under `root/cache/`
    (`cache=False`: every task runs, and nothing is cached). `runner`: a kfp.local runner (default
    `SubprocessRunner(use_venv=False)`). `report(name)` hears of each task as it starts and
    `report(record)` as it ends; `progress(task, line)` gets each line a task prints."""
    from kfp import local
    from kfp.local import pipeline_orchestrator

    from wavefoundry.pipeline.definition import check_arguments, load_spec
    from wavefoundry.pipeline.steps import ERRORS_ENV

    spec = load_spec(package)
    arguments = check_arguments(spec, arguments)
    for_this_machine(spec, parallelism)
    root = Path(root).resolve()
    runs, cache_root = root / "runs", root / "cache"
    runs.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=runner if runner is not None else local.SubprocessRunner(use_venv=False),
        pipeline_root=str(runs),
        raise_on_error=False,
        enable_caching=cache,
        cache_root=str(cache_root),
    )
    before = {p.name for p in runs.iterdir()}
    errors = root / f".errors-{os.getpid()}.txt"
    errors.unlink(missing_ok=True)
    console = Console(
        sys.stdout, runs, cache_root, report or (lambda event: None), echo, progress, errors
    )
    started = time.perf_counter()
    previous = os.environ.get(ERRORS_ENV)
    os.environ[ERRORS_ENV] = str(errors)
    try:
        with _listening(console), _loop_bodies_keep_their_inputs():
            pipeline_orchestrator.run_local_pipeline(pipeline_spec=spec, arguments=arguments)
    finally:
        if previous is None:
            os.environ.pop(ERRORS_ENV, None)
        else:
            os.environ[ERRORS_ENV] = previous
        errors.unlink(missing_ok=True)
    made = sorted(p for p in runs.iterdir() if p.name not in before and p.is_dir())
    folder = made[-1] if made else runs / spec.pipeline_info.name
    failure = console.first_failure
    state = FAILED if failure or any(r.state == FAILED for r in console.records) else SUCCEEDED
    result = RunResult(
        pipeline=spec.pipeline_info.name,
        job_name=folder.name,
        state=state,
        seconds=time.perf_counter() - started,
        tasks=console.records,
        error=f"{failure.path.rsplit('/', 1)[-1]}: {failure.error}" if failure else "",
        record=folder / "run.json",
        folder=folder,
    )
    summary = {k: v for k, v in asdict(result).items() if k not in ("record", "folder")}
    folder.mkdir(parents=True, exist_ok=True)
    result.record.write_text(
        json.dumps({**summary, "arguments": arguments}, indent=2, default=str), encoding="utf-8"
    )
    return result
