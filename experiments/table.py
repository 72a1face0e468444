"""Gather runs into the results table, beside the published numbers, with curves and calibration.

    python -m experiments.table multirun/cifar10_3conv [MORE_RUN_DIRS...] [--out results]

Every folder given is searched for runs (folders with summary.json). A row pools
only runs alike in every setting that defines the comparison (``KEY``: model and
its layers, method and its settings, batch size, planned epochs, data limits,
dtype, debug or not); rows of one model and method that differ show the differing
settings. ``seeds`` counts distinct seeds; a seed run twice is used once and
reported. Each row gives the test error after epoch 1 and after the published
epoch count E when every run reached it, else after the epochs run, with "published
E not reached (ran N)", and the test NLL and ECE there, each as mean ± std over the
seeds (sample std, ddof=1; none for one seed); a difference Δ to the published
figure is only ever between the same epochs, and only for runs on the full data.
Diverged and unfinished runs are listed apart, never averaged in, and so are runs whose
summary.json or metrics.csv cannot be read, each with the file and its fault. Below the table,
every run gets a line of its own: its errors, NLL, ECE, training time and wall time; for a run
with a validation split (``data.val_size``) also the test error at the epoch of its lowest
validation error, the only epoch choice the tables make (none on the test set). A warning
says when the runs read different data (the data source of their provenance). Writes
``table.md``, ``table.csv``, ``runs.csv`` (the per-run lines), ``curves.png`` (test
error and test NLL per epoch) and ``reliability.png`` to ``--out``.
"""
import argparse
import json
import logging
import re
from datetime import datetime
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback

from tagi.metrics import pooled_reliability, reliability_sums

from .checkpoint import flatten
from .tracking import ARTIFACTS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

log = logging.getLogger(__name__)

# The published table (cutagi-doc 3-conv CIFAR-10; BP from Wan et al. 2013): error rates as fractions
PUBLISHED = {
    ("cifar10_3conv", "tagi"): {"error_e1": 0.5271, "error_final": 0.2966, "epochs": 50, "batch_size": 16},
    ("cifar10_3conv", "bp"): {"error_e1": np.nan, "error_final": 0.235, "epochs": 150, "batch_size": 128},
}
# The settings that define a comparison; runs differing in any of them are never pooled.
# "method.*" and "model.layers" stand for every leaf of those config sections.
KEY = ("model", "model.layers", "width", "method", "batch_size", "planned_epochs", "train_limit",
       "test_limit", "val_size", "dtype", "debug_run", "preprocess", "init", "method.*")
UNRECORDED = "not recorded"      # the data source of runs whose summary has no provenance
# settings the table shows in columns of their own where the runs record them (runs written
# before they were recorded have none), not among a row's differing settings
SHOWN = {"preprocess": "preprocessing", "init": "initialisation"}
# method settings that only feed train.* (which the key holds as batch_size, planned_epochs)
_PROTOCOL = ("method.name", "method.epochs", "method.batch_size")


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
                if name not in _PROTOCOL})
    return key


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


METRICS_NEEDED = ("epoch", "test_error", "test_nll")


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
    """-> (runs, curves): one row per run (summary fields, its status, its key as JSON, its folder),
    and the metrics rows of every run. A run whose files cannot be read (``read_run``) is
    logged and kept as a row of status "unreadable" whose ``error`` names the file and the
    fault: listed apart, never in the table."""
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
        summary.pop("reliability", None)                  # plot_reliability reads it from the file
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


def per_run(runs, curves):
    """One row per run, every status: method, seed, status, epochs done of those planned, test
    error after epoch 1, at the last epoch and at the validation-best epoch (``val_best``), the
    last epoch's test NLL and ECE, training seconds (metrics.csv, evaluation left out), wall
    seconds (``wall_seconds`` of its train.log) and data source -> DataFrame, in the table's
    method order."""
    rows = []
    for _, run in runs[runs["status"] != "unreadable"].iterrows():
        curve = curves[curves["run"] == run["run"]]
        epochs = int(run["epochs"])
        best = val_best(curve)
        rows.append({
            "run": Path(run["run"]).name, "model": run["model"], "method": run["method"],
            "seed": run["seed"], "status": run["status"], "epochs": epochs,
            "planned_epochs": run["planned_epochs"],
            "error_e1": run.get("error_e1", np.nan), "error_last": run.get("test_error", np.nan),
            "error_at_val_best": np.nan if best is None else float(best["test_error"]),
            "val_best_epoch": np.nan if best is None else int(best["epoch"]),
            "test_nll": run.get("test_nll", np.nan), "test_ece": run.get("test_ece", np.nan),
            "train_seconds": run.get("train_seconds", np.nan),
            "wall_seconds": wall_seconds(Path(run["run"]) / "train.log", epochs),
            "data_source": run["data_source"]})
    table = pd.DataFrame(rows)
    return _in_method_order(table.sort_values(["model", "seed"], kind="stable")) if len(table) else table


