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
