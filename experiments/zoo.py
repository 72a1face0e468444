"""The zoo page: every source network under TAGI and BP beside the accuracy its source states.

    python -m experiments.zoo multirun/seed_zoo [MORE_RUN_DIRS...] --out experiments/results/seed_zoo

The runs are gathered and pooled as ``experiments.table`` does (``runs.gather``,
``aggregate.results_table``: one row per network, width and method over the finished runs).
Each row gives the network (with its width for the width sweep), the method, the
preprocessing and initialisation the runs recorded, the epochs E and batch size B,
the test error, NLL and ECE after epoch E, the accuracy the source states for the
network (``zoo_sources.yaml``: every source trains by BP; the TAGI row shows the same
figure) and the gap, accuracy - stated accuracy, in points: only for runs on the full data
that ran the source's epochs (else the note says why not). Writes ``zoo.md``,
``zoo.csv``, ``accuracy_vs_width.png`` (test accuracy against the width of the
PyTorch tutorial's first conv layer, both methods, the source's figures marked) and
``seconds_vs_width.png`` (training seconds per epoch against width, both methods) to
``--out``; under experiment=seed_zoo and seed_zoo_widths the ``experiments.callbacks.ZooPage``
callback writes them into the sweep folder after each multirun.
"""
import argparse
import json
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from .aggregate import in_method_order, results_table
from .report import decimal, percent, points, save_figure
from .runs import gather

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

SOURCES = Path(__file__).with_name("zoo_sources.yaml")
WIDTH_MODEL = "pytorch_tutorial_width"


def source_figures(path=SOURCES):
    """The stated accuracies -> DataFrame (model, width, stated_accuracy as a fraction, epochs,
    source, lines), in the file's order; a row without a width has width NaN."""
    entries = OmegaConf.to_container(OmegaConf.load(path))
    figures = pd.DataFrame([{"model": e["model"], "width": e.get("width", np.nan),
                             "stated_accuracy": np.nan if e["accuracy"] is None else e["accuracy"] / 100,
                             "epochs": e["epochs"], "source": e["source"], "lines": str(e["lines"])}
                            for e in entries])
    figures["width"] = figures["width"].astype(float)
    return figures


def _width(key_text):
    width = json.loads(key_text).get("width")
    return np.nan if width is None else float(width)


def _network(model, width):
    """(model, width or None): a row's network, matched between the runs and the stated figures."""
    return model, None if np.isnan(width) else int(width)


def zoo_table(runs, curves, figures):
    """One row per network, width and method (``results_table``'s rows) with the stated accuracy
    and the gap -> DataFrame in ``figures``' network order, TAGI before BP; networks not in
    ``figures`` follow, with no stated accuracy."""
    table = results_table(runs, curves)
    if not len(table):
        return pd.DataFrame(columns=["network", "model", "width", "method"])
    table = table.assign(width=table["key"].map(_width))
    for column in ("preprocess", "init"):
        if column not in table:
            table[column] = None
    sources = {_network(m, w): (i, a, e) for i, (m, w, a, e) in enumerate(
        zip(figures["model"], figures["width"], figures["stated_accuracy"], figures["epochs"]))}
    order, stated, gap, notes = [], [], [], []
    for _, row in table.iterrows():
        place, value, epochs = sources.get(_network(row["model"], row["width"]), (len(sources), np.nan, None))
        key = json.loads(row["key"])
        full_data = key["train_limit"] is None and key["test_limit"] is None and not key["debug_run"]
        note = [row["note"]] if row["note"] else []
        if not np.isnan(value) and not full_data:
            note.append("limited data: no gap")
        elif not np.isnan(value) and row["epochs"] != epochs:
            note.append(f"the source's {epochs} epochs not run (ran {row['epochs']}): no gap")
        comparable = full_data and row["epochs"] == epochs
        order.append(place)
        stated.append(value)
        gap.append(1 - row["error_at_e"] - value if comparable else np.nan)
        notes.append("; ".join(note))
    zoo = pd.DataFrame({
        "network": [m if np.isnan(w) else f"{m} (n={int(w)})" for m, w in zip(table["model"], table["width"])],
        "model": table["model"], "width": table["width"], "method": table["method"],
        "preprocess": table["preprocess"], "init": table["init"],
        "epochs": table["epochs"], "batch_size": table["batch_size"], "seeds": table["seeds"],
        "test_error": table["error_at_e"], "test_nll": table["test_nll"], "test_ece": table["test_ece"],
        "accuracy": 1 - table["error_at_e"], "stated_accuracy": stated, "gap": gap, "note": notes,
        "order": order, "run_folders": table["run_folders"]})
    zoo = in_method_order(zoo).sort_values(["order", "model", "width"], kind="stable", ignore_index=True)
    return zoo.drop(columns="order")


