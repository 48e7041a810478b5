"""The component image installs the project the way `make test` does: the same lock, the same
sync, the same command. Docker does not run here, so the files are checked, not built."""

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_the_image_syncs_the_committed_lock_like_the_makefile():
    steps = instructions(REPO / "components" / "Dockerfile")
    copies = [arg for op, arg in steps if op == "COPY"]
    assert any("uv.lock" in c.split() and "pyproject.toml" in c.split() for c in copies)
    syncs = [arg for op, arg in steps if op == "RUN" and "uv sync" in arg]
    assert syncs and all("--locked" in s for s in syncs)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"\$\(UV\) sync --locked", makefile), (
        "make setup installs with uv sync --locked too"
    )
    # The project itself is installed after its source is copied.
    order = [op + " " + arg for op, arg in steps]
    src_copy = next(i for i, s in enumerate(order) if s.startswith("COPY src"))
    assert any(i > src_copy and "uv sync --locked" in s for i, s in enumerate(order))


def test_the_image_holds_the_pipeline_in_the_installed_package():
    """The components and the DAG are in src/ (pipeline compile works in the image); nothing
    beside src/ is copied for them."""
    steps = instructions(REPO / "components" / "Dockerfile")
    copied = [part for op, arg in steps if op == "COPY" for part in arg.split()[:-1]]
    assert "src" in copied
    assert not [c for c in copied if c.startswith(("components/", "pipelines"))]
    assert (REPO / "src" / "wavefoundry" / "pipeline" / "dag.py").is_file()
    assert not (REPO / "components" / "__init__.py").exists()


def test_the_image_runs_the_cli_as_a_non_root_user():
    steps = instructions(REPO / "components" / "Dockerfile")
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [arg for op, arg in steps if op == "CMD"][-1] == '["wavefoundry", "--help"]'
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["wavefoundry"] == "wavefoundry.cli:main"


def test_dockerignore_keeps_out_the_environment_and_the_data():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".venv", "data", ".git"} <= ignored
    steps = instructions(REPO / "components" / "Dockerfile")
    copied = {part for op, arg in steps if op == "COPY" for part in arg.split()[:-1]}
    assert not copied & ignored, "the Dockerfile copies something .dockerignore leaves out"


def test_the_image_runs_what_the_compiled_components_run():
    """Each component's command is `python3 -m kfp.dsl.executor_main` with the code of a
    function that imports wavefoundry: the image's python3 must be the project's environment
    (which has kfp, a runtime dependency since the image syncs --no-dev), and KFP's launcher
    must be able to write artifacts as the non-root user."""
    import yaml

    steps = instructions(REPO / "components" / "Dockerfile")
    env = " ".join(arg for op, arg in steps if op == "ENV")
    venv = re.search(r"UV_PROJECT_ENVIRONMENT=(\S+)", env).group(1)
    path = [arg for op, arg in steps if op == "ENV" and arg.startswith("PATH=")][-1]
    assert path.startswith(f"PATH={venv}/bin:"), "python3 in the image is the project's"
    assert "UV_COMPILE_BYTECODE=1" in env  # as make setup installs
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert all(f"/{d}" in runs for d in ("gcs", "minio", "s3")) and "chown" in runs

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("kfp>=") for d in project["dependencies"])
    pipeline = next(
        yaml.safe_load_all((REPO / "pipelines/compiled/training_pipeline.yaml").read_text())
    )
    for executor in pipeline["deploymentSpec"]["executors"].values():
        command = " ".join(executor["container"]["command"])
        assert "python3 -m kfp.dsl.executor_main" in command
        assert "from wavefoundry.pipeline import steps" in command
