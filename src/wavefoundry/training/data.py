"""What the trainer reads: the stored dataset's facts, its splits, and a sampler that resumes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from wavefoundry.data.segments import SegmentDataset, collate_segments


class ResumableSampler(Sampler[int]):
    """A seeded shuffle per epoch, sharded over DDP ranks, that can start mid-epoch.

    The order is a function of (seed, epoch) alone, so a resumed run that skips the batches
    it already took sees exactly the batches the uninterrupted run would have.

    With `lengths` (one per item), each rank's share is bucketed: taken in pools of
    `BUCKET_BATCHES` batches, each pool sorted by length and cut into batches of
    `batch_size`, the whole batches shuffled (a short last batch stays last, for drop_last),
    so a padded batch holds clips of similar length.
    """

    BUCKET_BATCHES = 8

    def __init__(
        self,
        size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        lengths: np.ndarray | None = None,
        batch_size: int = 1,
    ):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
        self.lengths, self.batch_size = lengths, batch_size
        self.per_rank = -(-size // world_size)
        self.epoch = 0
        self.start = 0  # items of this epoch already taken (by this rank)

    def set_position(self, epoch: int, start: int) -> None:
        self.epoch, self.start = epoch, start

    def __len__(self) -> int:
        return self.per_rank - self.start

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        order += order[: self.per_rank * self.world_size - self.size]  # equal shares per rank
        share = order[self.rank :: self.world_size]
        if self.lengths is not None:
            share = self._bucketed(share, generator)
        yield from share[self.start :]

    def _bucketed(self, share: list[int], generator: torch.Generator) -> list[int]:
        size = self.batch_size
        pool = size * self.BUCKET_BATCHES
        batches: list[list[int]] = []
        for begin in range(0, len(share), pool):
            chunk = sorted(share[begin : begin + pool], key=lambda i: int(self.lengths[i]))
            batches += [chunk[i : i + size] for i in range(0, len(chunk), size)]
        whole = [b for b in batches if len(b) == size]
        rest = [i for b in batches if len(b) < size for i in b]
        shuffled = torch.randperm(len(whole), generator=generator).tolist()
        return [i for k in shuffled for i in whole[k]] + rest


def loader(
    dataset: SegmentDataset,
    batch_size: int,
    sampler: Sampler[int] | None,
    num_workers: int,
    seed: int,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate_segments,
) -> DataLoader:
    # An explicit generator keeps the DataLoader from drawing on torch's global RNG, which
    # the training step's own randomness (and exact resume) depends on.
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=sampler is not None,
        num_workers=num_workers,
        collate_fn=collate_fn,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )
