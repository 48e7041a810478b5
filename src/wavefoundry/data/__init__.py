"""Datasets: one adapter module per dataset, each reading the official on-disk layout."""

from __future__ import annotations

from types import ModuleType

from wavefoundry.data import ljspeech, nsynth, vctk
from wavefoundry.errors import UserError

ADAPTERS: dict[str, ModuleType] = {"ljspeech": ljspeech, "vctk": vctk, "nsynth": nsynth}


def get_adapter(name: str) -> ModuleType:
    """The adapter module for a dataset: `NAME`, `SAMPLE_RATE`, `list_clips(dirs, cfg)`."""
    try:
        return ADAPTERS[name]
    except KeyError:
        raise UserError(f"unknown dataset {name!r}; choose one of {', '.join(ADAPTERS)}") from None
