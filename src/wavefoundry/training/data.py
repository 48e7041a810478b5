"""What the trainer reads: the stored dataset's facts, its splits, and a sampler that resumes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler

from wavefoundry.data.segments import SegmentDataset, collate_segments


class ResumableSampler(Sampler[int]):
    """A seeded shuffle per epoch, sharded over DDP ranks, that can start mid-epoch.

    The order is a function of (seed, epoch) alone, so a resumed run that skips the batches
    it already took sees exactly the batches the uninterrupted run would have.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.rank, self.world_size = size, seed, rank, world_size
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
        yield from order[self.rank :: self.world_size][self.start :]


def loader(
    dataset: SegmentDataset,
    batch_size: int,
    sampler: Sampler[int] | None,
    num_workers: int,
    seed: int,
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
        collate_fn=collate_segments,
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )
