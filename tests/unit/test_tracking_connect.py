"""Connecting to a tracking store says nothing a user must act on."""

import subprocess
import sys
from pathlib import Path

CONNECT = """
import logging
logging.basicConfig(level=logging.INFO)  # as a user's script might: INFO shows everywhere
from wavefoundry.config import TrackingConfig
from wavefoundry.tracking import connect
print("experiment", connect(TrackingConfig(uri="sqlite:///store/mlflow.db", experiment="e")))
"""


def test_a_new_sqlite_store_is_made_without_mlflow_s_table_chatter(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CONNECT], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "experiment 1"
    assert (tmp_path / "store" / "mlflow.db").is_file()
    assert "Creating initial MLflow database tables" not in done.stderr
    assert "alembic" not in done.stderr.lower()
