"""Progress of long loops: rich bars on a terminal, silent when output is not a TTY; and
training's progress lines, for output that is a pipe or a file."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True)


def interactive() -> bool:
    return sys.stderr.isatty()


@contextmanager
def progress_bar(
    description: str, total: int, enabled: bool | None = None
) -> Iterator[Callable[[int], None]]:
    """Yields `advance(n)`; draws a bar only on a terminal (or when `enabled` is True)."""
    if not (interactive() if enabled is None else enabled):
        yield lambda n: None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


PROGRESS_EVERY = 10.0  # seconds between training's progress lines


def progress_lines(total: int, file: TextIO) -> Callable[[int, dict[str, float]], None]:
    """`on_step` for the trainer: a line `step N/TOTAL  loss ...  ~S s left` to `file` on the
    first step, then every PROGRESS_EVERY seconds and at the last step: what a pipeline task
    (its output a pipe) or `train` with output that is no terminal shows instead of the bar.
    The time left is timed from the first step's end: the first step also builds and warms up,
    so it says nothing of the pace."""
    first_step, started, last = 0, 0.0, -math.inf  # first_step 0: no step seen yet

    def on_step(step: int, losses: dict[str, float]) -> None:
        nonlocal first_step, started, last
        now = time.monotonic()
        if not first_step:
            first_step, started = step, now
        elif step < total and now - last < PROGRESS_EVERY:
            return
        last = now
        shown = "  ".join(f"{k} {v:.4g}" for k, v in list(losses.items())[:3])
        if step > first_step:
            left = (now - started) / (step - first_step) * (total - step)
            print(f"step {step}/{total}  {shown}  ~{left:.0f} s left", file=file, flush=True)
        else:
            print(f"step {step}/{total}  {shown}", file=file, flush=True)

    return on_step