def zoo_markdown(zoo):
    """The zoo table as markdown."""
    if not len(zoo):
        return "(no finished runs)"
    return pd.DataFrame({
        "network": zoo["network"], "method": zoo["method"].str.upper(),
        "preprocessing": zoo["preprocess"].fillna("–"), "initialisation": zoo["init"].fillna("–"),
        "E": zoo["epochs"], "B": zoo["batch_size"],
        "error": zoo["test_error"].map(percent), "NLL": zoo["test_nll"].map(decimal),
        "ECE": zoo["test_ece"].map(decimal), "accuracy": zoo["accuracy"].map(percent),
        "source's accuracy (BP)": zoo["stated_accuracy"].map(percent), "gap": zoo["gap"].map(points),
        "note": zoo["note"],
    }).to_markdown(index=False, disable_numparse=True)


def _methods(frame):
    return [m for m in ("tagi", "bp") if m in set(frame["method"])] + sorted(set(frame["method"]) - {"tagi", "bp"})


def plot_accuracy_vs_width(zoo, figures, path):
    """Test accuracy (%) against the first conv layer's width, a line per method, and the
    source's stated accuracies as black crosses."""
    fig, ax = plt.subplots(figsize=(6, 4))
    widths = zoo[zoo["model"] == WIDTH_MODEL]
    for method in _methods(widths):
        rows = widths[widths["method"] == method].sort_values("width")
        ax.plot(rows["width"], 100 * rows["accuracy"], marker="o", label=f"{method.upper()} (this code)")
    stated = figures[(figures["model"] == WIDTH_MODEL) & figures["stated_accuracy"].notna()]
    ax.plot(stated["width"], 100 * stated["stated_accuracy"], "kx", ms=8, ls="none",
            label="source (BP, PyTorch)")
    ax.set(xlabel="width n (channels of the first conv layer)", ylabel="test accuracy (%)",
           title="PyTorch tutorial width sweep: test accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def plot_seconds_vs_width(runs, path):
    """Training seconds per epoch (summary.json's train_seconds over its epochs; evaluation left
    out) against width, a line per method, the mean over the runs of each width."""
    fig, ax = plt.subplots(figsize=(6, 4))
    widths = runs[(runs["model"] == WIDTH_MODEL) & (runs["status"] == "finished")]
    if "width" in widths and len(widths):
        widths = widths.assign(per_epoch=widths["train_seconds"] / widths["epochs"])
        for method in _methods(widths):
            rows = widths[widths["method"] == method].groupby("width")["per_epoch"].mean()
            ax.plot(rows.index, rows.to_numpy(), marker="o", label=method.upper())
        ax.legend()
    ax.set(xlabel="width n (channels of the first conv layer)", ylabel="training seconds per epoch",
           title="PyTorch tutorial width sweep: cost per epoch")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path)


def report_zoo(paths, out, sources=SOURCES):
    """Gather the runs under ``paths``; write zoo.md, zoo.csv and the two width plots to ``out``;
    return the markdown."""
    runs, curves = gather(paths)
    figures = source_figures(sources)
    zoo = zoo_table(runs, curves, figures)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = zoo_markdown(zoo)
    (out / "zoo.md").write_text(text + "\n")
    zoo.to_csv(out / "zoo.csv", index=False)
    plot_accuracy_vs_width(zoo, figures, out / "accuracy_vs_width.png")
    plot_seconds_vs_width(runs, out / "seconds_vs_width.png")
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run or sweep folders to gather")
    parser.add_argument("--out", default="outputs/zoo",
                        help="folder for zoo.md, zoo.csv and the plots (default outputs/zoo)")
    args = parser.parse_args(argv)
    print(report_zoo(args.runs, args.out))


if __name__ == "__main__":
    main()
