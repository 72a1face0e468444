"""The report of a folder of runs: markdown and CSV tables, plots, and the experiment's page.

``report(paths, out)`` gathers the runs (``experiments.runs``), builds the tables
(``experiments.aggregate``) and writes to ``out``, each file atomically (``experiments.io``):

- ``table.md``: the results table in the published layout (plus uncertainty, settings and
  notes), the runs left apart, then "Every run:" and a line per run;
- ``table.csv`` (the table's numbers, fractions) and ``runs.csv`` (the per-run lines);
- ``curves.png`` (test error and test NLL per epoch) and ``reliability.png``;
- the marked blocks of ``out/README.md``, the experiment's page, where it exists, and of any
  other page named (the project's README shows the headline experiment's table): the text
  between ``<!-- table:begin -->`` and ``<!-- table:end -->`` becomes the results table (as in
  table.md, without the per-run lines), the text between ``<!-- runs:begin -->`` and
  ``<!-- runs:end -->`` the per-run lines; everything outside the markers is left as written.
"""
import json
import logging
import re
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd

from tagi.metrics import pooled_reliability

from .aggregate import SHOWN, apart, data_warning, per_run, results_table, unreadable
from .io import atomic_write, write_csv
from .runs import UNRECORDED, gather, run_reliability

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

log = logging.getLogger(__name__)

PAGE = "README.md"                                 # the experiment's page, in the --out folder
_MARKER = re.compile(r"<!-- (\w+):(begin|end) -->")


def percent(mean, std=np.nan):
    """A fraction (and its std) as "12.34 ± 0.56 %"; "–" for NaN."""
    if np.isnan(mean):
        return "–"
    return f"{100 * mean:.2f}" + ("" if np.isnan(std) else f" ± {100 * std:.2f}") + " %"


def decimal(value):
    """Three decimals; "–" for NaN."""
    return "–" if pd.isna(value) else f"{value:.3f}"


def decimal_std(mean, std):
    """Three decimals with the std where there is one: "0.987 ± 0.005"."""
    return decimal(mean) + ("" if np.isnan(mean) or np.isnan(std) else f" ± {std:.3f}")


def points(diff):
    """A difference of fractions in percentage points, signed: "-3.12 pt"; "–" for NaN."""
    return "–" if np.isnan(diff) else f"{100 * diff:+.2f} pt"


def duration(seconds):
    """Seconds as "7,693 s (2 h 08 min)"; "–" for NaN."""
    if pd.isna(seconds):
        return "–"
    minutes = int(round(seconds / 60))
    return f"{seconds:,.0f} s ({minutes // 60} h {minutes % 60:02d} min)"


def runs_markdown(table):
    """The per-run lines (``aggregate.per_run``) as markdown (a "data" column where some run
    records its data source)."""
    lines = pd.DataFrame({
        "network": table["model"], "Model": table["method"].str.upper(), "seed": table["seed"],
        "epochs": [f"{e} of {p}" + ("" if s == "finished" else f" ({s})")
                   for e, p, s in zip(table["epochs"], table["planned_epochs"], table["status"])],
        "error e=1": table["error_e1"].map(percent),
        "error, last epoch": table["error_last"].map(percent),
        "error at val-best epoch (epoch)": ["–" if np.isnan(b) else f"{percent(e)} ({int(b)})"
                                            for e, b in zip(table["error_at_val_best"],
                                                            table["val_best_epoch"])],
        "test NLL": table["test_nll"].map(decimal),
        "ECE": table["test_ece"].map(decimal),
        "training time": table["train_seconds"].map(duration),
        "wall time": table["wall_seconds"].map(duration),
        "data": table["data_source"],
    })
    if (table["data_source"] == UNRECORDED).all():
        lines = lines.drop(columns="data")
    return lines.to_markdown(index=False, disable_numparse=True)


