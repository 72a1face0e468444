"""The GPU suite of ``python -m benchmarks``: the cupy backend's kernels, training and inference.

Run for the cupy backend when ``--gpu-modes`` is not empty (default ``eager,graph``), in each
mode: ``eager`` (Python issues every kernel, on both GEMM paths: the fused kernels and cuBLAS)
and ``graph`` (the same work recorded once by ``backend.capture`` and replayed as one CUDA
graph; fused path only, since CuPy cannot record cuBLAS calls). Rows (``report.record``):

- ``gpu_op``: each op a training step runs on each layer at ``--batch`` (16), and each forward
  op at batch 1,024, timed on the GPU by CUDA events (``timing.cuda_event_seconds``), FLOPs from
  ``flops.py``; the elementwise kernels (ReLU, Jacobian step, output innovations, capped update)
  count no FLOPs and report GB/s instead (each array they read or write, once).
- ``gpu_step``: a training step at batch 16 (eager: ``tagi.loop.train_step`` from a host batch,
  wall time; graph: one replay of ``tagi.loop.TrainStep`` on its device buffers, CUDA events).
- ``gpu_epoch``: one run of 3,125 calls of that ``TrainStep`` (50,000 images) from device
  memory, eager or replayed, training error counted on the device (target on an H200: at
  most 1 s).
- ``gpu_inference``: forward pass and class probabilities at batch 1,024 on device input
  (target: at least 200,000 images/s).

Each finished line is also appended at once to ``OUT/gpu-MODE.md`` (a markdown table with the
GPU µs, the host wall µs of a synchronised eager call, GB/s and GFLOP/s), so a run cut short
by a time limit keeps what it measured.
"""
import time

import numpy as np

from tagi import nn
from tagi.loop import TrainStep, train_step

from . import flops
from .report import record
from .suites import SIGMA_V, network, op_calls
from .timing import Timing, cuda_event_seconds, measure

MODES = ("eager", "graph")
EPOCH_IMAGES, TRAIN_BATCH, INFER_BATCH = 50_000, 16, 1024
PATHS = {"eager": ("fused", "cublas"), "graph": ("fused",)}


class Report:
    """The markdown file of one mode, written line by line as measurements finish."""

    HEADER = ("| path | batch | layer | op | GPU µs | wall µs | GB/s | GFLOP/s |\n"
              "|---|---:|---|---|---:|---:|---:|---:|")

    def __init__(self, path, title):
        self.path = path
        self.path.write_text(f"# {title}\n\n{self.HEADER}\n")

    def line(self, path, batch, layer, op, gpu_s, wall_s=None, nbytes=None, n_flops=None):
        cells = [path, str(batch), layer, op, f"{gpu_s * 1e6:.1f}",
                 "" if wall_s is None else f"{wall_s * 1e6:.1f}",
                 "" if not nbytes else f"{nbytes / gpu_s / 1e9:.0f}",
                 "" if not n_flops else f"{n_flops / gpu_s / 1e9:.0f}"]
        with self.path.open("a") as out:
            out.write("| " + " | ".join(cells) + " |\n")


def _elementwise_calls(backend, net, head, batch, rng):
    """[(layer, op, call, bytes moved)] for the elementwise kernels of a training step."""
    def gaussian(shape):
        return (backend.asarray(rng.standard_normal(shape), dtype=net.dtype),
                backend.asarray(0.1 + rng.random(shape), dtype=net.dtype))

    calls = []
    for index, layer in enumerate(net.layers):
        name = f"{index}:{type(layer).__name__}"
        if isinstance(layer, nn.ReLU):
            mu, var = gaussian((batch, *layer.in_shape))
            d_mu, d_var = gaussian(mu.shape)
            calls += [(name, "relu_forward", lambda mu=mu, var=var: backend.relu_forward(mu, var),
                       5 * mu.nbytes),
                      (name, "scale_by_jacobian",
                       lambda d=(d_mu, d_var, var): backend.scale_by_jacobian(*d), 5 * mu.nbytes)]
        elif layer.has_params:
            for mu, var in ((layer.mu_w, layer.var_w), (layer.mu_b, layer.var_b)):
                deltas = (0.01 * mu, -0.001 * var)
                p = (mu.copy(), var.copy(), *deltas)
                calls.append((name, f"capped_update {mu.shape}",
                              lambda p=p: backend.capped_update(*p, 2.0), 6 * mu.nbytes))
    mu, var = gaussian((batch, head.num_outputs))
    y = head.observations(np.arange(batch) % head.num_classes, batch, net.dtype)
    calls.append(("head", "gaussian_innovations",
                  lambda: backend.gaussian_innovations(mu, var, y, SIGMA_V), 5 * mu.nbytes))
    return calls


