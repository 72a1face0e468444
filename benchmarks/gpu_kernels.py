"""GPU timings of the TAGI CUDA kernels on the 3-conv CIFAR-10 network, float32.

    python benchmarks/gpu_kernels.py [--repeats 50] [--steps 300] [--paths fused cublas]

Prints markdown tables, for each GEMM path of the cupy backend (``fused``: the Gaussian-GEMM
kernels; ``cublas``: patch matrices through cupy.matmul):

1. every op of a training step at batch 16 and of inference at batch 1024, layer by layer:
   GPU time (median over repeats of a CUDA-graph replay of one call, timed with CUDA events
   after a warm-up), host time of one eager call, achieved GB/s (each array the op reads or
   writes, counted once) and GFLOP/s (2 per multiply-add, conv2d and linear ops);
2. training at batch 16: ms per step for eager steps from host batches (tagi.loop.train_step,
   Python issuing every kernel) and for CUDA-graph replays of a whole step (backend.capture),
   and the seconds of one epoch of 3125 steps (50,000 images) replayed from device memory,
   training error counted on the device; target 3 s;
3. inference at batch 1024 (forward moments and class probabilities): images/s; target 200,000.

CuPy refuses cuBLAS calls during stream capture, so on the ``cublas`` path the conv2d and
linear ops are timed as one eager call between the events, the epoch runs eager steps, and
the graph columns read n/a.

Exits with a message when cupy or a CUDA device is missing.
"""
import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

EPOCH_IMAGES, TRAIN_BATCH, TEST_BATCH = 50_000, 16, 1024


def require_gpu():
    try:
        import cupy
        if cupy.cuda.runtime.getDeviceCount() > 0:
            return cupy
        reason = "no CUDA device is visible"
    except ImportError:
        reason = "cupy is not installed (pip install cupy-cuda13x)"
    except Exception as err:  # no driver, broken runtime: all mean "no GPU here"
        reason = f"CUDA is not usable here ({err})"
    sys.exit(f"benchmarks/gpu_kernels.py needs an NVIDIA GPU with cupy: {reason}.")


cupy = require_gpu()
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))    # run as a script: this checkout's tagi

from tagi import models, nn  # noqa: E402
from tagi.backends import get_backend  # noqa: E402
from tagi.loop import train_step  # noqa: E402

backend = get_backend("cupy")
head = nn.HierarchicalSoftmax(10)


def cifar_net():
    return models.tagi_network(models.architecture("cifar10_3conv"), head.num_outputs,
                               backend="cupy", dtype="float32", seed=0)


def gpu_seconds(fn, repeats, graph=True):
    """Median GPU time of fn() (a few kernels) between two events: a CUDA-graph replay of one
    call, or one eager call with ``graph=False`` (for cuBLAS calls, which CuPy cannot capture)."""
    run = backend.capture(fn).replay if graph else fn
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    times = []
    for i in range(repeats + 3):
        start.record()
        run()
        end.record()
        end.synchronize()
        if i >= 3:
            times.append(cupy.cuda.get_elapsed_time(start, end) / 1e3)
    return statistics.median(times)


def host_seconds(fn, repeats):
    """Wall time of one eager call of fn() (Python and launches), the device kept busy."""
    fn()
    backend.synchronize()
    begin = time.perf_counter()
    for _ in range(repeats):
        fn()
    backend.synchronize()
    return (time.perf_counter() - begin) / repeats


def random_like(shape):
    return cupy.random.standard_normal(shape, dtype=np.float32)


def positive(shape):
    return 0.1 + cupy.random.random(shape, dtype=np.float32)


