"""The results table (one row per measurement), its markdown summaries and the batch-size plot."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)
import pandas as pd  # noqa: E402

COLUMNS = ["suite", "backend", "device", "layer", "op", "batch", "dtype", "images", "repeats",
           "median_s", "best_s", "images_per_s", "flops", "gflops", "share_of_peak",
           "max_rss_mib"]


def record(suite, backend, layer, op, batch, dtype, images, timing, flops, peak_gflops,
           max_rss_mib=math.nan):
    """One results row: ``timing`` of a call that handles ``images`` images and does ``flops`` FLOPs.

    ``peak_gflops`` is the measured GEMM peak of the backend's device; a row's
    ``share_of_peak`` is its GFLOP/s over that peak. ``batch`` and ``images`` may
    be None (the peak's own row).
    """
    gflops = flops / timing.median / 1e9
    rate = math.nan if images is None else images / timing.median
    return {"suite": suite, "backend": backend.NAME, "device": device_of(backend),
            "layer": layer, "op": op, "batch": batch, "dtype": str(dtype), "images": images,
            "repeats": timing.repeats, "median_s": timing.median, "best_s": timing.best,
            "images_per_s": rate, "flops": flops, "gflops": gflops,
            "share_of_peak": gflops / peak_gflops, "max_rss_mib": max_rss_mib}


def device_of(backend):
    """"gpu" for a backend whose arrays are cupy's, else "cpu"."""
    return "gpu" if backend.xp.__name__ == "cupy" else "cpu"


def progress_line(row):
    """One finished measurement, as a log line."""
    batch = "" if pd.isna(row["batch"]) else f"B={row['batch']}"
    return (f"{row['backend']:6} {row['suite']:10} {row['layer']:7} {row['op']:28} {batch:7} "
            f"{1e3 * row['median_s']:10.3f} ms {row['images_per_s']:9,.0f} img/s "
            f"{row['gflops']:8.2f} GFLOP/s {row['share_of_peak']:6.1%} of peak")


def _pick(frame, suite, backend, batch=None):
    """The one row of ``suite`` for ``backend`` (at ``batch``), or None."""
    rows = frame[(frame.suite == suite) & (frame.backend == backend)]
    if batch is not None:
        rows = rows[rows.batch == batch]
    return rows.iloc[0] if len(rows) else None


def _fmt(value, spec):
    return "–" if value is None or pd.isna(value) else format(value, spec)


def _markdown(table, text_columns=1):
    """A DataFrame of preformatted strings as a markdown table: text columns left, numbers right."""
    align = ["left"] * text_columns + ["right"] * (table.shape[1] - text_columns)
    return table.to_markdown(index=False, disable_numparse=True, colalign=align)


def summary_markdown(frame, train_batch, infer_batch):
    """Headline rates side by side, one column per backend: images/s, ratio to numpy, share of
    peak for the training step, inference and epoch; the main job's wall time and max RSS."""
    headlines = [(f"train step B={train_batch}", "train_step", train_batch),
                 (f"inference B={infer_batch}", "inference", infer_batch),
                 ("epoch training", "epoch", None)]
    backends = list(frame.backend[frame.suite != "peak"].unique())
    table = {"measurement": []}
    table.update({backend: [] for backend in backends})

    def add(label, values):
        table["measurement"].append(label)
        for backend, value in zip(backends, values):
            table[backend].append(value)

    for label, suite, batch in headlines:
        rows = [_pick(frame, suite, backend, batch) for backend in backends]
        rates = [None if row is None else row.images_per_s for row in rows]
        base = _pick(frame, suite, "numpy", batch)
        add(f"{label}: images/s", [_fmt(rate, ",.1f") for rate in rates])
        add(f"{label}: × numpy", [_fmt(None if rate is None or base is None
                                       else rate / base.images_per_s, ".2f") for rate in rates])
        add(f"{label}: % of GEMM peak",
            [_fmt(None if row is None else 100 * row.share_of_peak, ".1f") for row in rows])
    jobs = [_pick(frame, "epoch_job", backend) for backend in backends]
    add("main job: wall s", [_fmt(None if job is None else job.median_s, ",.1f") for job in jobs])
    add("main job: max RSS MiB", [_fmt(None if job is None else job.max_rss_mib, ",.0f")
                                  for job in jobs])
    return _markdown(pd.DataFrame(table))


def peaks_markdown(frame):
    """One line per device: the measured GEMM peak every share_of_peak is relative to."""
    peaks = frame[frame.suite == "peak"]
    return "\n".join(f"- {row.device} GEMM peak: {row.gflops:,.1f} GFLOP/s ({row.op}, {row.dtype}, "
                     f"{row.backend} backend); every share of peak below is relative to it"
                     for row in peaks.itertuples())


def ops_markdown(frame):
    """Per layer and op: MFLOP per call, and each backend's median ms, share of peak and share
    of that backend's training step at the same batch (the ops' sum is the last row)."""
    ops = frame[frame.suite == "op"]
    if ops.empty:
        return ""
    batch = ops.batch.iloc[0]
    table = ops.pivot_table(index=["layer", "op"], columns="backend", sort=False,
                            values=["median_s", "share_of_peak"], aggfunc="first")
    out = ops.drop_duplicates(["layer", "op"]).set_index(["layer", "op"])[["batch", "flops"]]
    out = out.assign(batch=out.batch.astype(str), MFLOP=(out.flops / 1e6).map("{:,.2f}".format))
    out = out.drop(columns="flops")
    sums = {"batch": str(batch), "MFLOP": f"{ops.drop_duplicates(['layer', 'op']).flops.sum() / 1e6:,.2f}"}
    for backend in ops.backend.unique():
        step = _pick(frame, "train_step", backend, batch)
        step_s = math.nan if step is None else step.median_s
        seconds = table["median_s", backend]
        out[f"{backend} ms"] = (1e3 * seconds).map("{:,.3f}".format)
        out[f"{backend} % peak"] = (100 * table["share_of_peak", backend]).map("{:.1f}".format)
        out[f"{backend} % step"] = (100 * seconds / step_s).map("{:.1f}".format)
        sums[f"{backend} ms"] = f"{1e3 * seconds.sum():,.3f}"
        sums[f"{backend} % peak"] = ""
        sums[f"{backend} % step"] = f"{100 * seconds.sum() / step_s:.1f}"
    out = out.reset_index()
    out.loc[len(out)] = {"layer": "all", "op": "sum of the ops", **sums}
    return _markdown(out, text_columns=2)


def plot_sweep(frame, path):
    """Images/s against batch size, log-log: a colour per backend, solid training, dashed inference."""
    sweep = frame[frame.suite.isin(["train_step", "inference"])]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for color, backend in enumerate(sweep.backend.unique()):
        for suite, style in (("train_step", "-"), ("inference", "--")):
            rows = sweep[(sweep.backend == backend) & (sweep.suite == suite)].sort_values("batch")
            ax.plot(rows.batch, rows.images_per_s, style, marker="o", color=f"C{color}",
                    label=f"{backend} {suite.replace('_', ' ')}")
    batches = sorted(sweep.batch.unique())
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="images / s",
           title="TAGI 3-conv CIFAR-10: throughput by batch size")
    ax.set_xticks(batches, [str(b) for b in batches])
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
