"""The project against its peers, each side in its own process, alternating: pytagi and PyTorch.

    python -m benchmarks --peers                      # the suite, then the peer comparisons
    python -m benchmarks.peers --rounds 5             # the comparisons alone

Three comparisons on the 3-conv CIFAR-10 network, float32, random inputs:

| comparison | ours                               | peer                                 | batch |
|---|---|---|---|
| `tagi_train` | TAGI training step (numba)       | pytagi 0.2.1 forward, hierarchical-softmax update, backward, step | 16 |
| `tagi_infer` | TAGI forward + class probabilities | pytagi forward + ``get_labels``    | 256 |
| `bp_train`   | BP step (numba), SGD momentum    | PyTorch CPU step, same optimiser     | 128 |

Each round starts one fresh process per side (ours, then the peer), each
warms up, then times steps for a fixed budget and reports the median step.
A round's ratio is ours / peer; the reported ratio is the median over rounds,
so a slow spell of the machine that spans one round moves one pair, not the
figure. In one process the two sides' thread pools slow each other, hence the
separate processes. Beside each side the parent records what the machine did
meanwhile: the steal share of CPU time (``/proc/stat``: time the hypervisor
gave to other guests) and the 1-minute load average, so a slow segment
caused by the machine shows as such.

Two more comparisons time the project against itself: its training steps
with a batch in the Numba backend's fixed parts (``batch_parts``: 4 parts of
B = 16, 8 of B = 128, the same at any thread count, so results do not depend
on it) against one part per thread (``_numba_threads.PARTS`` set to the
thread count, ``MIN_PART`` to 1): what thread-independent results cost.

| comparison | ours | against | batch |
|---|---|---|---|
| `tagi_parts` | TAGI training step (numba), fixed parts | the same, one part per thread | 16 |
| `bp_parts`   | BP step (numba), fixed parts            | the same, one part per thread | 128 |

A peer that is not installed (``pip install -e ".[peers]"``) is skipped by
name with the reason. pytagi 0.2.1's CPU wheel loads ``libnccl.so.2``: the
worker finds the ``nvidia-nccl-cu12`` wheel's library folder and puts it on
``LD_LIBRARY_PATH`` of the peer's process.
"""
import argparse
import importlib.util
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmarks")
REPO = Path(__file__).resolve().parents[1]
NUM_CLASSES = 10
SIGMA_V = 1.0
# comparison -> (batch, ours, peer, peer's import name, target ratio or None)
COMPARISONS = {
    "tagi_train": (16, "tagi_train", "pytagi_train", "pytagi", 25.0),
    "tagi_infer": (256, "tagi_infer", "pytagi_infer", "pytagi", 20.0),
    "bp_train": (128, "bp_train", "torch_train", "torch", 0.8),
    "tagi_parts": (16, "tagi_train", "tagi_train_thread_parts", "tagi", None),
    "bp_parts": (128, "bp_train", "bp_train_thread_parts", "tagi", None),
}
PEER_COMPARISONS = ("tagi_train", "tagi_infer", "bp_train")   # the default: other implementations


# ----------------------------------------------------------------------------- the sides (worker process)

def _inputs(batch, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((batch, 3, 32, 32)).astype(np.float32),
            rng.integers(0, NUM_CLASSES, batch))


def _ours_tagi(batch, threads, train):
    from tagi.backends import get_backend
    from tagi.loop import train_step

    from .suites import network
    net, head = network(get_backend("numba"), "float32")
    x, labels = _inputs(batch)
    if train:
        return lambda: train_step(net, head, x, labels, SIGMA_V)
    return lambda: head.probabilities(*net.forward(x))


