"""The command line: run every suite on every backend that loads here, write CSV, plot and tables.

    python -m benchmarks                       # everything, every backend found
    python -m benchmarks --quick --backends numpy,numba --epoch-limit 2000
    python -m benchmarks --skip-epoch --sweep "" --out outputs/bench/ops-only

Progress goes to stderr; the markdown summary goes to stdout (and summary.md).
"""
import argparse
import dataclasses
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tagi.backends import DTYPES, NAMES
from tagi.data import CIFAR10_ARCHIVE, CIFAR10_FOLDER

from . import gpu
from .epoch import epoch_rows
from .peers import cpu_counters, peers_markdown, run_peers, steal_line, write_peers
from .report import (COLUMNS, device_of, ops_markdown, peaks_markdown, plot_sweep, progress_line,
                     summary_markdown)
from .suites import (ARCHITECTURE, gemm_peak, inference_rows, load_backends, op_rows,
                     train_step_rows)
from .timing import FULL, QUICK

log = logging.getLogger("benchmarks")
GEMM_SIZE = {"cpu": 2048, "gpu": 8192}
SWEEP = {"full": [1, 16, 128, 1024], "quick": [1, 16, 64]}
QUICK_LIMIT = 256  # training and test images of a --quick epoch


def _names(text):
    names = [name for name in text.split(",") if name]
    unknown = sorted(set(names) - set(NAMES))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown backend(s) {unknown}: choose from {NAMES}")
    return names


def _modes(text):
    modes = [mode for mode in text.split(",") if mode]
    if not set(modes) <= set(gpu.MODES):
        raise argparse.ArgumentTypeError(f"unknown gpu mode(s) in {text!r}: choose from {gpu.MODES}")
    return modes


def _batches(text):
    return sorted({int(b) for b in text.split(",") if b})


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=(
        "Time the TAGI backends on the 3-conv CIFAR-10 network: per op, training step, "
        "inference, batch-size sweep and the main job's epoch."))
    p.add_argument("--backends", type=_names, default=list(NAMES),
                   help=f"comma-separated (default {','.join(NAMES)}); those that cannot load "
                        "here are skipped with the reason")
    p.add_argument("--quick", action="store_true",
                   help=f"short timings, sweep {','.join(map(str, SWEEP['quick']))}, epoch of "
                        f"{QUICK_LIMIT} training + {QUICK_LIMIT} test images")
    p.add_argument("--out", type=Path, default=None,
                   help="output folder (default outputs/benchmarks/DATE-TIME)")
    p.add_argument("--dtype", choices=DTYPES, default="float32")
    p.add_argument("--batch", type=int, default=16,
                   help="batch of the per-op suite and the headline training step (default 16)")
    p.add_argument("--infer-batch", type=int, default=256,
                   help="batch of the headline inference (default 256)")
    p.add_argument("--sweep", type=_batches, default=None,
                   help=f"batch sizes of the train-step and inference sweep (default "
                        f"{','.join(map(str, SWEEP['full']))}; '' for the headline batches only)")
    p.add_argument("--skip-ops", action="store_true", help="skip the per-op suite")
    p.add_argument("--skip-epoch", action="store_true", help="skip the main-job epoch")
    p.add_argument("--gpu-modes", type=_modes, default=list(gpu.MODES),
                   help="modes of the gpu suite on the cupy backend: eager, graph (CUDA-graph "
                        "replays) or both (default eager,graph; '' skips the suite)")
    p.add_argument("--epoch-limit", type=int, default=None,
                   help=f"training images of the epoch (default all; --quick: {QUICK_LIMIT})")
    p.add_argument("--test-limit", type=int, default=None,
                   help=f"test images of the epoch's evaluation (default all; "
                        f"--quick: {QUICK_LIMIT})")
    p.add_argument("--data-root", type=Path, default=Path("data"),
                   help="folder holding cifar-10-batches-py/ or the official archive (default data)")
    p.add_argument("--repeats", type=int, default=None,
                   help="exactly this many timed calls per measurement (default: time budget)")
    p.add_argument("--warmup", type=int, default=None,
                   help="untimed calls before timing (default 2; --quick: 1)")
    p.add_argument("--gemm-size", type=int, default=None,
                   help=f"side of the peak matmul (default {GEMM_SIZE['cpu']} CPU, "
                        f"{GEMM_SIZE['gpu']} GPU)")
    p.add_argument("--seed", type=int, default=0, help="network initialisation and inputs")
    p.add_argument("--peers", action="store_true",
                   help="also time pytagi (TAGI step, inference) and PyTorch (BP step) against "
                        "ours, alternating, each side in its own process (benchmarks/peers.py); "
                        "a peer not installed is skipped by name")
    p.add_argument("--peer-rounds", type=int, default=None,
                   help="alternating rounds of each peer comparison (default 3; --quick: 2)")
    p.add_argument("--peer-threads", type=int, default=2,
                   help="threads of each side of a peer comparison (default 2)")
    args = p.parse_args(argv)
    if args.sweep is None:
        args.sweep = SWEEP["quick" if args.quick else "full"]
    if args.quick:
        args.epoch_limit = args.epoch_limit or QUICK_LIMIT
        args.test_limit = args.test_limit or QUICK_LIMIT
    if args.peer_rounds is None:
        args.peer_rounds = 2 if args.quick else 3
    if args.peer_rounds < 1 or args.peer_threads < 1:
        p.error("--peer-rounds and --peer-threads must be >= 1")
    if args.out is None:
        args.out = Path("outputs", "benchmarks", time.strftime("%Y%m%d-%H%M%S"))
    return args