class GpuSuite:
    """One mode of the suite on one backend. The sizes are the benchmark's (batch 16, inference
    at 1,024, a 50,000-image epoch) unless given; ``clock`` times one call (CUDA events; None:
    host wall time, for a run without a GPU)."""

    def __init__(self, backend, dtype, plan, peak, mode, report, batch=TRAIN_BATCH,
                 infer_batch=INFER_BATCH, epoch_images=EPOCH_IMAGES, clock=cuda_event_seconds,
                 seed=0):
        self.backend, self.dtype, self.plan, self.peak, self.mode = backend, dtype, plan, peak, mode
        self.report, self.batch, self.infer_batch = report, batch, infer_batch
        self.epoch_images, self.clock, self.seed = epoch_images, clock, seed

    def rows(self):
        return self.op_rows() + self.training_rows() + self.inference_rows()

    def _gpu_timing(self, call):
        """Timing of ``call()`` by the clock, or of the replay of its CUDA graph in graph mode."""
        backend = self.backend
        run = backend.capture(call).replay if self.mode == "graph" else call
        return measure(run, backend.synchronize, self.plan, clock=self.clock)

    def op_rows(self):
        """Every op of a training step at ``batch`` and every forward op at ``infer_batch``, per path."""
        backend, rows = self.backend, []
        for path in PATHS[self.mode]:
            with backend.gemm_settings(cublas=path == "cublas"):
                for size, inference in ((self.batch, False), (self.infer_batch, True)):
                    net, head = network(backend, self.dtype, self.seed)
                    rng = np.random.default_rng(self.seed)
                    timed = []
                    for spec in flops.layer_ops(net):
                        calls = op_calls(spec, backend, size, net.dtype, rng)
                        timed += [(spec.name, f"{spec.family}_{op}", calls[op], None,
                                   flops.op_flops(spec, op) * size)
                                  for op in spec.ops if op == "forward" or not inference]
                    if not inference:
                        timed += [(layer, op, call, nbytes, 0) for layer, op, call, nbytes
                                  in _elementwise_calls(backend, net, head, size, rng)]
                    for layer, op, call, nbytes, n_flops in timed:
                        timing = self._gpu_timing(call)
                        wall = (measure(call, backend.synchronize, self.plan).median
                                if self.mode == "eager" else None)
                        self.report.line(path, size, layer, op, timing.median, wall, nbytes, n_flops)
                        rows.append(record("gpu_op", backend, layer, f"{op} [{path}, {self.mode}]",
                                           size, net.dtype, size, timing, n_flops, self.peak))
        return rows

    def training_rows(self):
        """The training step at ``batch`` and an epoch of ``epoch_images`` from device memory."""
        backend, batch, plan, mode = self.backend, self.batch, self.plan, self.mode
        xp, rng = backend.xp, np.random.default_rng(self.seed)
        net, head = network(backend, self.dtype, self.seed)
        per_step = flops.train_step_flops(net) * batch
        n_steps = self.epoch_images // batch
        images = xp.random.standard_normal((n_steps * batch, *net.input_shape), dtype=net.dtype)
        host_labels = rng.integers(0, head.num_classes, n_steps * batch)
        targets = head.observations(host_labels, len(host_labels), net.dtype)
        labels = backend.asarray(host_labels)
        step = TrainStep(net, head, SIGMA_V)
        first_x, first_labels = backend.to_numpy(images[:batch]), host_labels[:batch]
        step.load(first_x, first_labels)
        if mode == "eager":
            timing = measure(lambda: train_step(net, head, first_x, first_labels, SIGMA_V),
                             backend.synchronize, plan)
            run = step
        else:
            run = backend.capture(step).replay
            timing = measure(run, backend.synchronize, plan, clock=self.clock)
        self.report.line("fused", batch, "network", f"train_step ({mode})", timing.median)
        rows = [record("gpu_step", backend, "network", f"train_step [{mode}]", batch,
                       net.dtype, batch, timing, per_step, self.peak)]

        backend.synchronize()
        begin = time.perf_counter()
        for i in range(n_steps):
            part = slice(i * batch, (i + 1) * batch)
            step.x[...], step.y[...], step.labels[...] = images[part], targets[part], labels[part]
            run()
        backend.synchronize()
        epoch = Timing((time.perf_counter() - begin,))
        self.report.line("fused", batch, "network", f"epoch of {n_steps} steps ({mode})",
                         epoch.median)
        rows.append(record("gpu_epoch", backend, "network", f"epoch [{mode}]", batch, net.dtype,
                           n_steps * batch, epoch, per_step * n_steps, self.peak))
        return rows

    def inference_rows(self):
        """Forward pass and class probabilities at ``infer_batch`` on device input."""
        backend, size = self.backend, self.infer_batch
        net, head = network(backend, self.dtype, self.seed)
        x = backend.xp.random.standard_normal((size, *net.input_shape), dtype=net.dtype)
        timing = self._gpu_timing(lambda: head.probabilities(*net.forward(x)))
        self.report.line("fused", size, "network", f"forward+probabilities ({self.mode}), "
                         f"{size / timing.median:,.0f} images/s", timing.median)
        return [record("gpu_inference", backend, "network", f"forward+probabilities [{self.mode}]",
                       size, net.dtype, size, timing, flops.inference_flops(net) * size, self.peak)]


def device_name(backend):
    """The GPU's name and SM count, e.g. "NVIDIA H200 (132 SMs)"."""
    cuda = backend.xp.cuda
    props = cuda.runtime.getDeviceProperties(cuda.Device().id)
    return f"{props['name'].decode()} ({props['multiProcessorCount']} SMs)"


def gpu_rows(backend, dtype, plan, peak, modes, out, batch=TRAIN_BATCH, seed=0, **sizes):
    """Every measurement of the suite, for each of ``modes``; writes OUT/gpu-MODE.md as it goes.
    ``sizes``: GpuSuite's infer_batch, epoch_images and clock, for a run without a GPU."""
    rows = []
    for mode in modes:
        report = Report(out / f"gpu-{mode}.md", f"TAGI on {device_name(backend)}, 3-conv CIFAR-10 "
                        f"network, {dtype}, {mode}")
        rows += GpuSuite(backend, dtype, plan, peak, mode, report, batch, seed=seed, **sizes).rows()
    return rows
