"""Run folders: finding them, reading their files, and what each run records.

A run folder is one that holds ``summary.json`` (written by ``experiments.train``), usually
with ``metrics.csv`` (one row per epoch), ``train.log`` (the Hydra log of every launch) and
``test_probs.npz``. ``gather`` reads every run under some folders into two DataFrames; a run
whose files cannot be read is kept apart, with the file and the fault, never dropped silently.
"""
import json
import logging
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from tagi.metrics import reliability_sums

from .checkpoint import flatten
from .methods import IDENTITY_LATER
from .tracking import ARTIFACTS

log = logging.getLogger(__name__)

# The settings that define a comparison; runs differing in any of them are never pooled.
# "method.*" and "model.layers" stand for every leaf of those config sections.
KEY = ("model", "model.layers", "width", "method", "batch_size", "planned_epochs", "train_limit",
       "test_limit", "val_size", "dtype", "debug_run", "preprocess", "init", "method.*")
UNRECORDED = "not recorded"      # the data source of runs whose summary has no provenance
# method settings that only feed train.* (which the key holds as batch_size, planned_epochs)
_PROTOCOL = ("method.name", "method.epochs", "method.batch_size")
METRICS_NEEDED = ("epoch", "test_error", "test_nll")


def find_runs(paths):
    """Run folders (holding summary.json) under each path, sorted, without repeats; the copies
    in an MLflow artifact store (``tracking.ARTIFACTS``) are not runs."""
    runs = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder")
        runs.update(p.parent for p in path.rglob("summary.json")
                    if ARTIFACTS not in p.relative_to(path).parts)
    return sorted(runs)


def run_key(summary):
    """A run's settings that define the comparison (KEY), as a flat dict of JSON-able values."""
    config = summary.get("config", {})
    key = {name: summary.get(name) for name in KEY if "." not in name}
    key["model.layers"] = json.dumps((config.get("model") or {}).get("layers"))
    key.update({name: value for name, value in flatten(config.get("method", {}), "method").items()
                if name not in _PROTOCOL and not _later_at_default(name, value)})
    return key


def _later_at_default(name, value):
    """Whether ``name`` ("method.x") is a setting added after runs were recorded, at the value those
    runs had (``methods.IDENTITY_LATER``): such runs and the later ones with it are pooled."""
    return IDENTITY_LATER.get(name.removeprefix("method."), object()) == value


def status(summary):
    """"finished", "unfinished" or "diverged" (summaries without a status: by the epochs run)."""
    if "status" in summary:
        return summary["status"]
    return "finished" if summary.get("epochs", 0) >= summary.get("planned_epochs", 0) else "unfinished"


class UnreadableRunError(ValueError):
    """A run's summary.json or metrics.csv cannot be read; the message names the file and the fault."""


def _fault(err):
    """An exception of reading a file -> what is wrong with the file, in words."""
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text ({err.reason} at byte {err.start})"
    if isinstance(err, json.JSONDecodeError):
        return f"not complete JSON (truncated?): {err}"
    if isinstance(err, pd.errors.EmptyDataError):
        return "empty"
    return f"{type(err).__name__}: {err}"


def read_run(folder):
    """A run folder -> (summary dict, its metrics.csv as a DataFrame or None without one);
    UnreadableRunError when either file cannot be read or lacks what the table needs."""
    path = folder / "summary.json"
    try:
        summary = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError) as err:
        raise UnreadableRunError(f"{path}: {_fault(err)}") from err
    if not isinstance(summary, dict):
        raise UnreadableRunError(f"{path}: not a JSON object but a {type(summary).__name__}")
    path = folder / "metrics.csv"
    if not path.exists():
        return summary, None
    try:
        curve = pd.read_csv(path, encoding="utf-8")
    except (OSError, ValueError) as err:
        raise UnreadableRunError(f"{path}: {_fault(err)}") from err
    missing = [column for column in METRICS_NEEDED if column not in curve.columns]
    if missing:
        raise UnreadableRunError(f"{path}: no column {', '.join(missing)}")
    return summary, curve


def gather(paths):
    """-> (runs, curves): one row per run (summary fields, its status, its key as JSON, its data
    source, its folder), and the metrics rows of every run (metrics.csv plus a ``run`` column).
    A run whose files cannot be read (``read_run``) is logged and kept as a row of status
    "unreadable" whose ``error`` names the file and the fault. FileNotFoundError when no run
    is found."""
    summaries, curves = [], []
    for folder in find_runs(paths):
        try:
            summary, curve = read_run(folder)
        except UnreadableRunError as err:
            log.warning("%s; the run is listed apart", err)
            summaries.append({"status": "unreadable", "error": str(err), "key": "null", "run": str(folder)})
            continue
        key = run_key(summary)
        summary.pop("config", None)
        summary.pop("reliability", None)                  # run_reliability reads it from the file
        source = summary.pop("provenance", {}).get("data", {}).get("source", UNRECORDED)
        summaries.append({**summary, "status": status(summary), "key": json.dumps(key, sort_keys=True),
                          "data_source": source, "run": str(folder)})
        if curve is not None:
            curves.append(curve.assign(run=str(folder)))
    if not summaries:
        raise FileNotFoundError(f"no runs (summary.json) under {', '.join(map(str, paths))}")
    if not curves:                                           # every run diverged in its first epoch
        curves = [pd.DataFrame({"epoch": [], "test_error": [], "test_nll": [], "run": []})]
    return pd.DataFrame(summaries), pd.concat(curves, ignore_index=True)


# a train.log line: "[2026-12-01 14:15:29,972][__main__][INFO] - message"
_LOG_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[[^\]]*\]\[\w+\] - (.*)$")
_EPOCH_DONE = re.compile(r"^epoch (\d+): test error")


def wall_seconds(log_path, epochs):
    """Wall seconds of epochs 1..``epochs`` from a run's train.log (the main job's Hydra log,
    appended to by every launch), training, evaluation and writing the results included: each
    epoch counts from its launch's "run folder" line (data loaded, network built) or from the
    previous epoch's line, whichever is later, to its own line; a launch refused at the start
    writes no "run folder" line and counts nothing. An epoch logged twice counts its last time.
    -> float, NaN without a log or when an epoch's line is missing."""
    path = Path(log_path)
    if not path.exists():
        return float("nan")
    records = []                                       # (time, message with its continuation lines)
    for line in path.read_text(errors="replace").splitlines():
        match = _LOG_LINE.match(line)
        if match:
            records.append([datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S,%f"), match[2]])
        elif records:
            records[-1][1] += "\n" + line
    per_epoch, start = {}, None
    for when, message in records:
        done = _EPOCH_DONE.match(message)
        if done and start is not None:
            per_epoch[int(done[1])] = (when - start).total_seconds()
            start = when
        elif ", run folder " in message:
            start = when
    if any(epoch not in per_epoch for epoch in range(1, epochs + 1)):
        return float("nan")
    return float(sum(per_epoch[epoch] for epoch in range(1, epochs + 1)))


def run_reliability(folder):
    """A run's reliability bins as sums (``tagi.metrics.reliability_sums``): from its summary.json,
    else from its test_probs.npz; None, logged, when it has neither."""
    summary = json.loads((Path(folder) / "summary.json").read_text())
    if "reliability" in summary:
        return summary["reliability"]
    if (Path(folder) / "test_probs.npz").exists():
        with np.load(Path(folder) / "test_probs.npz") as record:
            return reliability_sums(record["probs"], record["labels"])
    log.warning("%s: no reliability bins in summary.json and no test_probs.npz, left out of the "
                "reliability diagram", folder)
    return None
