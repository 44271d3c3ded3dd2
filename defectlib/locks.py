"""Advisory file locks between processes (``fcntl.flock``), so that two processes never train
the same fold or finish the same run at once.

A lock is held for as long as the ``with`` block runs and is released when the process ends,
however it ends, so a killed process never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path


class FileLock:
    """An exclusive lock on ``path`` (created if missing).

    ``with FileLock(path, wait=False) as held:`` gives ``held`` False when another process
    holds it; with ``wait=True`` (the default) it blocks until the lock is free, printing
    ``waiting`` to stderr first if it has to wait.

    Examples
    --------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "a.lock"
    >>> with FileLock(path) as held:
    ...     held
    True
    """

    def __init__(self, path: str | os.PathLike, *, wait: bool = True, waiting: str | None = None) -> None:
        self.path = Path(path)
        self.wait = wait
        self.waiting = waiting
        self._fd: int | None = None

    def __enter__(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not self.wait:
                os.close(fd)
                return False
            if self.waiting:
                print(self.waiting, file=sys.stderr, flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd = fd
        return True

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def is_locked(path: str | os.PathLike) -> bool:
    """Whether another process holds the lock on ``path`` now."""
    path = Path(path)
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
