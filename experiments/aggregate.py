"""Runs -> tables: the results table beside the published figures, a line per run, the runs
left apart, and the data-source warning.

The input is ``runs.gather``'s pair (a row per run, the metrics rows of every run). A row of
``results_table`` pools only runs alike in every setting of ``runs.KEY``; ``seeds`` counts
distinct seeds (a seed run twice is used once, and the note says so). Each row gives the test
error after epoch 1 and after the published epoch count E when every run reached it, else after
the epochs run ("published E not reached (ran N)"), and the test NLL and ECE there, each as the
mean over the seeds and the sample standard deviation (ddof=1; NaN for one seed). A difference
Δ to the published figure is only ever taken between the same epochs, and only for runs on the
full data. Error rates are fractions here; ``experiments.report`` formats them.
"""
import json
from pathlib import Path

import numpy as np
import pandas as pd

from .runs import wall_seconds

# The published table (cutagi-doc 3-conv CIFAR-10; BP from Wan et al. 2013): error rates as fractions
PUBLISHED = {
    ("cifar10_3conv", "tagi"): {"error_e1": 0.5271, "error_final": 0.2966, "epochs": 50, "batch_size": 16},
    ("cifar10_3conv", "bp"): {"error_e1": np.nan, "error_final": 0.235, "epochs": 150, "batch_size": 128},
}
# settings the table shows in columns of their own where the runs record them (runs written
# before they were recorded have none), not among a row's differing settings
SHOWN = {"preprocess": "preprocessing", "init": "initialisation"}


def in_method_order(table):
    """Rows sorted stably by method in the published table's order (TAGI, BP, then the rest)."""
    order = {"tagi": 0, "bp": 1}
    return table.sort_values("method", key=lambda m: m.map(order).fillna(len(order)), kind="stable",
                             ignore_index=True)


def val_best(curve):
    """The metrics row of a run's ``curve`` at its lowest validation error (the first such
    epoch), None for a run without a validation split: the test set never chooses an epoch."""
    if "val_error" not in curve or not curve["val_error"].notna().any():
        return None
    return curve.loc[curve["val_error"].idxmin()]


def per_run(runs, curves):
    """One row per readable run, every status: method, seed, status, epochs done of those
    planned, test error after epoch 1, at the last epoch and at the validation-best epoch
    (``val_best``), the last epoch's test NLL and ECE, training seconds (metrics.csv, evaluation
    left out), wall seconds (``runs.wall_seconds`` of its train.log) and data source
    -> DataFrame, in the table's method order."""
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
    return in_method_order(table.sort_values(["model", "seed"], kind="stable")) if len(table) else table


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


def differing(keys):
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
    """One row per comparison key over the finished runs -> DataFrame (see the module docstring):
    errors, NLL and ECE with their std, E, B, seeds, the published figures and Δ, a note, the
    key as JSON and the run folders as a JSON list; sorted by model, then TAGI, BP, the rest."""
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
    table.insert(2, "settings", differing(keys))
    return in_method_order(table).sort_values("model", kind="stable", ignore_index=True)


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
