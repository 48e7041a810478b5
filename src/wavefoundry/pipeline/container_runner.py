"""`wavefoundry pipeline run --runner container` (local_run.runner_for): every component in the
component image, through kfp.local's `DockerRunner` talking to podman's Docker-compatible API.

What a task's container gets, so that it runs as it does in this environment:

- the project folder (the working directory: `params.yaml`, `data/`, `.wavefoundry/`) mounted
  at the same path and used as the working directory, so every path a task is handed, and every
  path MLflow recorded, means the same inside and out; kfp.local mounts the pipeline root itself;
- local dataset sources, the tracking store's folder, `pipeline.root` (the failing task's error
  line is handed on in a file there, local_run.py) and `BENTOML_HOME` mounted where they are
  when they lie outside the project;
- your user and group ids (files the tasks write are yours), and the environment variables
  the library reads (`WAVEFOUNDRY_*`, `MLFLOW_*`, `BENTOML_*`, `AWS_*`, thread counts);
- a first log line from inside naming the container's host name and system, so each task's
  log shows where it ran.

kfp.local (2.16 and 2.17) starts each container with `auto_remove=True`, streams its logs and
then asks its exit status; podman 4.3 has removed the container by then, and kfp.local takes the
missing container for a success. While a container run is on, `exit_statuses_kept()` has
kfp.local's `run_docker_container` keep the container until its status is read, then remove it:
a failing component fails its task, as it does under the subprocess runner. An interrupt
(Ctrl-C, SIGTERM) stops the containers still running before the run ends.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wavefoundry.errors import UserError

# Environment variables a task reads from its host environment under the subprocess runner.
FORWARDED_PREFIXES = ("WAVEFOUNDRY_", "MLFLOW_", "BENTOML_", "AWS_", "KFP_")
FORWARDED = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS", "PYTHONHASHSEED")
# The first line of every task's log, written inside its container.
WHERE = 'echo "container $(hostname): $(. /etc/os-release && echo "$PRETTY_NAME"), uid $(id -u)"'


@contextlib.contextmanager
def docker_runner(arguments: dict[str, Any], root: Path) -> Iterator[Any]:
    """kfp.local's DockerRunner for a pipeline run with `arguments` (local_run.run's) under
    `root`, on podman's API (started here, and stopped after the block, unless DOCKER_HOST is
    set), with each container's real exit status. Raises UserError when the image
    (`containers.IMAGE`) is not built or podman cannot start."""
    from wavefoundry import containers

    if not containers.image_exists(containers.IMAGE):
        raise UserError(f"no image {containers.IMAGE} here: build it with make image")
    extra = [s for s in arguments.get("source", []) if "://" not in s]
    uri = arguments.get("tracking_uri", "")
    if uri.startswith("sqlite:///"):
        extra.append(uri.removeprefix("sqlite:///"))
    extra.append(root)  # the run's error file beside its runs (kfp.local mounts runs/)
    with containers.docker_api(), exit_statuses_kept():
        yield make_docker_runner(Path.cwd(), extra)


def make_docker_runner(project: Path, extra: Sequence[str | Path] = ()) -> Any:
    """kfp.local's DockerRunner for tasks of this project: `project` mounted at its own path
    and used as the working directory; each existing local path in `extra` (dataset sources,
    the tracking store) mounted at its own path too when it lies outside the project."""
    import docker
    from kfp import local

    project = Path(project).resolve()
    bentos = bentoml_home()
    bentos.mkdir(parents=True, exist_ok=True)
    paths = {project}
    for item in (*extra, bentos):
        path = Path(item).resolve()
        if path.exists() and project not in path.parents and path != project:
            paths.add(path if path.is_dir() else path.parent)
    mounts = [docker.types.Mount(str(p), str(p), type="bind") for p in sorted(paths)]
    return local.DockerRunner(
        mounts=mounts,
        working_dir=str(project),
        user=f"{os.getuid()}:{os.getgid()}",
        entrypoint=["/bin/sh", "-c", f'{WHERE}; exec "$@"', "task"],
    )


def forwarded_environment() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k.startswith(FORWARDED_PREFIXES) or k in FORWARDED
    }


def bentoml_home() -> Path:
    """Where `bento build` puts Bentos: BENTOML_HOME, else BentoML's default."""
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")).resolve()


_running: dict[str, Any] = {}  # containers started and not yet removed, by id
_lock = threading.Lock()


def _run_docker_container(
    client: Any, image: str, command: list[str], volumes: dict[str, Any], **run_args: Any
) -> int:
    """kfp.local's `run_docker_container`, keeping the container until its exit status is read."""
    from kfp.local import docker_task_handler

    image = docker_task_handler.add_latest_tag_if_not_present(image=image)
    if not any(image in i.tags + i.attrs["RepoDigests"] for i in client.images.list()):
        print(f"Pulling image {image!r}")
        client.images.pull(image)
    environment = {
        **forwarded_environment(),
        "BENTOML_HOME": str(bentoml_home()),
        "HOME": "/tmp",  # a user id the image does not know has no home of its own
        **run_args.pop("environment", {}),
    }
    container = client.containers.run(
        image=image,
        command=command,
        detach=True,
        stdout=True,
        stderr=True,
        volumes=volumes,
        environment=environment,
        **run_args,
    )
    with _lock:
        _running[container.id] = container
    try:
        # The stream comes in chunks that split lines; the log gets whole lines, as a
        # subprocess task's does.
        pending = ""
        for chunk in container.logs(stream=True, follow=True):
            *lines, pending = (pending + chunk.decode(errors="replace")).split("\n")
            for line in lines:
                print(line + "\n", end="")
        if pending:
            print(pending + "\n", end="")
        return int(container.wait()["StatusCode"])
    finally:
        with _lock:
            _running.pop(container.id, None)
        with contextlib.suppress(Exception):
            container.remove(force=True)


def _stop_all() -> None:
    with _lock:
        left = list(_running.values())
    for container in left:
        with contextlib.suppress(Exception):
            container.remove(force=True)


@contextlib.contextmanager
def exit_statuses_kept() -> Iterator[None]:
    """While it is open, kfp.local's Docker tasks report their containers' real exit status."""
    from kfp.local import docker_task_handler

    def interrupted(signum: int, frame: Any) -> None:
        # The tasks' threads wait on their containers: stop those first, then unwind.
        _stop_all()
        raise KeyboardInterrupt if signum == signal.SIGINT else SystemExit(128 + signum)

    before = docker_task_handler.run_docker_container
    docker_task_handler.run_docker_container = _run_docker_container
    handlers = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        _stop_all()
        docker_task_handler.run_docker_container = before
