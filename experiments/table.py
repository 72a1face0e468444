"""Gather runs into the results table, beside the published numbers, with curves and calibration.

    python -m experiments.table multirun/cifar10_3conv [MORE_RUN_DIRS...] [--out results]

Every folder given is searched for runs (folders with summary.json and
metrics.csv). Runs are grouped by model and method; each row gives the test
error after epoch 1 and after the last epoch (mean ± std over seeds), the
epochs E and batch size B, test NLL and expected calibration error (ECE), the
published figures and the difference. Writes ``table.md``, ``table.csv``,
``curves.png`` (test error per epoch) and ``reliability.png`` to ``--out``.
"""
import argparse
import json
import logging
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from hydra.experimental.callback import Callback

from tagi.metrics import reliability_bins

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

log = logging.getLogger(__name__)

# The published table (cutagi-doc 3-conv CIFAR-10; BP from Wan et al. 2013): error rates as fractions
PUBLISHED = {
    ("cifar10_3conv", "tagi"): {"error_e1": 0.5271, "error_final": 0.2966, "epochs": 50, "batch_size": 16},
    ("cifar10_3conv", "bp"): {"error_e1": np.nan, "error_final": 0.235, "epochs": 150, "batch_size": 128},
}


def find_runs(paths):
    """Run folders (holding summary.json and metrics.csv) under each path, sorted, without repeats."""
    runs = set()
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such folder")
        runs.update(p.parent for p in path.rglob("summary.json") if (p.parent / "metrics.csv").exists())
    return sorted(runs)


def gather(paths):
    """-> (runs, curves): one row per run (summary fields + folder), and every run's metrics rows."""
    summaries, curves = [], []
    for folder in find_runs(paths):
        summary = json.loads((folder / "summary.json").read_text())
        summary.pop("config", None)
        summaries.append({**summary, "run": str(folder)})
        metrics = pd.read_csv(folder / "metrics.csv")
        curves.append(metrics.assign(method=summary["method"], model=summary["model"],
                                     seed=summary["seed"], run=str(folder)))
    if not summaries:
        raise FileNotFoundError(f"no runs (summary.json + metrics.csv) under {', '.join(map(str, paths))}")
    return pd.DataFrame(summaries), pd.concat(curves, ignore_index=True)


def _mean_std(values):
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else float("nan")


def results_table(runs):
    """One row per (model, method): measured means and stds over seeds, published figures, difference."""
    rows = []
    for (model, method), group in runs.groupby(["model", "method"], sort=False):
        published = PUBLISHED.get((model, method), {})
        e1, e1_std = _mean_std(group["error_e1"])
        final, final_std = _mean_std(group["test_error"])
        rows.append({
            "model": model, "method": method, "seeds": len(group),
            "error_e1": e1, "error_e1_std": e1_std, "error_final": final, "error_final_std": final_std,
            "epochs": int(group["epochs"].min()), "batch_size": int(group["batch_size"].iloc[0]),
            "test_nll": group["test_nll"].mean(), "test_ece": group["test_ece"].mean(),
            "published_error_e1": published.get("error_e1", np.nan),
            "published_error_final": published.get("error_final", np.nan),
            "published_epochs": published.get("epochs", np.nan),
            "diff_final": final - published.get("error_final", np.nan),
        })
    order = {"tagi": 0, "bp": 1}                          # the published table's row order
    return pd.DataFrame(rows).sort_values("method", key=lambda m: m.map(order).fillna(len(order)),
                                          kind="stable", ignore_index=True)


def _percent(mean, std=np.nan):
    if np.isnan(mean):
        return "–"
    return f"{100 * mean:.2f} %" + ("" if np.isnan(std) else f" ± {100 * std:.2f}")


def markdown(table):
    """The table as markdown, in the published layout plus the uncertainty columns."""
    shown = pd.DataFrame({
        "Model": table["method"].str.upper(),
        "error e=1": [_percent(m, s) for m, s in zip(table["error_e1"], table["error_e1_std"])],
        "error e=E": [_percent(m, s) for m, s in zip(table["error_final"], table["error_final_std"])],
        "E": table["epochs"], "B": table["batch_size"], "seeds": table["seeds"],
        "test NLL": table["test_nll"].map("{:.3f}".format),
        "ECE": table["test_ece"].map("{:.3f}".format),
        "published e=1": table["published_error_e1"].map(_percent),
        "published e=E (E)": [f"{_percent(p)} ({'–' if np.isnan(e) else int(e)})"
                              for p, e in zip(table["published_error_final"], table["published_epochs"])],
        "Δ e=E": [("–" if np.isnan(d) else f"{100 * d:+.2f} pt") for d in table["diff_final"]],
    })
    return shown.to_markdown(index=False)


def plot_curves(curves, path):
    """Test error per epoch, mean over seeds with a min-max band, one line per method."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for (model, method), group in curves.groupby(["model", "method"], sort=False):
        stats = group.groupby("epoch")["test_error"].agg(["mean", "min", "max"])
        line, = ax.plot(stats.index, 100 * stats["mean"], marker="o", ms=3, label=f"{method.upper()} ({model})")
        ax.fill_between(stats.index, 100 * stats["min"], 100 * stats["max"], color=line.get_color(), alpha=0.2)
    ax.set(xlabel="epoch", ylabel="test error (%)", title="Test error per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reliability(runs, path, bins=15):
    """Reliability diagram per method from the runs' latest test probabilities (pooled over seeds)."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfect calibration")
    for (model, method), group in runs.groupby(["model", "method"], sort=False):
        probs, labels = [], []
        for folder in group["run"]:
            with np.load(Path(folder) / "test_probs.npz") as record:
                probs.append(record["probs"])
                labels.append(record["labels"])
        table = reliability_bins(np.concatenate(probs), np.concatenate(labels), bins)
        used = table[table["count"] > 0]
        ax.plot(used["confidence"], used["accuracy"], marker="o", ms=3, label=f"{method.upper()} ({model})")
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
    table = results_table(runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(table)
    (out / "table.md").write_text(text + "\n")
    table.to_csv(out / "table.csv", index=False)
    plot_curves(curves, out / "curves.png")
    plot_reliability(runs, out / "reliability.png")
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
