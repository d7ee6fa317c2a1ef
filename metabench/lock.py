"""One writer per results folder: an advisory lock held for the whole run.

    with hold(out):   # raises MetabenchError naming the holder's PID
        ...

The lock is `flock` on `out/.lock`, which holds the holder's PID. The kernel
drops a flock when its process dies, however it dies, so a lock left by a
killed run never blocks the resume: only a live holder does. The file is
removed on a clean exit; a second process that opened it just before the
removal sees that the path no longer names the file it locked, and retries.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from metabench.errors import MetabenchError

LOCK_NAME = ".lock"


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"PID {pid}" if pid.isdigit() else "a process that has not written its PID yet"


@contextlib.contextmanager
def hold(folder: Path) -> Iterator[None]:
    """Hold `folder`'s lock until the block ends; the folder must exist."""
    path = folder / LOCK_NAME
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:  # a read-only file system, /proc, no permission
            raise MetabenchError(f"cannot write to {folder}: {exc.strerror}; give a writable --out folder") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise MetabenchError(
                f"{folder} is in use by another metabench run ({_holder(path)}); "
                "wait for it to finish or give another --out folder"
            ) from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)
