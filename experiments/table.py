"""Gather runs into the results table, beside the published numbers, with curves and calibration.

    python -m experiments.table RUN_DIRS... [--out outputs/table] [--page PAGE.md ...]

Every folder given is searched for runs (folders with summary.json; ``experiments.runs``). A row
pools only runs alike in every setting that defines the comparison (model and its layers, method
and its settings, batch size, planned epochs, data limits, dtype, debug or not); rows of one model
and method that differ show the differing settings. ``seeds`` counts distinct seeds; a seed run
twice is used once and reported. Each row gives the test error after epoch 1 and after the
published epoch count E when every run reached it, else after the epochs run, with "published E
not reached (ran N)", and the test NLL and ECE there, each as mean ± std over the seeds (sample
std, ddof=1; none for one seed); a difference Δ to the published figure is only ever between the
same epochs, and only for runs on the full data (``experiments.aggregate``). Diverged and
unfinished runs are listed apart, never averaged in, and so are runs whose summary.json or
metrics.csv cannot be read, each with the file and its fault. Below the table, every run gets a
line of its own: its errors, NLL, ECE, training time and wall time; for a run with a validation
split (``data.val_size``) also the test error at the epoch of its lowest validation error, the
only epoch choice the tables make (none on the test set). A warning says when the runs read
different data (the data source of their provenance).

Writes ``table.md``, ``table.csv``, ``runs.csv`` (the per-run lines), ``curves.png`` (test error
and test NLL per epoch) and ``reliability.png`` to ``--out``, and, where ``--out`` holds the
experiment's page (``README.md``), its marked blocks (``experiments.report``); ``--page`` names
more pages whose marked blocks get the same tables. Prints table.md.
"""
import argparse

from .report import report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="run or sweep folders to gather")
    parser.add_argument("--out", default="outputs/table",
                        help="folder for table.md, table.csv, runs.csv and the plots (default "
                             "outputs/table); its README.md, if any, gets its marked blocks filled")
    parser.add_argument("--page", action="append", default=[],
                        help="another page whose marked blocks get the tables (repeatable)")
    args = parser.parse_args(argv)
    print(report(args.runs, args.out, args.page))


if __name__ == "__main__":
    main()
