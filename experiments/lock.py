"""One run per folder: an OS-level lock on the run folder, held for the run's whole life.

The lock is ``fcntl.flock`` on ``FOLDER/.run.lock``, which also records the holder's
pid; the operating system drops it when the holding process ends, however it ends,
so a killed run never blocks the next one.
"""
import fcntl
import os
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".run.lock"


class FolderBusyError(RuntimeError):
    """Another live process holds the run folder; the message names the folder and its pid."""


@contextmanager
def hold_run_folder(folder):
    """Within the block this process alone runs in ``folder`` (created if missing);
    raises FolderBusyError at once if another process holds it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise FolderBusyError(f"{folder}: another run (pid {holder}) is using this run folder; "
                                  "wait for it to end or choose another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield folder
    finally:
        os.close(fd)                                  # releases the lock
