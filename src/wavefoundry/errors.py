"""Errors a user can cause. The CLI prints them as one line and exits 2; nothing else does that."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


class UserError(Exception):
    """Bad input, bad config, a missing server: something the user can fix.

    The message is the whole story: what is wrong and where.
    """

    exit_code = 2


PREEMPTED_EXIT_CODE = 143  # 128 + SIGTERM, what schedulers expect from a preempted task
INTERRUPTED_EXIT_CODE = 130  # 128 + SIGINT, a shell's Ctrl-C


class Preempted(Exception):
    """Training was asked to stop (SIGTERM, or Ctrl-C) and saved a checkpoint first. The
    message says where and how to resume; `exit_code` is 143 or 130."""

    def __init__(self, message: str, exit_code: int = PREEMPTED_EXIT_CODE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# What the operating system says when a write cannot happen, in words a user acts on.
_DISK_ERRORS = {
    "ENOSPC": "no space left on the device",
    "EDQUOT": "the disk quota is used up",
    "EACCES": "permission denied",
    "EPERM": "operation not permitted",
    "EROFS": "the file system is read-only",
}


def disk_error(error: OSError) -> UserError | None:
    """A full disk, a quota, a permission or a read-only file system as one line naming the
    path (None for any other OSError, which stays a bug with its traceback)."""
    import errno

    name = errno.errorcode.get(error.errno or 0, "")
    if name not in _DISK_ERRORS:
        return None
    where = error.filename or "a file"
    if error.filename2:
        where = f"{where} -> {error.filename2}"
    return UserError(f"cannot write {where}: {_DISK_ERRORS[name]} ({name})")


@contextlib.contextmanager
def writing(path: object) -> Iterator[None]:
    """Name `path` in an OSError raised inside that names no file (a `write()` that finds the
    disk full does not), so `disk_error` can say where."""
    try:
        yield
    except OSError as error:
        if not error.filename:
            error.filename = str(path)
        raise
