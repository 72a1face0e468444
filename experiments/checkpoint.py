"""Run checkpoints: arrays plus JSON metadata in one .npz, written atomically, checked on load.

A checkpoint holds the method's state (parameters, optimiser moments) as named
arrays, and under ``meta`` the epoch reached, the metrics rows so far, the RNG
states and the run's ``identity`` (the settings that must match for a resume:
architecture, method, data, seed, dtype, batch size).
"""
import json
import zipfile

import numpy as np

from tagi.divergence import negative_variance_keys, nonfinite_keys

from .io import atomic_write

META_KEY = "__meta__"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or belongs to another run; the message says which and why."""


def save(path, arrays, meta):
    """Write ``arrays`` (name -> numpy array) and ``meta`` (JSON-able dict) to ``path`` atomically;
    arrays holding NaN or infinite values, or variances holding negative ones, are refused (a
    diverged state is never written)."""
    if META_KEY in arrays:
        raise ValueError(f"array name {META_KEY!r} is reserved")
    bad = nonfinite_keys(arrays)
    if bad:
        raise CheckpointError(f"{path}: not saved: non-finite values in {', '.join(bad)}")
    negative = negative_variance_keys(arrays)
    if negative:
        raise CheckpointError(f"{path}: not saved: negative variances in {', '.join(negative)}")
    record = dict(arrays)
    record[META_KEY] = np.frombuffer(json.dumps({"format": FORMAT, **meta}).encode(), dtype=np.uint8)
    atomic_write(path, lambda f: np.savez(f, **record))


def load(path):
    """Read a checkpoint -> (arrays, meta); a truncated or foreign file, or one holding NaN or
    infinite values or negative variances, raises CheckpointError naming the arrays."""
    try:
        with np.load(path, allow_pickle=False) as record:
            arrays = {name: record[name] for name in record.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({err}); "
                              "delete it to start the run afresh") from err
    if META_KEY not in arrays:
        raise CheckpointError(f"{path}: not a tagi checkpoint (no {META_KEY} entry)")
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: checkpoint format {meta.get('format')} is not {FORMAT}")
    bad = nonfinite_keys(arrays)
    if bad:
        raise CheckpointError(f"{path}: the checkpoint holds non-finite values (NaN or inf) in "
                              f"{', '.join(bad)}; it cannot be resumed: delete it to start afresh")
    negative = negative_variance_keys(arrays)
    if negative:
        raise CheckpointError(f"{path}: the checkpoint holds negative variances in {', '.join(negative)}; "
                              "it cannot be resumed: delete it to start afresh")
    return arrays, meta


def flatten(tree, prefix=""):
    """{"a": {"b": 1}} -> {"a.b": 1}: the leaves of nested dicts under dotted keys."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def check_identity(path, saved, current):
    """Refuse to resume when the checkpoint's identity differs from this run's, naming each difference."""
    if saved == current:
        return
    if saved.get("model") != current.get("model"):
        raise CheckpointError(f"{path}: the checkpoint is of another architecture "
                              f"({saved.get('model_name')!r} vs this run's {current.get('model_name')!r}); "
                              "use another run folder or delete the checkpoint")
    old, new = flatten(saved), flatten(current)
    diffs = [f"{key}: checkpoint {old.get(key)!r}, this run {new.get(key)!r}"
             for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    raise CheckpointError(f"{path}: the checkpoint was written by a run with other settings "
                          f"({'; '.join(diffs)}); use another run folder or delete the checkpoint")
