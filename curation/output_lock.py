"""One writer per output folder: a run holds an exclusive lock on ``--out`` from its first check to its last
write, so a second run into the same folder is refused at once with who holds it, instead of racing (each run
cleans the other's unfinished partitions, and both write the same shard names).

The lock is ``fcntl.flock`` on ``.vidrd-lock`` in the folder: the kernel drops it when the process ends, however
it ends, so a killed run never leaves a stale lock behind. It is opened with ``O_NOFOLLOW``: a link planted at
that name is refused, never followed. On object stores (``s3://``, ``gs://``) there is no lock to take: one
run per output there is the user's to keep (README, "What we guarantee").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
from collections.abc import Iterator

from fsspec.implementations.local import LocalFileSystem

from manifests.io import url_to_fs

LOCK_FILE = ".vidrd-lock"


class OutputBusyError(RuntimeError):
    """Another run is writing the output folder (or its lock file is not one)."""


@contextlib.contextmanager
def exclusive_output(out: str) -> Iterator[None]:
    """Hold ``out``'s lock for the body; :class:`OutputBusyError` naming the holder when another run has it."""
    fs, root = url_to_fs(out)
    if not isinstance(fs, LocalFileSystem):
        yield
        return
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as e:
        why = "is a symbolic link" if e.errno == errno.ELOOP else f"cannot be opened ({e.strerror})"
        raise OutputBusyError(f"{path} {why}: remove it (it is only a lock) and run again") from e
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise OutputBusyError(
                f"{out} is being written by another run ({holder}); wait for it to finish or give another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, so no run ever locks a file another just deleted