def val_best(curve):
    """The metrics row of a run's ``curve`` at its lowest validation error (the first such
    epoch), None for a run without a validation split: the test set never chooses an epoch."""
    if "val_error" not in curve or not curve["val_error"].notna().any():
        return None
    return curve.loc[curve["val_error"].idxmin()]


def _in_method_order(table):
    """Rows sorted stably by method in the published table's order (TAGI, BP, then the rest)."""
    order = {"tagi": 0, "bp": 1}
    return table.sort_values("method", key=lambda m: m.map(order).fillna(len(order)), kind="stable",
                             ignore_index=True)


def _duration(seconds):
    if pd.isna(seconds):
        return "–"
    minutes = int(round(seconds / 60))
    return f"{seconds:,.0f} s ({minutes // 60} h {minutes % 60:02d} min)"


def _decimal(value):
    return "–" if pd.isna(value) else f"{value:.3f}"


def runs_markdown(table):
    """The per-run lines as markdown (a "data" column where some run records its data source)."""
    lines = pd.DataFrame({
        "network": table["model"], "Model": table["method"].str.upper(), "seed": table["seed"],
        "epochs": [f"{e} of {p}" + ("" if s == "finished" else f" ({s})")
                   for e, p, s in zip(table["epochs"], table["planned_epochs"], table["status"])],
        "error e=1": table["error_e1"].map(_percent),
        "error, last epoch": table["error_last"].map(_percent),
        "error at val-best epoch (epoch)": ["–" if np.isnan(b) else f"{_percent(e)} ({int(b)})"
                                            for e, b in zip(table["error_at_val_best"],
                                                            table["val_best_epoch"])],
        "test NLL": table["test_nll"].map(_decimal),
        "ECE": table["test_ece"].map(_decimal),
        "training time": table["train_seconds"].map(_duration),
        "wall time": table["wall_seconds"].map(_duration),
        "data": table["data_source"],
    })
    if (table["data_source"] == UNRECORDED).all():
        lines = lines.drop(columns="data")
    return lines.to_markdown(index=False, disable_numparse=True)


def data_warning(runs):
    """A warning line when the runs read different data (their provenance's data source), else ""."""
    if "data_source" not in runs:                      # every run unreadable
        return ""
    counts = runs["data_source"].value_counts()
    if len(counts) < 2:
        return ""
    return ("Warning: the runs read different data (" +
            ", ".join(f"{source}: {count} run{'s' if count > 1 else ''}"
                      for source, count in counts.items()) +
            "); compare only rows on the same data.")


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def _at_epoch(curves, folders, epoch, column):
    """``column`` of metrics.csv at ``epoch`` for each run folder."""
    rows = curves[curves["run"].isin(folders) & (curves["epoch"] == epoch)]
    return rows.set_index("run").loc[list(folders), column].to_numpy(dtype=float)


def _differing(keys):
    """Per row, the key settings whose values differ between rows of its model, as
    "name=value, ...": the method's own settings (``method.*``) among rows of that model and
    method only (a TAGI row and a BP row differ in them by nature, and so may two networks'
    recipes), every other setting among all rows of the model."""
    fixed = ("model", "method", "batch_size", "planned_epochs", "debug_run", *SHOWN)
    shown = []
    for key in keys:
        def varies(name):
            rows = [k for k in keys if k["model"] == key["model"]
                    and (not name.startswith("method.") or k["method"] == key["method"])]
            return len({json.dumps(k.get(name)) for k in rows}) > 1
        names = [name for name in key if name not in fixed and varies(name)]
        shown.append(", ".join([f"{n}={key.get(n)}" for n in names]
                               + (["debug"] if key.get("debug_run") else [])))
    return shown


