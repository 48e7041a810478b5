"""Run by torchrun in test_training.py: train a couple of steps under DDP (gloo, CPU), then
each rank writes the weights it ended with, so the test can compare the replicas."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from safetensors.torch import save_file

from wavefoundry.config import load_config
from wavefoundry.families.io import flat_state
from wavefoundry.training.trainer import Trainer


def main() -> None:
    params, data, model, dataset = sys.argv[1:5]
    out = Path(os.environ["WAVEFOUNDRY_TEST_OUT"])
    rank = int(os.environ["RANK"])
    cfg = load_config(
        Path(params),
        overrides=[
            f"paths.data={data}",
            f"paths.runs={out / 'runs'}",
            f"tracking.uri=sqlite:///{out / 'mlflow.db'}",
            f"tracking.artifact_location={out / 'mlartifacts'}",
            "training.steps=2",
            "training.batch_size=2",
            "training.validate_every=1000",
            "training.device=cpu",
        ],
    )
    trainer = Trainer(cfg, model, dataset)
    trainer.train(
        on_start=lambda nets: rank == 0 and save_file(flat_state(nets), out / "initial.safetensors")
    )
    save_file(flat_state(trainer.nets), out / f"rank{rank}.safetensors")


if __name__ == "__main__":
    main()
