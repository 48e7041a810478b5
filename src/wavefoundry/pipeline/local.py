"""A compiled pipeline on this machine: `wavefoundry pipeline run`.

Each component runs through kfp.local's task dispatcher with `SubprocessRunner(use_venv=False)`:
the component's own command, in this project's environment instead of its image. kfp.local's
DAG walker (kfp 2.16) is not used, because it cannot run an exit handler, runs a ParallelFor
after the tasks that consume its results, and caches nothing. `LocalRun` walks the compiled
PipelineSpec instead:

- the tasks of a DAG in dependency order, nested DAGs (the exit handler's body) recursively;
- a ParallelFor once per item, `parallelism` at a time, its outputs collected into lists
  (`dsl.Collected`);
- after a failure, only the tasks that run whatever happens upstream (the exit handler's task,
  `ALL_UPSTREAM_TASKS_COMPLETED`), which get the final status as KFP gives it;
- a task whose caching is on is looked up in a cache keyed, like a KFP backend's, on its
  component, command, image, input values and input artifacts; a hit hands on the outputs of
  the run that made them.

Every task's log is kept beside its outputs; `run.json` records the run, a row per task.
Retry policies and resource requests are for a cluster's nodes and are not acted on here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from wavefoundry.errors import UserError

SUCCEEDED, FAILED, CACHED, SKIPPED = "SUCCEEDED", "FAILED", "CACHED", "SKIPPED"


@dataclass
class TaskRecord:
    """One task of a run as it went: `path` names it inside the DAGs (`lifecycle/train-1`)."""

    path: str
    component: str
    state: str
    seconds: float = 0.0
    error: str = ""
    log: str = ""  # where its output is kept
    cached_from: str = ""  # the run whose outputs a cached task handed on


@dataclass
class Failure:
    task: str
    message: str


@dataclass
class RunResult:
    pipeline: str
    job_id: str
    job_name: str
    state: str
    seconds: float
    tasks: list[TaskRecord]
    error: str
    outputs: dict[str, dict[str, Any]]  # top-level task name -> its outputs
    record: Path


class TaskCache:
    """Outputs of finished tasks by cache key, one JSON file each."""

    def __init__(self, folder: Path):
        self.folder = folder

    @staticmethod
    def key(component: Any, executor: Any, arguments: dict[str, Any], custom: str = "") -> str:
        if custom:
            return hashlib.sha256(custom.encode()).hexdigest()
        facts = {
            "component": json_format.MessageToDict(component),
            "container": json_format.MessageToDict(executor.container),
            "inputs": {k: _jsonable(v) for k, v in sorted(arguments.items())},
        }
        return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()

    def get(self, key: str) -> tuple[dict[str, Any], str] | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        entry = json.loads(path.read_text())
        if not all(Path(uri).exists() for uri in entry["files"]):
            return None  # its artifacts were deleted: run it again
        return {k: _restore(v) for k, v in entry["outputs"].items()}, entry["job_name"]

    def put(self, key: str, outputs: dict[str, Any], job_name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        # Metrics live in their metadata and write no file; the others must still be there.
        files = [v.uri for v in outputs.values() if hasattr(v, "uri") and Path(v.uri).exists()]
        entry = {
            "job_name": job_name,
            "files": files,
            "outputs": {k: _jsonable(v) for k, v in outputs.items()},
        }
        tmp = self.folder / f".{key}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(entry, indent=1))
        tmp.replace(self.folder / f"{key}.json")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "schema_title") and hasattr(value, "uri"):
        return {
            "__artifact__": {
                "type": {"schemaTitle": value.schema_title},
                "name": value.name,
                "uri": value.uri,
                "metadata": value.metadata,
            }
        }
    return value


def _restore(value: Any) -> Any:
    if isinstance(value, dict) and "__artifact__" in value:
        from kfp.dsl.executor import create_artifact_instance

        return create_artifact_instance(value["__artifact__"])
    return value


class _Tee(io.TextIOBase):
    """stdout that keeps, per thread, what the task that thread runs prints; `echo` also
    passes it on to the terminal."""

    def __init__(self, stream: Any, echo: bool):
        self.stream = stream
        self.echo = echo
        self.local = threading.local()

    def write(self, text: str) -> int:
        lines = getattr(self.local, "lines", None)
        if lines is not None:
            lines.append(text)
            if not self.echo:
                return len(text)
        return self.stream.write(text)

    def flush(self) -> None:
        self.stream.flush()

    @contextlib.contextmanager
    def capture(self) -> Iterator[list[str]]:
        self.local.lines = []
        try:
            yield self.local.lines
        finally:
            self.local.lines = None


_ERROR_LINE = re.compile(r"^\s*error: (.+)$")
_EXCEPTION_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+(?:Error|Exception)): (.+)$")


def error_of(log: str) -> str:
    """The message a failed task ended with: its `error:` line, else its exception's."""
    lines = log.splitlines()
    for pattern, pick in ((_ERROR_LINE, "{0}"), (_EXCEPTION_LINE, "{0}: {1}")):
        for line in reversed(lines):
            if match := pattern.match(line):
                return pick.format(*match.groups())
    return "it exited with an error; its log is above"


