# Two entry points that work on a fresh machine: `make demo` and `make test`.
# Each installs uv with pip when it is missing, then the locked environment (uv sync --locked).

# Expanded when a recipe runs, so it sees a uv that `setup` has just installed.
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
# Both cores (CI has 2); a file's tests stay on one worker so module fixtures (trained models,
# servers) are made once. Files are handed out in the order tests/conftest.py sorts them
# (slow ones first), not xdist's (most tests first), so no long file is left for last.
PYTEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder --durations=15
# Which tests: all but the container tests (minutes of image builds and pipeline runs in
# podman) and the demo's own run (minutes of training), which run on their own with
# make test-containers and make test-demo (.ci/run runs all three).
PYTEST_SELECT ?= -m "not container and not demo"

.PHONY: setup demo test test-containers test-demo image lint format bench clean

setup:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	@# Bytecode compiled once at install: every CLI, torchrun and server process the tests
	@# start would otherwise compile mlflow and torch from source again (~5 s each).
	@# Quiet: a fresh environment would list its ~280 packages ahead of the demo's output.
	@echo "uv sync --locked (the locked environment in .venv; about a minute the first time)"
	@UV_COMPILE_BYTECODE=1 $(UV) sync --locked --quiet

demo: setup
	$(UV) run --locked wavefoundry pipeline run

test: setup
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .
	$(UV) run --locked pytest $(PYTEST_ARGS) $(PYTEST_SELECT)
	@echo "Run apart: make test-containers (podman, runc, mmdebstrap; README, Containers) and make test-demo (the demo's run, 20-40 minutes on 2 cores, by the CPU)."

# The component image (components/Dockerfile) with podman, on a local Debian base made when
# missing; prints its tag. README "Containers".
image: setup
	$(UV) run --locked wavefoundry image build

# The container tests alone (podman, runc, mmdebstrap; .ci/run installs them).
test-containers: setup
	$(UV) run --locked pytest -m container tests/containers

# make demo's pipeline at its own settings in a scratch project: its champion must beat
# Griffin-Lim on the floor's metrics (README, "The Griffin-Lim floor").
test-demo: setup
	$(UV) run --locked pytest -m demo tests/demo

lint: setup
	$(UV) run --locked ruff check .
	$(UV) run --locked ruff format --check .

format: setup
	$(UV) run --locked ruff format .
	$(UV) run --locked ruff check --fix .

bench: setup
	$(UV) run --locked python bench/ingest.py
	$(UV) run --locked python bench/generate.py
	$(UV) run --locked python bench/train.py
	$(UV) run --locked python bench/serve.py
	$(UV) run --locked python bench/demo.py
	$(UV) run --locked python bench/demo_load.py
	$(UV) run --locked python bench/quality.py

clean:
	rm -rf data .pytest_cache .ruff_cache
