"""One run per folder, and nothing written through a link: the run folder's lock and checks.

The lock is ``fcntl.flock`` on ``FOLDER/.run.lock``, which also records the holder's
pid; the operating system drops it when the holding process ends, however it ends,
so a killed run never blocks the next one. The lock file is opened with
``O_NOFOLLOW``, and ``refuse_links`` refuses a folder where any file a run writes is
a symbolic link (a crafted or committed folder could point one at any file of the
user's), before anything is written. ``RunLog``, the file handler of the run's log,
opens its file with ``O_NOFOLLOW`` too.
"""
import errno
import fcntl
import logging
import os
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".run.lock"


class FolderBusyError(RuntimeError):
    """Another live process holds the run folder; the message names the folder and its pid."""


class LinkedRunFolderError(RuntimeError):
    """A file that a run writes in its folder is a symbolic link; the message names it."""


def _linked(path):
    return LinkedRunFolderError(f"{path} is a symbolic link, where a run writes a file of its own; "
                                "nothing was written: remove the link or choose another folder")


def refuse_links(folder, names):
    """Raise LinkedRunFolderError naming the first of ``names`` (paths relative to ``folder``,
    such as ".hydra/config.yaml") that is, or lies under, a symbolic link inside ``folder``."""
    folder = Path(folder)
    for name in names:
        parts = Path(name).parts
        for depth in range(1, len(parts) + 1):
            path = folder.joinpath(*parts[:depth])
            if path.is_symlink():
                raise _linked(path)


@contextmanager
def hold_run_folder(folder):
    """Within the block this process alone runs in ``folder`` (created if missing);
    raises FolderBusyError at once if another process holds it, LinkedRunFolderError if
    its lock file is a symbolic link."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise _linked(folder / LOCK_NAME) from None
        raise
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


class RunLog(logging.FileHandler):
    """logging.FileHandler that opens its file with ``O_NOFOLLOW``: a log that is a symbolic
    link fails to open (the record is reported as a logging error) instead of being written
    through. The main job's Hydra config makes it the file handler of ``train.log``."""

    def _open(self):
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in self.mode else os.O_TRUNC)
        return open(os.open(self.baseFilename, flags, 0o666), self.mode, encoding=self.encoding,
                    errors=self.errors)

    def emit(self, record):
        if self.stream is None:            # the first record opens the file (delay=True)
            try:
                self.stream = self._open()
            except OSError:
                self.handleError(record)
                return
        super().emit(record)


def stop_run_log(folder):
    """Close and detach the root logger's file handlers that write into ``folder`` (its Hydra
    ``train.log``): what is logged next goes to the console only."""
    folder = Path(folder).absolute()
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).parent == folder:
            root.removeHandler(handler)
            handler.close()
