"""The benchmark suite's pieces on tiny sizes: FLOP counts, timing plan, CLI outputs, epoch job.

No speed is asserted: only that the suite measures what it says and writes what it promises.
"""
import math

import numpy as np
import pandas as pd
import pytest

from benchmarks import flops, suites
from benchmarks.epoch import epoch_rows
from benchmarks.report import COLUMNS
from benchmarks.run import main, parse_args
from benchmarks.timing import Plan, measure
from tagi.backends import get_backend


@pytest.fixture(scope="module")
def net():
    return suites.network(get_backend("numpy"), "float32")[0]


def test_plain_forward_multiply_adds_match_design_doc(net):
    specs = {spec.name: spec for spec in flops.layer_ops(net)}
    assert flops.conv2d_macs(*specs["conv1"].shape_args) == 32 * 32 * 32 * 3 * 5 * 5  # 2.46 M
    assert flops.conv2d_macs(*specs["conv2"].shape_args) == 32 * 16 * 16 * 32 * 5 * 5  # 6.55 M
    assert flops.conv2d_macs(*specs["conv3"].shape_args) == 64 * 8 * 8 * 32 * 5 * 5    # 3.28 M
    assert flops.linear_macs(*specs["fc1"].shape_args) == 1024 * 64                    # 0.07 M
    # docs/design.md §4 writes 12.36 M: the sum of the rounded per-layer figures above
    assert flops.plain_forward_macs(net) == 12_354_240
    assert round(flops.plain_forward_macs(net) / 1e6, 2) == pytest.approx(12.36, abs=0.01)


def test_tagi_counts_follow_the_products_of_each_op(net):
    specs = {spec.name: spec for spec in flops.layer_ops(net)}
    conv1, conv2 = specs["conv1"], specs["conv2"]
    mac1, mac2 = 2_457_600, 6_553_600
    # the exact network input needs no variance-of-input product, and conv1 no backward
    assert not conv1.var_in and conv1.ops == ("forward", "param_deltas")
    assert flops.op_flops(conv1, "forward") == 2 * 2 * mac1
    assert conv2.var_in and conv2.ops == ("forward", "backward", "param_deltas")
    assert [flops.op_flops(conv2, op) for op in conv2.ops] == [2 * 3 * mac2, 2 * 2 * mac2,
                                                                2 * 2 * mac2]
    pool1 = specs["pool1"]                       # 32 x 16 x 16 windows of 3 x 3, mean and variance
    assert flops.op_flops(pool1, "forward") == 32 * 16 * 16 * 9 * 2
    pools = sum(flops.op_flops(s, op) for s in specs.values() if s.family == "avgpool2d"
                for op in s.ops)
    plain = flops.plain_forward_macs(net)
    # seven passes' worth of products (docs/design.md §4), less conv1's three it skips
    assert flops.train_step_flops(net) - pools == 2 * (7 * plain - 3 * mac1)
    assert flops.train_step_flops(net) / 1e9 == pytest.approx(0.16, abs=0.01)


def test_measure_warms_up_then_repeats_within_the_plan():
    calls, syncs = [], []
    timing = measure(lambda: calls.append(1), lambda: syncs.append(1),
                     Plan(warmup=2, min_repeats=3, max_repeats=5, budget_s=10.0))
    assert timing.repeats == 5 and len(calls) == 7 and len(syncs) == 6
    assert timing.best <= timing.median and all(s >= 0 for s in timing.seconds)
    assert measure(lambda: None, lambda: None, Plan(0, 4, 4, 0.0)).repeats == 4


def test_unloadable_backends_are_skipped_with_the_reason(monkeypatch):
    real = suites.get_backend

    def get_backend_without_cupy(name):
        if name == "cupy":
            raise ImportError("backend 'cupy' is not available here: no cupy")
        return real(name)

    monkeypatch.setattr(suites, "get_backend", get_backend_without_cupy)
    loaded, skipped = suites.load_backends(["numpy", "cupy"])
    assert list(loaded) == ["numpy"] and loaded["numpy"].NAME == "numpy"
    assert "no cupy" in skipped["cupy"]


def test_quick_defaults():
    args = parse_args(["--quick"])
    assert args.sweep == [1, 16, 64] and args.epoch_limit == args.test_limit == 256
    assert parse_args(["--sweep", ""]).sweep == []
    with pytest.raises(SystemExit):
        parse_args(["--backends", "numpy,gpu"])