def _ours_bp(batch, threads):
    from tagi.bp import make_optimizer
    from tagi.bp.loop import train_step
    from tagi.models import architecture, bp_network
    net = bp_network(architecture("cifar10_3conv"), NUM_CLASSES, backend="numba",
                     dtype="float32", seed=0)
    optimizer = make_optimizer("sgd", net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, labels = _inputs(batch)
    return lambda: train_step(net, optimizer, x, labels)


def _pytagi(batch, threads, train):
    from pytagi import Utils
    from pytagi.nn import AvgPool2d, Conv2d, Linear, OutputUpdater, ReLU, Sequential
    # padding_type=2 is our "bottom_right" average pooling; the first conv needs the input size
    pool = dict(kernel_size=3, stride=2, padding=1, padding_type=2)
    net = Sequential(Conv2d(3, 32, 5, padding=2, in_width=32, in_height=32), ReLU(),
                     AvgPool2d(**pool),
                     Conv2d(32, 32, 5, padding=2), ReLU(), AvgPool2d(**pool),
                     Conv2d(32, 64, 5, padding=2), ReLU(), AvgPool2d(**pool),
                     Linear(1024, 64), ReLU(), Linear(64, 11))
    net.set_threads(threads)
    utils = Utils()
    hrc = utils.get_hierarchical_softmax(NUM_CLASSES)
    x, labels = _inputs(batch)
    x = x.reshape(-1)
    if not train:
        net.eval()

        def infer():
            mu, var = net(x)
            return utils.get_labels(mu, var, hrc, NUM_CLASSES, batch)
        return infer
    updater = OutputUpdater(net.device)
    obs, obs_idx, _ = utils.label_to_obs(labels, NUM_CLASSES)
    var_obs = np.full(obs.shape, SIGMA_V ** 2, np.float32)

    def step():
        net(x)
        updater.update_using_indices(net.output_z_buffer, obs, var_obs, obs_idx,
                                     net.input_delta_z_buffer)
        net.backward()
        net.step()
    return step


def _torch(batch, threads):
    import torch
    from torch import nn
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1),
                        nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1),
                        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, padding=1),
                        nn.Flatten(), nn.Linear(1024, 64), nn.ReLU(), nn.Linear(64, NUM_CLASSES))
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    x, labels = _inputs(batch)
    x, labels = torch.from_numpy(x), torch.from_numpy(labels)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(net(x), labels).backward()
        optimizer.step()
    return step


def _thread_parts(side):
    """``side`` with a batch run in one part per thread (the numba backend's ``PARTS`` set to the
    thread count, ``MIN_PART`` to 1) instead of its fixed parts."""
    def build(batch, threads):
        from tagi.backends import _numba_threads
        _numba_threads.PARTS, _numba_threads.MIN_PART = threads, 1
        return SIDES[side](batch, threads)
    return build


SIDES = {
    "tagi_train": lambda batch, threads: _ours_tagi(batch, threads, train=True),
    "tagi_infer": lambda batch, threads: _ours_tagi(batch, threads, train=False),
    "bp_train": _ours_bp,
    "pytagi_train": lambda batch, threads: _pytagi(batch, threads, train=True),
    "pytagi_infer": lambda batch, threads: _pytagi(batch, threads, train=False),
    "torch_train": _torch,
    "tagi_train_thread_parts": _thread_parts("tagi_train"),
    "bp_train_thread_parts": _thread_parts("bp_train"),
}


OURS = {ours for _, ours, _, _, _ in COMPARISONS.values()} | {
    "tagi_train_thread_parts", "bp_train_thread_parts"}


def run_side(side, batch, threads, budget_s, warmup):
    """Build ``side``, warm it up, time steps for ``budget_s`` (at least 3) -> result dict."""
    call = SIDES[side](batch, threads)
    for _ in range(warmup):
        call()
    seconds = []
    wall0, cpu0 = time.perf_counter(), time.process_time()
    while len(seconds) < 3 or sum(seconds) < budget_s:
        start = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - start)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    median = statistics.median(seconds)
    return {"side": side, "batch": batch, "threads": threads, "steps": len(seconds),
            "median_s": median, "images_per_s": batch / median, "cpu_per_wall": cpu / wall}


def worker_main(side, batch, threads, budget_s, warmup):
    """The worker process: prints one JSON line. Ours is capped to ``threads`` the project's way
    (``tagi.threads``); a peer by its own setting, with nothing of ours imported."""
    if side in OURS:
        from tagi.threads import limit_threads
        with limit_threads(threads):
            result = run_side(side, batch, threads, budget_s, warmup)
    else:
        result = run_side(side, batch, threads, budget_s, warmup)
    print(json.dumps(result))


# ----------------------------------------------------------------------------- the parent

