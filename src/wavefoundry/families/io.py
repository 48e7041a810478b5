"""Exported models on disk: what a trained network is and how to rebuild it.

An exported model (`model/`) is model.safetensors (the inference network only, or its EMA
average as `ema.<net>.<param>`) + config.json (family, dataset, data version, model config,
data spec, step): everything needed to rebuild it, nothing pickled. Checkpoints
(training/checkpoint.py) use the same tensor naming and config.json.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from wavefoundry.config import parse_model_config
from wavefoundry.data.stored import DataSpec
from wavefoundry.errors import UserError
from wavefoundry.families.base import Family
from wavefoundry.families.registry import get_family


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


def write_atomically(final: Path, write: Callable[[Path], None]) -> Path:
    """Write a folder under a temporary name with `write(folder)`, then rename it into place:
    a crash mid-write never leaves a folder that looks complete."""
    temporary = final.with_name(f".{final.name}.tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    write(temporary)
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    return final


def export_model(
    directory: Path, description: dict[str, Any], tensors: dict[str, torch.Tensor]
) -> Path:
    def write(folder: Path) -> None:
        save_file(tensors, folder / "model.safetensors")
        (folder / "config.json").write_text(json.dumps(description, indent=2) + "\n")

    return write_atomically(directory, write)


def _family(directory: Path) -> Family:
    """The family an exported model's config.json describes (no weights read)."""
    if not (directory / "config.json").is_file():
        raise UserError(f"no model at {directory} (config.json missing)")
    description = json.loads((directory / "config.json").read_text())
    family_class = get_family(description["family"])
    config = parse_model_config(
        description["model_config"], family_class.config_class, f"{directory}/config.json"
    )
    data = description["data"]
    spec = DataSpec(data["dataset"], int(data["sample_rate"]), tuple(data["speakers"]))
    return family_class(config, spec)


def _upstream_head(family: Family) -> str | None:
    """The prefix, within the inference net's state, of the upstream model's weights."""
    return f"{family.upstream_module}." if family.upstream_module else None


def load_model(directory: Path, upstream: Path | None = None) -> tuple[Family, nn.Module]:
    """An exported model (or a checkpoint) as (family, inference network in eval mode, made
    ready to serve by `Family.for_inference`).

    `upstream`: the exported model this one is built on (the code prior's VQ-VAE), for a model
    saved without its weights (`copy_without_upstream`, as a Bento carries it); its weights
    fill `Family.upstream_module` after `Family.check_upstream` has found it to be the model
    pinned in this one's config. UserError if it is not, or if it is needed and missing."""
    directory = Path(directory)
    family = _family(directory)
    net = family.build()[family.inference_net]
    tensors = load_file(directory / "model.safetensors")
    head = f"{family.inference_net}."
    ema_head = f"ema.{head}"
    source = ema_head if any(k.startswith(ema_head) for k in tensors) else head
    state = {k[len(source) :]: v for k, v in tensors.items() if k.startswith(source)}
    inner = _upstream_head(family)
    if upstream is not None:
        if inner is None:
            raise UserError(f"a {family.name} model is built on no other model: {upstream}")
        family.check_upstream(_family(Path(upstream)), str(upstream))  # before its weights
        _, upstream_net = load_model(upstream)
        state = {k: v for k, v in state.items() if not k.startswith(inner)}
        state |= {inner + k: v for k, v in upstream_net.state_dict().items()}
    elif inner is not None and not any(k.startswith(inner) for k in state):
        raise UserError(
            f"the {family.name} model at {directory} was saved without the model it is built "
            f"on ({family.upstream_module}): load it with that model's folder"
        )
    net.load_state_dict(state)
    return family, family.for_inference(net).eval()


def copy_without_upstream(source: Path, target: Path) -> None:
    """An exported model's files (model.safetensors, config.json) from folder `source` into
    folder `target`, leaving out the weights of the model it is built on (the code prior's
    VQ-VAE, `Family.upstream_module`): where that model travels as well (a Bento), each weight
    is stored once and `load_model(target, upstream=...)` puts the two together."""
    source, target = Path(source), Path(target)
    family = _family(source)
    shutil.copy2(source / "config.json", target / "config.json")
    inner = _upstream_head(family)
    if inner is None:
        shutil.copy2(source / "model.safetensors", target / "model.safetensors")
        return
    within = (f"{family.inference_net}.{inner}", f"ema.{family.inference_net}.{inner}")
    tensors = load_file(source / "model.safetensors")
    kept = {k: v for k, v in tensors.items() if not k.startswith(within)}
    save_file(kept, target / "model.safetensors")