def test_cli_writes_csv_plot_and_tables(tmp_path, capsys):
    out = tmp_path / "bench"
    status = main(["--backends", "numpy", "--quick", "--skip-epoch", "--batch", "2",
                   "--infer-batch", "4", "--sweep", "1,2", "--repeats", "1", "--warmup", "0",
                   "--gemm-size", "128", "--out", str(out)])
    assert status == 0
    table = pd.read_csv(out / "results.csv")
    assert list(table.columns) == COLUMNS
    assert set(table.suite) == {"peak", "op", "train_step", "inference"}
    ops = table[table.suite == "op"]
    assert len(ops) == 20 and set(ops.batch) == {2}                # 20 ops in a training step
    assert ops.op.str.match(r"(conv2d|linear|avgpool2d)_(forward|backward|param_deltas)$").all()
    assert sorted(table[table.suite == "train_step"].batch) == [1, 2]
    assert sorted(table[table.suite == "inference"].batch) == [1, 2, 4]
    timed = table[table.suite != "peak"]
    assert (timed.median_s > 0).all() and (timed.images_per_s > 0).all()
    assert (timed.share_of_peak > 0).all() and np.isfinite(timed.gflops).all()
    assert table[table.suite == "peak"].share_of_peak.tolist() == [1.0]
    assert (out / "sweep.png").stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "| measurement" in printed and "train step B=2: images/s" in printed
    assert "conv2d_param_deltas" in printed and "epoch skipped" in printed
    assert (out / "summary.md").read_text().strip() == printed.strip()


def test_epoch_runs_the_main_job_and_reads_its_memory(cifar_root, tmp_path):
    backend = get_backend("numpy")
    train, job = epoch_rows(backend, "float32", cifar_root, tmp_path / "run", 32, 20, peak=100.0)
    assert (tmp_path / "run" / "metrics.csv").is_file()
    assert train["suite"] == "epoch" and train["images"] == 32 and train["median_s"] > 0
    assert job["suite"] == "epoch_job" and job["images"] == 32 + 20
    assert job["median_s"] > train["median_s"]
    assert 30 < job["max_rss_mib"] < 8000 and math.isnan(train["max_rss_mib"])


# ----------------------------------------------------------------------------- peers (benchmarks/peers.py)

def test_a_peer_that_does_not_import_is_skipped_by_name():
    from benchmarks import peers
    why = peers.missing_peer("no_such_peer_module")
    assert "no_such_peer_module" in why and "[peers]" in why
    assert peers.missing_peer("numpy") is None


def test_peer_comparison_ratio_is_the_median_of_the_rounds(monkeypatch):
    from benchmarks import peers
    rates = iter([100.0, 10.0, 300.0, 10.0, 200.0, 20.0])     # ours, peer per round: 10, 30, 10

    def fake_worker(side, batch, threads, budget_s, warmup):
        return {"side": side, "images_per_s": next(rates), "cpu_per_wall": 1.0, "steal": 0.0,
                "load1": 1.0}
    monkeypatch.setattr(peers, "run_worker", fake_worker)
    summary, segments = peers.compare("tagi_train", 3, 2, 0.0, 0)
    assert len(segments) == 6 and [s["side"] for s in segments[:2]] == ["tagi_train", "pytagi_train"]
    assert summary["ratio"] == 10.0 and (summary["ratio_min"], summary["ratio_max"]) == (10.0, 30.0)
    assert summary["ours_images_per_s"] == 200.0 and summary["peer_images_per_s"] == 10.0
    assert summary["ours_spread"] == pytest.approx(2.0)
    table = peers.peers_markdown([summary], {"bp_train": "torch does not import here"})
    assert "| tagi_train | 16 | 200.0 |" in table and "10.00×" in table and "| no |" in table
    assert "- skipped bp_train: torch does not import here" in table


def test_our_peer_sides_run_in_a_worker_process_and_report_json():
    from benchmarks import peers
    result = peers.run_worker("tagi_train", 2, 1, 0.0, 0)
    assert result["side"] == "tagi_train" and result["steps"] >= 3 and result["images_per_s"] > 0
    assert 0 <= result["steal"] <= 1


def test_peer_options_are_checked():
    from benchmarks import peers
    with pytest.raises(SystemExit):
        peers.parse_args(["--only", "tagi_train,nope"])
    with pytest.raises(SystemExit):
        peers.parse_args(["--rounds", "0"])