def timing_plan(args):
    """The quick or full plan, with --repeats / --warmup applied."""
    plan = QUICK if args.quick else FULL
    if args.repeats is not None:
        plan = dataclasses.replace(plan, min_repeats=args.repeats, max_repeats=args.repeats)
    if args.warmup is not None:
        plan = dataclasses.replace(plan, warmup=args.warmup)
    return plan


def has_cifar10(root):
    return (root / CIFAR10_FOLDER).is_dir() or (root / CIFAR10_ARCHIVE).is_file()


def suites_of(args, backend, plan, peak):
    """[(suite name, zero-argument call returning rows)] selected by the flags, for one backend."""
    dtype, seed = args.dtype, args.seed
    suites = []
    if not args.skip_ops:
        suites.append(("ops", lambda: op_rows(backend, args.batch, dtype, plan, peak, seed)))
    suites.append(("train_step", lambda: train_step_rows(
        backend, sorted({args.batch, *args.sweep}), dtype, plan, peak, seed)))
    suites.append(("inference", lambda: inference_rows(
        backend, sorted({args.infer_batch, *args.sweep}), dtype, plan, peak, seed)))
    if device_of(backend) == "gpu" and args.gpu_modes:
        suites.append(("gpu", lambda: gpu.gpu_rows(backend, dtype, plan, peak, args.gpu_modes,
                                                   args.out, args.batch, seed)))
    if not args.skip_epoch and has_cifar10(args.data_root):
        suites.append(("epoch", lambda: epoch_rows(
            backend, dtype, args.data_root, args.out / f"epoch-{backend.NAME}",
            args.epoch_limit, args.test_limit, peak)))
    return suites


def header(args, skipped):
    """The summary's opening lines: what ran, on what."""
    lines = [f"## TAGI benchmarks: {ARCHITECTURE}, {args.dtype}{' (quick)' if args.quick else ''}",
             "",
             f"{platform.node()}: {os.cpu_count()} CPUs ({platform.machine()}), "
             f"python {platform.python_version()}, numpy {np.__version__}"]
    lines += [f"- skipped backend {name}: {why}" for name, why in skipped.items()]
    if args.skip_epoch:
        lines.append("- epoch skipped (--skip-epoch)")
    elif not has_cifar10(args.data_root):
        lines.append(f"- epoch skipped: no CIFAR-10 in {args.data_root} (--data-root)")
    elif args.epoch_limit or args.test_limit:
        lines.append(f"- epoch limited to {args.epoch_limit or 'all'} training and "
                     f"{args.test_limit or 'all'} test images")
    return "\n".join(lines)


def main(argv=None):
    """Run the selected suites; return 0, or 1 if a suite failed or no backend loaded."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    plan = timing_plan(args)
    backends, skipped = load_backends(args.backends)
    for name, why in skipped.items():
        log.warning("skipping backend %s: %s", name, why)
    if not backends:
        log.error("no backend could be loaded")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    rows, failed, peaks = [], [], {}
    counters = cpu_counters()
    for name, backend in backends.items():
        device = device_of(backend)
        if device not in peaks:
            row = gemm_peak(backend, args.dtype, plan, args.gemm_size or GEMM_SIZE[device])
            peaks[device] = row["gflops"]
            rows.append(row)
            log.info(progress_line(row))
        for suite, call in suites_of(args, backend, plan, peaks[device]):
            try:
                new = call()
            except Exception as err:  # a broken backend must not hide the others' numbers
                log.exception("%s %s failed: %s", name, suite, err)
                failed.append(f"{name} {suite}")
                continue
            for row in new:
                log.info(progress_line(row))
            rows.extend(new)
    steal = steal_line(counters, cpu_counters())
    peer_section = None
    if args.peers:
        summaries, segments, peer_skipped = run_peers(
            args.peer_rounds, args.peer_threads, 2.0 if args.quick else 5.0)
        write_peers(args.out, summaries, segments)
        peer_section = peers_markdown(summaries, peer_skipped)
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({"batch": "Int64", "images": "Int64"})
    frame.to_csv(args.out / "results.csv", index=False)
    plot_sweep(frame, args.out / "sweep.png")
    sections = [header(args, skipped) + "\n" + steal, peaks_markdown(frame),
                summary_markdown(frame, args.batch, args.infer_batch)]
    if peer_section is not None:
        sections += ["### Against the peers (each side in its own process, alternating)",
                     peer_section]
    if not args.skip_ops:
        sections += [f"### Per op, batch {args.batch} (median ms, share of the GEMM peak)",
                     ops_markdown(frame)]
    text = "\n\n".join(sections)
    if failed:
        text += "\n\nFAILED: " + ", ".join(failed)
    (args.out / "summary.md").write_text(text + "\n")
    print(text)
    log.info("wrote %s, %s and %s", args.out / "results.csv", args.out / "sweep.png",
             args.out / "summary.md")
    return 1 if failed else 0
