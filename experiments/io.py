"""Atomic writes: a file is either its old self or complete, never half-written."""
import contextlib
import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
TMP_PATTERN = ".*.tmp"          # the temporary files of atomic_write, named .NAME.RANDOM.tmp
_UMASK = os.umask(0)            # read once (os.umask can only be read by setting it), and put back
os.umask(_UMASK)


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it onto ``path``.

    The file gets the mode that ``open`` would give it (0666 less the umask: 0644 as a rule),
    not mkstemp's 0600. A failed write (a full disk) leaves ``path`` as it was and raises one
    OSError naming ``path``, with the errno of the fault.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)   # TMP_PATTERN
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        _discard(tmp)
        raise OSError(err.errno, f"{path} not written ({err.strerror or err}); "
                                 "its previous content, if any, is kept") from None
    except BaseException:
        _discard(tmp)
        raise


def _discard(tmp):
    """Remove the temporary file of a failed write; gone already when the failure (an interrupt)
    came just after it was renamed into place."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def write_csv(frame, path):
    """Write a pandas DataFrame as CSV, atomically."""
    atomic_write(path, lambda f: f.write(frame.to_csv(index=False).encode()))


def remove_stale_tmp(folder):
    """Delete the temporary files that killed atomic writes left in ``folder``; call it only
    while holding the folder (experiments.lock), so that no live write is among them."""
    for tmp in Path(folder).glob(TMP_PATTERN):
        log.info("removing %s, left by a killed write", tmp)
        tmp.unlink()
