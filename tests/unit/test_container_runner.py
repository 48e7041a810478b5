"""`pipeline run --runner container` where podman is missing: one line saying what to install,
before anything runs (the container tests themselves skip there: tests/containers)."""

from pathlib import Path

import pytest

from wavefoundry import containers
from wavefoundry.errors import UserError
from wavefoundry.pipeline.local_run import RUNNERS, runner_for


def test_the_container_runner_without_podman_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no podman, no runc
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert "container" in RUNNERS
    arguments = {"source": [], "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    with pytest.raises(UserError) as raised, runner_for("container", arguments, tmp_path):
        pass
    assert str(raised.value) == "podman is not installed: apt-get install podman runc (see README)"
    assert containers.podman_missing().startswith("podman is not installed (apt-get install")


def test_an_unknown_runner_is_one_line_naming_the_known_ones(tmp_path: Path) -> None:
    known = r"unknown runner 'docker' \(known: subprocess, container\)"
    with pytest.raises(UserError, match=known), runner_for("docker", {}, tmp_path):
        pass