def layer_ops(net, batch):
    """(label, op, args, gemm (M, N, K, products) or None) for every op of a training step."""
    ops, first = [], True
    for index, layer in enumerate(net.layers):
        name = f"{index}:{type(layer).__name__}"
        x_shape = (batch,) + layer.in_shape
        mu_a = random_like(x_shape)
        var_a = None if first else positive(x_shape)
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            p = layer.params()
            if isinstance(layer, nn.Conv2d):
                g = layer.geom
                out = (batch, layer.out_channels, g.out_height, g.out_width)
                m, n, k = batch * g.out_height * g.out_width, layer.out_channels, g.patch_size
                fwd = ("conv2d_forward", (mu_a, var_a, p["mu_w"], p["var_w"], p["mu_b"], p["var_b"], g))
                d_mu, d_var = random_like(out), positive(out)
                bwd = ("conv2d_backward", (d_mu, d_var, p["mu_w"], g),
                       (batch * g.height * g.width, g.channels, layer.out_channels * g.kernel ** 2, 2))
                pd = ("conv2d_param_deltas", (mu_a, d_mu, d_var, p["var_w"], p["var_b"], g),
                      (g.patch_size + 1, n, m, 2))
            else:
                flat = mu_a.reshape(batch, -1)
                var_flat = None if var_a is None else var_a.reshape(batch, -1)
                m, n, k = batch, layer.out_features, layer.in_features
                fwd = ("linear_forward", (flat, var_flat, p["mu_w"], p["var_w"], p["mu_b"], p["var_b"]))
                d_mu, d_var = random_like((batch, n)), positive((batch, n))
                bwd = ("linear_backward", (d_mu, d_var, p["mu_w"]), (batch, k, n, 2))
                pd = ("linear_param_deltas", (flat, d_mu, d_var, p["var_w"], p["var_b"]), (k + 1, n, batch, 2))
            ops.append((name, *fwd, (m, n, k, 3 if var_a is not None else 2)))
            ops.append((name, *pd))
            if not first:
                ops.append((name, *bwd))
            for param in ("w", "b"):
                mu, var = p[f"mu_{param}"], p[f"var_{param}"]
                ops.append((name, "capped_update", (mu.copy(), var.copy(), 0.01 * random_like(mu.shape),
                                                    -0.001 * positive(var.shape), 2.0), None))
            first = False
        elif isinstance(layer, nn.ReLU):
            ops.append((name, "relu_forward", (mu_a, var_a), None))
            ops.append((name, "scale_by_jacobian", (random_like(x_shape), positive(x_shape),
                                                    (mu_a > 0).astype(np.float32)), None))
        elif isinstance(layer, nn.AvgPool2d):
            g = layer.geom
            out = (batch, g.channels, g.out_height, g.out_width)
            ops.append((name, "avgpool2d_forward", (mu_a, var_a, g), None))
            ops.append((name, "avgpool2d_backward", (random_like(out), positive(out), g), None))
    out = (batch, head.num_outputs)
    y = head.observations(np.arange(batch) % 10, batch, backend, np.float32)
    ops.append(("head", "gaussian_innovations", (random_like(out), positive(out), y, 1.0), None))
    return ops


def nbytes(values):
    return sum(v.nbytes for v in values if isinstance(v, cupy.ndarray))


def kernel_table(batch, repeats, inference):
    rows = ["| layer | op | GPU µs | eager µs | GB/s | GFLOP/s |", "|---|---|---:|---:|---:|---:|"]
    net = cifar_net()
    total = 0.0
    for label, op, args, gemm in layer_ops(net, batch):
        if inference and not op.endswith("_forward"):
            continue
        fn = getattr(backend, op)
        outputs = fn(*args)
        moved = nbytes(args) + (nbytes(args[:2]) if outputs is None else nbytes(outputs))
        seconds = gpu_seconds(lambda: fn(*args), repeats, graph=gemm is None or not backend.USE_CUBLAS)
        total += seconds
        flops = "" if gemm is None else f"{2 * gemm[0] * gemm[1] * gemm[2] * gemm[3] / seconds / 1e9:.0f}"
        rows.append(f"| {label} | {op} | {seconds * 1e6:.1f} | {host_seconds(lambda: fn(*args), repeats) * 1e6:.1f} "
                    f"| {moved / seconds / 1e9:.0f} | {flops} |")
    rows.append(f"| all | sum of GPU times | {total * 1e6:.1f} | | | |")
    return "\n".join(rows)