def markdown(table, left_apart=None, left_unread=None):
    """The results table (``aggregate.results_table``) as markdown, in the published layout plus
    uncertainty, settings and notes (a "network" column where the rows hold more than one, the
    published columns only where a row has a published figure); then the runs left apart
    (diverged, unfinished), if any, and the runs whose files cannot be read, if any."""
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
        "error e=1": [percent(m, s) for m, s in zip(table["error_e1"], table["error_e1_std"])],
        "Δ e=1": table["diff_e1"].map(points),
        "error e=E": [percent(m, s) for m, s in zip(table["error_at_e"], table["error_at_e_std"])],
        "E": table["epochs"], "B": table["batch_size"], "seeds": table["seeds"],
        **{title: table[name].fillna("–") for name, title in SHOWN.items()},
        "test NLL": [decimal_std(m, s) for m, s in zip(table["test_nll"], table["test_nll_std"])],
        "ECE": [decimal_std(m, s) for m, s in zip(table["test_ece"], table["test_ece_std"])],
        "published e=1": table["published_error_e1"].map(percent),
        "published e=E (E)": [f"{percent(p)} ({'–' if np.isnan(e) else int(e)})"
                              for p, e in zip(table["published_error_final"], table["published_epochs"])],
        "Δ e=E": table["diff_e"].map(points), "note": table["note"],
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


def save_figure(fig, path):
    """Write ``fig`` as a PNG to ``path`` atomically, then close it."""
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


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
    save_figure(fig, path)


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
    save_figure(fig, path)


def fill_page(text, blocks, name=PAGE):
    """The page ``text`` with the content of every marked block replaced by ``blocks[block]``
    (a blank line either side), the rest unchanged -> (new text, number of blocks filled).

    ValueError, naming ``name``, for a block ``blocks`` does not hold, an end marker without its
    begin, a begin inside another block or a block left open."""
    pieces, position, inside = [], 0, None
    for marker in _MARKER.finditer(text):
        block, side = marker.groups()
        if side == "begin":
            if inside is not None:
                raise ValueError(f"{name}: <!-- {block}:begin --> inside the {inside} block")
            if block not in blocks:
                raise ValueError(f"{name}: no block {block!r} to write; the blocks are {', '.join(blocks)}")
            pieces += [text[position:marker.end()], f"\n\n{blocks[block]}\n\n"]
            inside = block
        else:
            if inside != block:
                raise ValueError(f"{name}: <!-- {block}:end --> without its <!-- {block}:begin -->")
            position, inside = marker.start(), None
    if inside is not None:
        raise ValueError(f"{name}: <!-- {inside}:begin --> without its <!-- {inside}:end -->")
    pieces.append(text[position:])
    filled = sum(1 for marker in _MARKER.finditer(text) if marker[2] == "begin")
    return "".join(pieces), filled


def write_page(path, blocks):
    """Fill the marked blocks of the page at ``path`` (``fill_page``), atomically; a page without
    markers is left as it is, and the log says so."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    filled_text, filled = fill_page(text, blocks, str(path))
    if not filled:
        log.info("%s has no <!-- table:begin --> markers: left as it is", path)
        return
    if filled_text != text:
        atomic_write(path, lambda f: f.write(filled_text.encode("utf-8")))
    log.info("%s: %d marked block%s written", path, filled, "" if filled == 1 else "s")


def report(paths, out, pages=()):
    """Gather the runs under ``paths``; write table.md, table.csv, runs.csv, the plots and the
    page's marked blocks (see the module docstring) to ``out``, and the marked blocks of each
    page in ``pages`` (FileNotFoundError, before anything is written, for one that does not
    exist); return table.md's text."""
    missing = [str(page) for page in pages if not Path(page).is_file()]
    if missing:
        raise FileNotFoundError(f"no page {', '.join(missing)}")
    runs, curves = gather(paths)
    table = results_table(runs, curves)
    each = per_run(runs, curves)
    blocks = {"table": markdown(table, apart(runs), unreadable(runs)),
              "runs": runs_markdown(each) if len(each) else "(no readable runs)"}
    warning = data_warning(runs)
    if warning:
        log.warning("%s", warning)
        blocks["table"] = warning + "\n\n" + blocks["table"]
    text = blocks["table"] + (f"\n\nEvery run:\n\n{blocks['runs']}" if len(each) else "")
    out = Path(out)
    atomic_write(out / "table.md", lambda f: f.write((text + "\n").encode("utf-8")))
    write_csv(table, out / "table.csv")
    write_csv(each, out / "runs.csv")
    plot_curves(table, curves, out / "curves.png")
    plot_reliability(table, out / "reliability.png")
    for page in ([out / PAGE] if (out / PAGE).exists() else []) + [Path(page) for page in pages]:
        write_page(page, blocks)
    return text