def results_table(runs, curves):
    """One row per comparison key over the finished runs -> DataFrame (see the module docstring)."""
    rows, keys = [], []
    finished = runs[runs["status"] == "finished"]
    for key_text, group in finished.groupby("key", sort=False):
        key = json.loads(key_text)
        per_seed = group.drop_duplicates("seed")                     # a repeated seed counts once
        repeated = group["seed"][group["seed"].duplicated()].unique().tolist()
        folders = per_seed["run"].tolist()
        custom = key["model.layers"] != "null"
        published = {} if custom else PUBLISHED.get((key["model"], key["method"]), {})
        full_data = key["train_limit"] is None and key["test_limit"] is None and not key["debug_run"]
        ran = int(per_seed["epochs"].min())
        epoch = min(ran, published.get("epochs", ran))
        e1, e1_std = _mean_std(_at_epoch(curves, folders, 1, "test_error"))
        err, err_std = _mean_std(_at_epoch(curves, folders, epoch, "test_error"))
        nll, nll_std = _mean_std(_at_epoch(curves, folders, epoch, "test_nll"))
        ece, ece_std = _mean_std(per_seed["test_ece"]) if epoch == ran else (np.nan, np.nan)
        notes = [f"repeated seed {', '.join(map(str, repeated))} (used once)"] if repeated else []
        if published and ran < published["epochs"]:
            notes.append(f"published E not reached (ran {ran})")
        if published and not full_data:
            notes.append("limited data: no Δ")
        comparable = full_data and bool(published)
        rows.append({
            "model": key["model"], "method": key["method"], "seeds": len(per_seed), "runs": len(group),
            "error_e1": e1, "error_e1_std": e1_std, "error_at_e": err, "error_at_e_std": err_std,
            "epochs": epoch, "planned_epochs": key["planned_epochs"], "batch_size": key["batch_size"],
            **{name: key.get(name) for name in SHOWN},
            "test_nll": nll, "test_nll_std": nll_std, "test_ece": ece, "test_ece_std": ece_std,
            "published_error_e1": published.get("error_e1", np.nan),
            "published_error_final": published.get("error_final", np.nan),
            "published_epochs": published.get("epochs", np.nan),
            "diff_e1": e1 - published.get("error_e1", np.nan) if comparable else np.nan,
            "diff_e": (err - published["error_final"]
                       if comparable and epoch == published["epochs"] else np.nan),
            "note": "; ".join(notes), "key": key_text, "run_folders": json.dumps(folders)})
        keys.append(key)
    if not rows:
        return pd.DataFrame(columns=["model", "method", "settings", "key", "run_folders"])
    table = pd.DataFrame(rows)
    table.insert(2, "settings", _differing(keys))
    return _in_method_order(table).sort_values("model", kind="stable", ignore_index=True)


def apart(runs):
    """The diverged and unfinished runs: folder, status, epochs done of those planned, error."""
    rest = runs[~runs["status"].isin(["finished", "unreadable"])]
    if not len(rest):
        return pd.DataFrame(columns=["run", "status", "epochs", "error"])
    return pd.DataFrame({"run": rest["run"], "status": rest["status"],
                         "epochs": [f"{e} of {p}" for e, p in zip(rest["epochs"], rest["planned_epochs"])],
                         "error": rest.get("error", pd.Series(index=rest.index, dtype=object)).fillna("")})


def unreadable(runs):
    """The runs whose files cannot be read: folder and fault (the file named)."""
    bad = runs[runs["status"] == "unreadable"]
    return pd.DataFrame({"run": bad["run"], "fault": bad["error"] if len(bad) else []})


def _percent(mean, std=np.nan):
    if np.isnan(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if np.isnan(std) else f" ± {100 * std:.2f}") + " %"


def _decimal_std(mean, std):
    return _decimal(mean) + ("" if np.isnan(mean) or np.isnan(std) else f" ± {std:.3f}")


def _points(diff):
    return "–" if np.isnan(diff) else f"{100 * diff:+.2f} pt"


def markdown(table, left_apart=None, left_unread=None):
    """The table as markdown, in the published layout plus uncertainty, settings and notes
    (a "network" column where the rows hold more than one, the published columns only where
    a row has a published figure); then the runs left apart (diverged, unfinished), if any,
    and the runs whose files cannot be read, if any."""
    text = _finished_markdown(table) if len(table) else "(no finished runs)"
    if left_apart is not None and len(left_apart):
        text += "\n\nNot in the table (diverged or unfinished):\n\n" + left_apart.to_markdown(index=False)
    if left_unread is not None and len(left_unread):
        text += "\n\nNot in the table (files unreadable):\n\n" + left_unread.to_markdown(index=False)
    return text


