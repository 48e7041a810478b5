"""The one reader of the training store (data/store.py writes it): a stored dataset's facts
(sample rate, speakers, data version) and its split folders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import torch

from wavefoundry.config import Config
from wavefoundry.errors import UserError


@dataclass(frozen=True)
class DataSpec:
    """What a family needs to know about the stored dataset it trains on."""

    dataset: str
    sample_rate: int
    speakers: tuple[str, ...] = ()  # VCTK speaker ids of the train split, sorted; () if none

    def speaker_index(self, names: list[str]) -> torch.Tensor:
        """A batch's speaker names to indices into `speakers`; a speaker not seen in training
        (a held-out one in the valid split) maps to 0."""
        lookup = {name: i for i, name in enumerate(self.speakers)}
        return torch.tensor([lookup.get(str(n), 0) for n in names], dtype=torch.long)

    def speaker_id(self, name: Any) -> int:
        """A requested speaker's index, for inference: None means the first speaker; an
        unknown name is a ValueError naming the speakers there are."""
        if name is None:
            return 0
        if str(name) in self.speakers:
            return self.speakers.index(str(name))
        if not self.speakers:
            raise ValueError(
                f"unknown speaker {name!r}: this model was trained on {self.dataset}, "
                "which has no speakers; leave the speaker out"
            )
        known = ", ".join(self.speakers[:5])
        more = f" and {len(self.speakers) - 5} more" if len(self.speakers) > 5 else ""
        raise ValueError(f"unknown speaker {name!r}: known speakers are {known}{more}")


def data_version(cfg: Config, dataset: str) -> str:
    """The stored dataset's data version (the DVC hash of its processed folder, written by the
    store next to it); "" when it has not been stored."""
    path = cfg.paths.data_version(dataset)
    return json.loads(path.read_text())["data_version"] if path.is_file() else ""


def stored_dataset(cfg: Config, dataset: str) -> tuple[DataSpec, str]:
    """The DataSpec of a stored dataset and its data version (DVC hash of the processed folder)."""
    folder = cfg.paths.processed(dataset)
    meta_path = folder / "meta.json"
    if not meta_path.is_file():
        raise UserError(
            f"no stored {dataset} dataset at {folder}: run `wavefoundry prepare -d {dataset}` first"
        )
    meta = json.loads(meta_path.read_text())
    version = data_version(cfg, dataset)
    # Only the speaker column, and only if there is one: the index can be large.
    index_path = split_dir(cfg, dataset, "train") / "index.parquet"
    speakers: tuple[str, ...] = ()
    if "speaker" in pq.read_schema(index_path).names:
        column = pd.read_parquet(index_path, columns=["speaker"])["speaker"]
        speakers = tuple(sorted(column.astype(str).unique()))
    spec = DataSpec(dataset, int(meta["sample_rate"]), speakers)
    return spec, version


def split_dir(cfg: Config, dataset: str, split: str) -> Path:
    """A stored split's folder; one clear line when the split has no clips."""
    folder = cfg.paths.processed(dataset)
    path = folder / split
    if not (path / "index.parquet").is_file():
        meta_path = folder / "meta.json"
        present = list(json.loads(meta_path.read_text())["splits"]) if meta_path.is_file() else []
        raise UserError(
            f"the stored {dataset} dataset has no clips in its {split} split "
            f"(splits with clips: {', '.join(present) or 'none'}); give it some, e.g. "
            f"--set datasets.{dataset}.split.{split}_fraction=0.1, and run `wavefoundry prepare -d {dataset}`"
        )
    return path