def training(steps):
    """Seconds per eager step, per graph replay (None on the cuBLAS path) and of an epoch from
    device memory (graph replays; eager steps on the cuBLAS path)."""
    rng = np.random.default_rng(0)
    net = cifar_net()
    x = rng.standard_normal((TRAIN_BATCH, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, TRAIN_BATCH)
    eager = host_seconds(lambda: train_step(net, head, x, labels, 1.0), steps)

    n_steps = EPOCH_IMAGES // TRAIN_BATCH
    images = cupy.random.standard_normal((n_steps * TRAIN_BATCH, 3, 32, 32), dtype=np.float32)
    all_labels = rng.integers(0, 10, n_steps * TRAIN_BATCH)
    observations = head.observations(all_labels, len(all_labels), backend, np.float32)
    all_labels = cupy.asarray(all_labels)
    x_dev, y_dev = images[:TRAIN_BATCH].copy(), observations[:TRAIN_BATCH].copy()
    labels_dev, wrong = all_labels[:TRAIN_BATCH].copy(), cupy.zeros((), dtype=np.int64)

    def step():
        mu, var = net.forward(x_dev)
        net.backward(*backend.gaussian_innovations(mu, var, y_dev, 1.0))
        net.step()
        cupy.add(wrong, (head.predict(mu, var) != labels_dev).sum(), out=wrong)

    if backend.USE_CUBLAS:
        run, replay = step, None
    else:
        run = backend.capture(step).replay
        replay = host_seconds(run, steps)
    backend.synchronize()
    begin = time.perf_counter()
    for i in range(n_steps):
        batch = slice(i * TRAIN_BATCH, (i + 1) * TRAIN_BATCH)
        x_dev[...], y_dev[...], labels_dev[...] = images[batch], observations[batch], all_labels[batch]
        run()
    backend.synchronize()
    return eager, replay, time.perf_counter() - begin


def inference(batches):
    """images/s of eager forward + probabilities, and of their graph replay (None on the cuBLAS
    path), at batch 1024."""
    net = cifar_net()
    x = cupy.random.standard_normal((TEST_BATCH, 3, 32, 32), dtype=np.float32)

    def predict():
        return head.probabilities(*net.forward(x))

    eager = host_seconds(predict, batches)
    if backend.USE_CUBLAS:
        return TEST_BATCH / eager, None
    return TEST_BATCH / eager, TEST_BATCH / host_seconds(backend.capture(predict).replay, batches)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls per kernel")
    parser.add_argument("--steps", type=int, default=300, help="timed training steps")
    parser.add_argument("--paths", nargs="+", default=["fused", "cublas"], choices=["fused", "cublas"])
    args = parser.parse_args()
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    print(f"# TAGI CUDA kernels on {props['name'].decode()} ({props['multiProcessorCount']} SMs), "
          f"3-conv CIFAR-10 network, float32\n")
    summary = [f"| GEMM path | eager step ms | graph step ms | epoch s ({EPOCH_IMAGES // TRAIN_BATCH} steps) "
               "| inference img/s (eager) | inference img/s (graph) |", "|---|---:|---:|---:|---:|---:|"]
    for path in args.paths:
        backend.USE_CUBLAS = path == "cublas"
        for batch, inference_only in ((TRAIN_BATCH, False), (TEST_BATCH, True)):
            kind = "an inference forward" if inference_only else "a training step"
            print(f"## {path}: ops of {kind}, batch {batch}\n")
            print(kernel_table(batch, args.repeats, inference_only) + "\n")
        eager, replay, epoch = training(args.steps)
        eager_rate, graph_rate = inference(max(10, args.steps // 10))
        replay_ms = "n/a" if replay is None else f"{replay * 1e3:.3f}"
        graph_rate = "n/a" if graph_rate is None else f"{graph_rate:,.0f}"
        summary.append(f"| {path} | {eager * 1e3:.3f} | {replay_ms} | {epoch:.2f} "
                       f"| {eager_rate:,.0f} | {graph_rate} |")
    print(f"## Training (batch {TRAIN_BATCH}) and inference (batch {TEST_BATCH}); "
          "targets: epoch <= 3 s, >= 200,000 images/s\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
