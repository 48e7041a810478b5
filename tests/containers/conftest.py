"""The container tests' marker: `pytest -m container` runs only them, `-m "not container"`
everything else (.ci/run runs them after `make test`)."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "container: builds and runs images with podman (skipped without it)"
    )