class LocalRun:
    def __init__(
        self,
        spec: Any,  # pipeline_spec_pb2.PipelineSpec
        root: Path,
        *,
        cache: bool = True,
        parallelism: int = 1,
        echo: bool = False,
        report: Callable[[TaskRecord | str], None] | None = None,
        runner: Any = None,
    ):
        """`runner`: a kfp.local runner (default `SubprocessRunner(use_venv=False)`); `echo`: show every task's log as it runs (it is kept in the task's folder either
        way); `report(path)` hears of each task as it starts, `report(record)` as it ends."""
        self.spec = spec
        self.echo = echo
        self.report = report or (lambda event: None)
        self.root = Path(root).resolve()
        self.cache = TaskCache(self.root / "cache") if cache else None
        self.parallelism = parallelism
        self.components = dict(spec.components.items())
        from kfp.local import utils

        self.executors = {
            name: utils.struct_to_executor_spec(executor)
            for name, executor in spec.deployment_spec["executors"].items()
        }
        self.runner = runner
        self.records: list[TaskRecord] = []
        self._lock = threading.Lock()

    def run(self, arguments: dict[str, Any]) -> RunResult:
        from kfp import local

        name = self.spec.pipeline_info.name
        self.job_id = str(uuid.uuid4())
        self.job_name = f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S-%f')}"
        self.runner = self.runner or local.SubprocessRunner(use_venv=False)
        local.init(runner=self.runner, pipeline_root=str(self.root), raise_on_error=False)
        started = time.perf_counter()
        tee = _Tee(sys.stdout, self.echo)
        try:
            with contextlib.redirect_stdout(tee), warnings.catch_warnings():
                # The components' image is a Python image; kfp.local cannot tell from its name.
                warnings.filterwarnings("ignore", "You may be attemping to run a task")
                self._tee = tee
                done, failure = self._dag(
                    self.spec.root, _with_defaults(self.spec.root, arguments), self.job_name
                )
        finally:
            workspace = local.config.LocalExecutionConfig.instance.workspace_root
            with contextlib.suppress(OSError):
                Path(workspace).rmdir()
        record = self.root / self.job_name / "run.json"
        result = RunResult(
            pipeline=name,
            job_id=self.job_id,
            job_name=self.job_name,
            state=FAILED if failure else SUCCEEDED,
            seconds=time.perf_counter() - started,
            tasks=self.records,
            error=f"{failure.task}: {failure.message}" if failure else "",
            outputs=done,
            record=record,
        )
        record.parent.mkdir(parents=True, exist_ok=True)
        summary = {k: v for k, v in asdict(result).items() if k not in ("outputs", "record")}
        record.write_text(json.dumps({**summary, "arguments": arguments}, indent=2, default=str))
        return result

    # --- DAGs ---------------------------------------------------------------------------

    def _dag(
        self, component: Any, arguments: dict[str, Any], where: str
    ) -> tuple[dict[str, dict[str, Any]], Failure | None]:
        """Each task of the DAG in turn; the outputs of those that finished, by task name."""
        tasks = dict(component.dag.tasks.items())
        done: dict[str, dict[str, Any]] = {}
        states: dict[str, Failure | None] = {}
        failure: Failure | None = None
        for name in _in_order(tasks):
            task = tasks[name]
            runs_anyway = (
                task.trigger_policy.strategy == task.trigger_policy.ALL_UPSTREAM_TASKS_COMPLETED
            )
            if failure and not runs_anyway:
                self._record(TaskRecord(f"{where}/{name}", task.component_ref.name, SKIPPED))
                continue
            inputs = self._inputs(task, arguments, done, states, where)
            outputs, task_failure = self._task(name, task, inputs, where)
            states[name] = task_failure
            if task_failure:
                failure = failure or task_failure
            else:
                done[name] = outputs
        return done, failure

    def _sub_dag(
        self, component: Any, inputs: dict[str, Any], where: str
    ) -> tuple[dict[str, Any], Failure | None]:
        """A DAG inside the pipeline, run as one task: its outputs, as its spec selects them."""
        done, failure = self._dag(component, inputs, where)
        return ({}, failure) if failure else (_dag_outputs(component.dag.outputs, done), None)

    def _inputs(
        self,
        task: Any,
        arguments: dict[str, Any],
        done: dict[str, dict[str, Any]],
        states: dict[str, Failure | None],
        where: str,
    ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, spec in task.inputs.parameters.items():
            kind = spec.WhichOneof("kind")
            if spec.parameter_expression_selector:
                raise UserError(f"{where}: parameter expressions are not supported locally")
            if kind == "component_input_parameter":
                values[name] = arguments[spec.component_input_parameter]
            elif kind == "task_output_parameter":
                ref = spec.task_output_parameter
                values[name] = done[ref.producer_task][ref.output_parameter_key]
            elif kind == "runtime_value":
                from kfp.local import executor_output_utils

                values[name] = executor_output_utils.pb2_value_to_python(
                    spec.runtime_value.constant
                )
            elif kind == "task_final_status":
                producer = spec.task_final_status.producer_task
                failure = states.get(producer)
                values[name] = {
                    "state": FAILED if failure else SUCCEEDED,
                    "pipelineJobResourceName": self.job_name,
                    "pipelineTaskName": producer,
                    "error": {"code": 2, "message": f"{failure.task}: {failure.message}"}
                    if failure
                    else {},
                }
            else:
                raise UserError(f"{where}: input {name} of kind {kind} is not supported locally")
        for name, spec in task.inputs.artifacts.items():
            kind = spec.WhichOneof("kind")
            if kind == "task_output_artifact":
                ref = spec.task_output_artifact
                values[name] = done[ref.producer_task][ref.output_artifact_key]
            elif kind == "component_input_artifact":
                values[name] = arguments[spec.component_input_artifact]
            else:
                raise UserError(f"{where}: artifact {name} of kind {kind} is not supported locally")
        return values

    def _task(
        self, name: str, task: Any, inputs: dict[str, Any], where: str
    ) -> tuple[dict[str, Any], Failure | None]:
        component = self.components[task.component_ref.name]
        if task.trigger_policy.condition:
            raise UserError(f"{where}/{name}: conditions are not supported locally")
        if component.WhichOneof("implementation") == "dag":
            if task.WhichOneof("iterator"):
                return self._loop(name, task, component, inputs, where)
            return self._sub_dag(component, inputs, f"{where}/{task.task_info.name or name}")
        return self._container(name, task, component, inputs, where)

    def _loop(
        self, name: str, task: Any, component: Any, inputs: dict[str, Any], where: str
    ) -> tuple[dict[str, Any], Failure | None]:
        if task.WhichOneof("iterator") != "parameter_iterator":
            raise UserError(f"{where}/{name}: only loops over parameters run locally")
        iterator = task.parameter_iterator
        items_spec = iterator.items
        items = (
            json.loads(items_spec.raw)
            if items_spec.WhichOneof("kind") == "raw"
            else inputs[items_spec.input_parameter]
        )
        limit = task.iterator_policy.parallelism_limit or len(items) or 1
        workers = max(1, min(self.parallelism, limit))

        def one(index: int) -> tuple[dict[str, Any], Failure | None]:
            item = items[index]
            scope = {**inputs, iterator.item_input: item}
            label = re.sub(r"[^\w.-]", "", str(item))[:40] if isinstance(item, str | int) else ""
            return self._sub_dag(
                component, scope, f"{where}/{name}-{index}{'-' * bool(label)}{label}"
            )

        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(one, range(len(items))))
        failures = [f for _, f in results if f]
        if failures:
            return {}, failures[0]
        keys = (
            component.output_definitions.parameters.keys()
            | component.output_definitions.artifacts.keys()
        )
        return {key: [outputs[key] for outputs, _ in results] for key in keys}, None

    # --- one component -------------------------------------------------------------------

    def _container(
        self, name: str, task: Any, component: Any, inputs: dict[str, Any], where: str
    ) -> tuple[dict[str, Any], Failure | None]:
        from kfp.local import task_dispatcher

        executor = self.executors[component.executor_label]
        path = f"{where}/{name}"
        key = None
        if self.cache is not None and task.caching_options.enable_cache:
            key = TaskCache.key(component, executor, inputs, task.caching_options.cache_key)
            hit = self.cache.get(key)
            if hit:
                outputs, made_by = hit
                self._record(TaskRecord(path, task.component_ref.name, CACHED, cached_from=made_by))
                return outputs, None
        self.report(path)
        task_root = self.root / where / task.component_ref.name.removeprefix("comp-")
        log = task_root / "log.txt"
        started = time.perf_counter()
        with self._tee.capture() as lines:
            outputs, status = task_dispatcher.run_single_task_implementation(
                pipeline_resource_name=where,
                component_name=task.component_ref.name,
                component_spec=component,
                executor_spec=executor,
                arguments=inputs,
                pipeline_root=str(self.root),
                runner=self.runner,
                raise_on_error=False,
                block_input_artifact=False,
                unique_pipeline_id=self.job_id,
            )
        seconds = time.perf_counter() - started
        text = "".join(lines)
        task_root.mkdir(parents=True, exist_ok=True)
        log.write_text(text, encoding="utf-8")
        if status.name != "SUCCESS":
            message = error_of(text)
            self._record(
                TaskRecord(path, task.component_ref.name, FAILED, seconds, message, str(log))
            )
            return {}, Failure(name, message)
        self._record(TaskRecord(path, task.component_ref.name, SUCCEEDED, seconds, log=str(log)))
        if key:
            self.cache.put(key, outputs, self.job_name)
        return outputs, None

    def _record(self, record: TaskRecord) -> None:
        with self._lock:
            self.records.append(record)
        self.report(record)