def _finished_markdown(table):
    shown = pd.DataFrame({
        "network": table["model"],
        "Model": table["method"].str.upper(), "settings": table["settings"],
        "error e=1": [_percent(m, s) for m, s in zip(table["error_e1"], table["error_e1_std"])],
        "Δ e=1": table["diff_e1"].map(_points),
        "error e=E": [_percent(m, s) for m, s in zip(table["error_at_e"], table["error_at_e_std"])],
        "E": table["epochs"], "B": table["batch_size"], "seeds": table["seeds"],
        **{title: table[name].fillna("–") for name, title in SHOWN.items()},
        "test NLL": [_decimal_std(m, s) for m, s in zip(table["test_nll"], table["test_nll_std"])],
        "ECE": [_decimal_std(m, s) for m, s in zip(table["test_ece"], table["test_ece_std"])],
        "published e=1": table["published_error_e1"].map(_percent),
        "published e=E (E)": [f"{_percent(p)} ({'–' if np.isnan(e) else int(e)})"
                              for p, e in zip(table["published_error_final"], table["published_epochs"])],
        "Δ e=E": table["diff_e"].map(_points), "note": table["note"],
    })
    shown = shown.drop(columns=[title for name, title in SHOWN.items() if table[name].isna().all()])
    if not (shown["settings"] != "").any():
        shown = shown.drop(columns="settings")
    if shown["network"].nunique() < 2:
        shown = shown.drop(columns="network")
    if table[["published_error_e1", "published_error_final"]].isna().all(axis=None):
        shown = shown.drop(columns=["Δ e=1", "published e=1", "published e=E (E)", "Δ e=E"])
    return shown.to_markdown(index=False, disable_numparse=True)


def _label(row):
    settings = f", {row['settings']}" if row["settings"] else ""
    return f"{row['method'].upper()} ({row['model']}{settings})"


def plot_curves(table, curves, path):
    """Test error and test NLL per epoch of each table row, side by side: the mean over its runs
    with a min-max band."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for _, row in table.iterrows():
        group = curves[curves["run"].isin(json.loads(row["run_folders"]))]
        color = None
        seeds = f", mean of {row['seeds']} seeds" if row["seeds"] > 1 else ""
        for ax, column, scale in ((axes[0], "test_error", 100), (axes[1], "test_nll", 1)):
            stats = group.groupby("epoch")[column].agg(["mean", "min", "max"])
            line, = ax.plot(stats.index, scale * stats["mean"], marker="o", ms=3, color=color,
                            label=_label(row) + seeds)
            color = line.get_color()
            ax.fill_between(stats.index, scale * stats["min"], scale * stats["max"], color=color,
                            alpha=0.2)
    band = " (band: min to max over seeds)" if len(table) and (table["seeds"] > 1).any() else ""
    axes[0].set(xlabel="epoch", ylabel="test error (%)", title="Test error per epoch" + band)
    axes[1].set(xlabel="epoch", ylabel="test NLL (nats)", title="Test NLL per epoch" + band)
    for ax in axes:
        ax.grid(alpha=0.3)
        if len(table):
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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


def plot_reliability(table, path):
    """Reliability diagram of each table row, its runs' latest test predictions pooled (the bins
    that summary.json keeps, or test_probs.npz for runs written before it kept them)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    for _, row in table.iterrows():
        sums = [s for s in map(run_reliability, json.loads(row["run_folders"])) if s is not None]
        if not sums:
            continue
        bins_table = pooled_reliability(sums)
        used = bins_table[bins_table["count"] > 0]
        pooled = f", {len(sums)} seeds pooled" if len(sums) > 1 else ""
        ax.plot(used["confidence"], used["accuracy"], marker="o", ms=3, label=_label(row) + pooled)
    ax.set(xlabel="confidence (max class probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1),
           title="Reliability on the test set")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(paths, out):
    """Gather the runs under ``paths``; write table.md/.csv and the plots to ``out``; return the markdown."""
    runs, curves = gather(paths)
    table = results_table(runs, curves)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    each = per_run(runs, curves)
    text = markdown(table, apart(runs), unreadable(runs))
    if len(each):
        text += "\n\nEvery run:\n\n" + runs_markdown(each)
    warning = data_warning(runs)
    if warning:
        log.warning("%s", warning)
        text = warning + "\n\n" + text
    (out / "table.md").write_text(text + "\n")
    table.to_csv(out / "table.csv", index=False)
    each.to_csv(out / "runs.csv", index=False)
    plot_curves(table, curves, out / "curves.png")
    plot_reliability(table, out / "reliability.png")
    return text


class PrintTable(Callback):
    """Hydra callback: after a run or a multirun, write and print the table of its folder."""

    def on_run_end(self, config, **kwargs):
        self._report(config.hydra.runtime.output_dir)

    def on_multirun_end(self, config, **kwargs):
        self._report(config.hydra.sweep.dir)

    @staticmethod
    def _report(folder):
        try:
            text = report([folder], folder)
        except FileNotFoundError as err:          # the run failed before its first epoch ended
            log.warning("no results table: %s", err)
            return
        log.info("results (%s/table.md):\n%s", folder, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run or sweep folders to gather")
    parser.add_argument("--out", default="results", help="folder for table.md, table.csv and plots")
    args = parser.parse_args(argv)
    print(report(args.runs, args.out))


if __name__ == "__main__":
    main()
