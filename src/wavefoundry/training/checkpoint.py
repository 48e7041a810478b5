"""Checkpoints and exported models on disk.

A checkpoint is a folder `checkpoints/step-NNNNNNNN/`:
  model.safetensors   every network's weights as `<net>.<param>` (and `ema.<net>.<param>`)
  trainer_state.pt    optimizers, schedulers, grad scaler, RNG states, step, sampler position;
                      tensors and plain containers only, read back with weights_only=True
  config.json         family, dataset, data version, model config, data spec, step
It is written under a temporary name and renamed into place, so a crash mid-write never
leaves a folder that looks complete. Exported models are families/io.py's.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from wavefoundry.errors import UserError
from wavefoundry.families.io import write_atomically

STEP_PREFIX = "step-"


def save_checkpoint(
    directory: Path,
    description: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    trainer_state: dict[str, Any],
    keep: int,
) -> Path:
    def write(folder: Path) -> None:
        save_file(tensors, folder / "model.safetensors")
        torch.save(trainer_state, folder / "trainer_state.pt")
        (folder / "config.json").write_text(json.dumps(description, indent=2) + "\n")

    path = write_atomically(directory / f"{STEP_PREFIX}{description['step']:08d}", write)
    for old in checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return path


def checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    found = [
        p
        for p in directory.iterdir()
        if p.name.startswith(STEP_PREFIX) and (p / "config.json").is_file()
    ]
    return sorted(found, key=lambda p: p.name)


def read_checkpoint(
    path: Path, family: str
) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Any]]:
    """(description, tensors, trainer state) of a checkpoint, refusing one of another family."""
    description = json.loads((path / "config.json").read_text())
    if description.get("family") != family:
        raise UserError(
            f"checkpoint {path} is from a {description.get('family')!r} model, not {family!r}: "
            "point --resume at a run of the same model"
        )
    tensors = load_file(path / "model.safetensors")
    state = torch.load(path / "trainer_state.pt", weights_only=True, map_location="cpu")
    return description, tensors, state