def _with_defaults(component: Any, arguments: dict[str, Any]) -> dict[str, Any]:
    from kfp.local import executor_output_utils

    values = dict(arguments)
    unknown = set(values) - set(component.input_definitions.parameters.keys())
    if unknown:
        raise UserError(f"the pipeline has no parameter {', '.join(sorted(unknown))}")
    for name, spec in component.input_definitions.parameters.items():
        if name not in values:
            if not spec.is_optional:
                raise UserError(f"the pipeline needs a value for {name}")
            values[name] = executor_output_utils.pb2_value_to_python(spec.default_value)
    return values


def _in_order(tasks: dict[str, Any]) -> list[str]:
    """Dependencies first; among tasks free to go, in the order they were written down."""
    order: list[str] = []
    pending = dict(tasks)
    while pending:
        ready = [n for n, t in pending.items() if all(d in order for d in t.dependent_tasks)]
        if not ready:
            raise UserError(f"the pipeline's tasks {sorted(pending)} wait on each other")
        order.append(ready[0])
        del pending[ready[0]]
    return order


def _dag_outputs(spec: Any, done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    for key, selector in spec.parameters.items():
        ref = selector.value_from_parameter
        outputs[key] = done[ref.producer_subtask][ref.output_parameter_key]
    for key, selector in spec.artifacts.items():
        ref = selector.artifact_selectors[0]
        outputs[key] = done[ref.producer_subtask][ref.output_artifact_key]
    return outputs
