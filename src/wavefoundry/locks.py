"""A lock on shared state in a project folder, held by one process at a time.

`fcntl.flock` on a lock file: the operating system releases it when its holder exits, however
it exits, so a killed run never leaves a stale lock behind. The file names its holder (pid,
command, start time) for the message another process shows.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from wavefoundry.errors import UserError


def _holder(path: Path) -> str:
    with contextlib.suppress(OSError, ValueError):
        held = json.loads(path.read_text(encoding="utf-8"))
        since = time.strftime("%H:%M:%S", time.localtime(held["since"]))
        return f"pid {held['pid']} ({held['command']}), since {since}"
    return "another process"


@contextlib.contextmanager
def file_lock(
    path: Path, what: str, *, wait: bool = True, on_wait: str | None = None
) -> Iterator[None]:
    """Hold the lock `path` while inside. `wait`: take turns (`on_wait` is printed once to
    stderr while waiting); else another holder is a UserError naming it. `what` says what
    the lock guards, for that message."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unbuffered: nothing is left to flush at close, where a full disk would raise again.
    with open(path, "a+b", buffering=0) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise UserError(
                    f"{what} is in use by {_holder(path)}: wait for it to finish "
                    f"(the lock is {path})"
                ) from None
            if on_wait:
                print(f"{on_wait} ({_holder(path)} holds {path})", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
        holder = json.dumps({"pid": os.getpid(), "command": command, "since": time.time()})
        # Who holds it, for the message others show; on a full disk the lock holds without it
        # (the work inside then says what could not be written).
        with contextlib.suppress(OSError):
            handle.truncate(0)
            handle.write(holder.encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)
