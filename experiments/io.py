"""Atomic writes: a file is either its old self or complete, never half-written."""
import os
import tempfile
from pathlib import Path


def atomic_write(path, write):
    """Call ``write(f)`` on a temporary binary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_csv(frame, path):
    """Write a pandas DataFrame as CSV, atomically."""
    atomic_write(path, lambda f: f.write(frame.to_csv(index=False).encode()))