def nccl_library_dirs():
    """Folders holding the nvidia-nccl wheel's libnccl.so.2 (pytagi's CPU wheel links it)."""
    try:
        spec = importlib.util.find_spec("nvidia.nccl")
    except ModuleNotFoundError:
        return []
    locations = [] if spec is None else list(spec.submodule_search_locations or [])
    return [str(Path(p, "lib")) for p in locations if Path(p, "lib", "libnccl.so.2").is_file()]


def peer_env():
    """The environment of a worker: this checkout first on PYTHONPATH, nccl on LD_LIBRARY_PATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [*nccl_library_dirs(),
                                                           env.get("LD_LIBRARY_PATH")]))
    return env


def missing_peer(module):
    """None if ``module`` imports in a worker's environment, else why not (one line)."""
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], env=peer_env(),
                           capture_output=True, text=True, cwd=REPO)
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return f"{module} does not import here ({lines[-1] if lines else 'no message'}); " \
           f"install the peers with pip install -e \".[peers]\""


def cpu_counters():
    """(total jiffies, steal jiffies) of all CPUs since boot, from /proc/stat (None without it)."""
    try:
        with open("/proc/stat") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    return sum(fields[:8]), fields[7]   # user nice system idle iowait irq softirq steal


def _steal_share(before, after):
    if before is None or after is None or after[0] == before[0]:
        return float("nan")
    return (after[1] - before[1]) / (after[0] - before[0])


def steal_line(before, after):
    """A summary line: the hypervisor's share of CPU time while the suites ran (steal, /proc/stat)."""
    share = _steal_share(before, after)
    if share != share:
        return "- steal time: not available here (no /proc/stat)"
    return (f"- steal time during the suites: {100 * share:.1f} % of CPU time (the hypervisor "
            f"ran other guests; above a few % the figures understate this code), load average "
            f"now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")


def run_worker(side, batch, threads, budget_s, warmup):
    """One side in a fresh process -> its result dict, with the machine's steal share and load."""
    before = cpu_counters()
    job = subprocess.run([sys.executable, "-m", "benchmarks.peers", "--worker", side,
                          "--batch", str(batch), "--threads", str(threads),
                          "--budget", str(budget_s), "--warmup", str(warmup)],
                         env=peer_env(), capture_output=True, text=True, cwd=REPO)
    after = cpu_counters()
    if job.returncode != 0:
        tail = "\n".join(job.stderr.strip().splitlines()[-10:])
        raise RuntimeError(f"peer worker {side} exited with status {job.returncode}:\n{tail}")
    result = json.loads(job.stdout.strip().splitlines()[-1])
    result["steal"] = _steal_share(before, after)
    result["load1"] = os.getloadavg()[0]
    return result


def compare(name, rounds, threads, budget_s, warmup):
    """Alternate ours and the peer ``rounds`` times -> a summary dict and the per-segment results."""
    batch, ours, peer, _, target = COMPARISONS[name]
    segments, ratios = [], []
    for round_ in range(rounds):
        pair = [run_worker(side, batch, threads, budget_s, warmup) for side in (ours, peer)]
        for result in pair:
            result.update(comparison=name, round=round_)
            log.info("peers  %-10s round %d %-13s B=%-4d %9.1f img/s  cpu/wall %.2f  steal %4.1f%%  "
                     "load %.1f", name, round_, result["side"], batch, result["images_per_s"],
                     result["cpu_per_wall"], 100 * result["steal"], result["load1"])
        segments += pair
        ratios.append(pair[0]["images_per_s"] / pair[1]["images_per_s"])

    def median(side, key):
        return statistics.median(s[key] for s in segments if s["side"] == side)
    return {"comparison": name, "batch": batch, "threads": threads, "rounds": rounds,
            "ours": ours, "peer": peer, "ours_images_per_s": median(ours, "images_per_s"),
            "peer_images_per_s": median(peer, "images_per_s"), "ratio": statistics.median(ratios),
            "ratio_min": min(ratios), "ratio_max": max(ratios), "target": target,
            "ours_spread": _spread(segments, ours), "peer_spread": _spread(segments, peer),
            "steal_max": max(s["steal"] for s in segments),
            "load_max": max(s["load1"] for s in segments)}, segments


def _spread(segments, side):
    """max/min - 1 of a side's rates over the rounds (0.25: the slowest is 25 % below the fastest)."""
    rates = [s["images_per_s"] for s in segments if s["side"] == side]
    return max(rates) / min(rates) - 1


