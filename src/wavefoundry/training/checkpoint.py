"""Checkpoints and exported models on disk.

A checkpoint is a folder `checkpoints/step-NNNNNNNN/`:
  model.safetensors   every network's weights as `<net>.<param>` (and `ema.<net>.<param>`)
  trainer_state.pt    optimizers, schedulers, grad scaler, RNG states, step, sampler position;
                      tensors and plain containers only, read back with weights_only=True
  config.json         family, dataset, data version, model config, data spec, step
It is written under a temporary name and renamed into place, so a crash mid-write never
leaves a folder that looks complete. An exported model (`model/`) is model.safetensors
(the inference network only) + config.json: everything needed to rebuild it, nothing pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wavefoundry.errors import UserError
from wavefoundry.training.family import DataSpec, Family

STEP_PREFIX = "step-"


def flat_state(nets: dict[str, nn.Module], prefix: str = "") -> dict[str, torch.Tensor]:
    return {
        f"{prefix}{name}.{key}": value.detach().to("cpu").contiguous()
        for name, net in nets.items()
        for key, value in net.state_dict().items()
    }


def load_flat_state(
    nets: dict[str, nn.Module], tensors: dict[str, torch.Tensor], prefix: str = ""
) -> None:
    for name, net in nets.items():
        head = f"{prefix}{name}."
        state = {k[len(head) :]: v for k, v in tensors.items() if k.startswith(head)}
        net.load_state_dict(state)


def describe(family: Family, data_version: str, step: int) -> dict[str, Any]:
    """config.json: what a checkpoint or model is, enough to rebuild its networks."""
    return {
        "family": family.name,
        "dataset": family.data.dataset,
        "data_version": data_version,
        "step": step,
        "model_config": dataclasses.asdict(family.config),
        "data": dataclasses.asdict(family.data),
    }


def _write_atomically(final: Path, write) -> Path:
    temporary = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    write(temporary)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    return final


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

    path = _write_atomically(directory / f"{STEP_PREFIX}{description['step']:08d}", write)
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


def export_model(
    directory: Path, description: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> Path:
    def write(folder: Path) -> None:
        save_file(tensors, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(description, indent=2) + "\n")

    return _write_atomically(directory, write)


def load_model(directory: Path) -> tuple[Family, nn.Module]:
    """An exported model (or a checkpoint) as (family, inference network in eval mode, made
    ready to serve by `Family.for_inference`)."""
    from wavefoundry.config import parse_model_config
    from wavefoundry.models.registry import get_family

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise UserError(f"no model at {directory} (config.json missing)")
    description = json.loads((directory / "config.json").read_text())
    family_class = get_family(description["family"])
    config = parse_model_config(
        description["model_config"], family_class.config_class, f"{directory}/config.json"
    )
    data = description["data"]
    spec = DataSpec(data["dataset"], int(data["sample_rate"]), tuple(data["speakers"]))
    family = family_class(config, spec)
    net = family.build()[family.inference_net]
    tensors = load_file(directory / "model.safetensors")
    head = f"{family.inference_net}."
    ema_head = f"ema.{head}"
    source = ema_head if any(k.startswith(ema_head) for k in tensors) else head
    net.load_state_dict({k[len(source) :]: v for k, v in tensors.items() if k.startswith(source)})
    return family, family.for_inference(net).eval()