def run_peers(rounds=3, threads=2, budget_s=5.0, warmup=3, names=PEER_COMPARISONS):
    """Every comparison whose peer imports -> (summaries, segments, {comparison: why skipped})."""
    summaries, segments, skipped, missing = [], [], {}, {}
    for name in names:
        module = COMPARISONS[name][3]
        if module not in missing:
            missing[module] = missing_peer(module)
        if missing[module]:
            skipped[name] = missing[module]
            log.warning("peers: skipping %s: %s", name, missing[module])
            continue
        summary, segs = compare(name, rounds, threads, budget_s, warmup)
        summaries.append(summary)
        segments += segs
    return summaries, segments, skipped


def peers_markdown(summaries, skipped):
    """The comparisons as a markdown table, the target (if any) beside each ratio."""
    lines = ["| comparison | batch | ours img/s | peer | peer img/s | ours / peer (min–max) | "
             "target | met | ours spread | peer spread | max steal | max load |",
             "|:--|--:|--:|:--|--:|--:|--:|:--|--:|--:|--:|--:|"]
    for s in summaries:
        lines.append(f"| {s['comparison']} | {s['batch']} | {s['ours_images_per_s']:,.1f} | "
                     f"{s['peer']} | {s['peer_images_per_s']:,.1f} | {s['ratio']:.2f}× "
                     f"({s['ratio_min']:.2f}–{s['ratio_max']:.2f}) | "
                     f"{_target_cells(s['target'], s['ratio'])} | "
                     f"{100 * s['ours_spread']:.0f} % | {100 * s['peer_spread']:.0f} % | "
                     f"{100 * s['steal_max']:.1f} % | {s['load_max']:.1f} |")
    lines += [f"- skipped {name}: {why}" for name, why in skipped.items()]
    if summaries:
        s = summaries[0]
        lines.append(f"- {s['rounds']} alternating rounds, each side in a fresh process, "
                     f"{s['threads']} threads each; ratio: median of the rounds' ratios; spread: "
                     "fastest over slowest round - 1; steal: the hypervisor's share of CPU time "
                     "during a side's run (/proc/stat), load: 1-minute load average after it")
    return "\n".join(lines)


def _target_cells(target, ratio):
    """The 'target | met' cells: '≥ 25× | yes', or '– | –' for a comparison without a target."""
    if target is None:
        return "– | –"
    return f"≥ {target:g}× | {'yes' if ratio >= target else 'no'}"


def write_peers(out, summaries, segments):
    """peers.csv (one row per comparison) and peer_segments.csv (one per process run) in ``out``."""
    import pandas as pd
    pd.DataFrame(summaries).to_csv(Path(out) / "peers.csv", index=False)
    pd.DataFrame(segments).to_csv(Path(out) / "peer_segments.csv", index=False)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=(
        "Time the project against pytagi and PyTorch, alternating, each side in its own process."))
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default 3)")
    p.add_argument("--threads", type=int, default=2, help="threads of each side (default 2)")
    p.add_argument("--budget", type=float, default=5.0,
                   help="timed seconds per side and round, after warm-up (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--only", default=",".join(PEER_COMPARISONS),
                   help=f"comparisons, comma-separated (default {','.join(PEER_COMPARISONS)}; "
                        f"also {','.join(sorted(set(COMPARISONS) - set(PEER_COMPARISONS)))}: "
                        "fixed batch parts against one part per thread)")
    p.add_argument("--out", type=Path, default=None, help="write peers.csv, peer_segments.csv here")
    p.add_argument("--worker", choices=sorted(SIDES), help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=16, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.only = [name for name in args.only.split(",") if name]
    unknown = sorted(set(args.only) - set(COMPARISONS))
    if unknown:
        p.error(f"unknown comparison(s) {unknown}: choose from {sorted(COMPARISONS)}")
    for name in ("rounds", "threads", "warmup"):
        if getattr(args, name) < (0 if name == "warmup" else 1):
            p.error(f"--{name} must be >= {0 if name == 'warmup' else 1}")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.batch, args.threads, args.budget, args.warmup)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    summaries, segments, skipped = run_peers(args.rounds, args.threads, args.budget, args.warmup,
                                             args.only)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        write_peers(args.out, summaries, segments)
    print(peers_markdown(summaries, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
