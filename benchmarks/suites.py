"""In-process suites: the GEMM peak, each op of each layer, the training step and inference.

Every suite builds the 3-conv CIFAR-10 network (docs/math.md §9) on one backend,
feeds it random inputs of the right shapes (timings do not depend on the
values) and returns rows made by ``report.record``.
"""
import numpy as np

from tagi import nn
from tagi.backends import get_backend
from tagi.loop import train_step
from tagi.models import architecture, tagi_network

from . import flops
from .report import record
from .timing import measure

ARCHITECTURE = "cifar10_3conv"
NUM_CLASSES = 10
SIGMA_V = 1.0  # the main job's first-epoch observation noise


def load_backends(names):
    """-> ({name: backend module} that work here, {name: why the others were skipped})."""
    loaded, skipped = {}, {}
    for name in names:
        try:
            backend = get_backend(name)
            backend.to_numpy(backend.asarray(np.zeros(1)))   # a device must answer, too
            backend.synchronize()
        except Exception as err:  # a missing package, driver or device: report it, go on
            skipped[name] = f"{type(err).__name__}: {err}"
        else:
            loaded[name] = backend
    return loaded, skipped


def network(backend, dtype, seed=0):
    """The benchmarked network and its hierarchical-softmax head."""
    head = nn.HierarchicalSoftmax(NUM_CLASSES, backend=backend)
    net = tagi_network(architecture(ARCHITECTURE), head.num_outputs, backend=backend,
                       dtype=dtype, seed=seed)
    return net, head


def gemm_peak(backend, dtype, plan, size):
    """The device's practical peak: a ``size`` x ``size`` matmul (2 * size**3 FLOPs)."""
    rng = np.random.default_rng(0)
    a, b = (backend.asarray(rng.standard_normal((size, size)), dtype=dtype) for _ in range(2))
    timing = measure(lambda: a @ b, backend.synchronize, plan)
    peak = 2 * size ** 3 / timing.median / 1e9
    return record("peak", backend, "-", f"matmul {size}x{size}", None, dtype, None,
                  timing, 2 * size ** 3, peak)


def _gaussian(backend, rng, shape, dtype):
    """Backend arrays (mu, var) of ``shape``: means N(0, 1), variances in [0.1, 1.1)."""
    return (backend.asarray(rng.standard_normal(shape), dtype=dtype),
            backend.asarray(0.1 + rng.random(shape), dtype=dtype))


def op_calls(spec, backend, batch, dtype, rng):
    """{op: zero-argument call} for the layer ``spec``, on random inputs and innovations."""
    layer = spec.layer
    in_shape = (layer.in_features,) if spec.family == "linear" else layer.in_shape
    mu_a, var_a = _gaussian(backend, rng, (batch, *in_shape), dtype)
    var_a = var_a if spec.var_in else None
    d_mu, d_var = _gaussian(backend, rng, (batch, *spec.out_shape), dtype)
    if spec.family == "conv2d":
        g = layer.geom
        return {"forward": lambda: backend.conv2d_forward(mu_a, var_a, layer.mu_w, layer.var_w,
                                                          layer.mu_b, layer.var_b, g),
                "backward": lambda: backend.conv2d_backward(d_mu, d_var, layer.mu_w, g),
                "param_deltas": lambda: backend.conv2d_param_deltas(mu_a, d_mu, d_var,
                                                                    layer.var_w, layer.var_b, g)}
    if spec.family == "linear":
        return {"forward": lambda: backend.linear_forward(mu_a, var_a, layer.mu_w, layer.var_w,
                                                          layer.mu_b, layer.var_b),
                "backward": lambda: backend.linear_backward(d_mu, d_var, layer.mu_w),
                "param_deltas": lambda: backend.linear_param_deltas(mu_a, d_mu, d_var,
                                                                    layer.var_w, layer.var_b)}
    return {"forward": lambda: backend.avgpool2d_forward(mu_a, var_a, layer.geom),
            "backward": lambda: backend.avgpool2d_backward(d_mu, d_var, layer.geom)}


def op_rows(backend, batch, dtype, plan, peak, seed=0):
    """Every op a training step runs on every conv, pool and linear layer, at ``batch``."""
    net, _ = network(backend, dtype, seed)
    rng = np.random.default_rng(seed)
    rows = []
    for spec in flops.layer_ops(net):
        calls = op_calls(spec, backend, batch, net.dtype, rng)
        for op in spec.ops:
            timing = measure(calls[op], backend.synchronize, plan)
            rows.append(record("op", backend, spec.name, f"{spec.family}_{op}", batch, net.dtype,
                               batch, timing, flops.op_flops(spec, op) * batch, peak))
    return rows


def _images(rng, batch, net):
    """A host batch of normalised-looking images (the network's dtype) and labels."""
    return (rng.standard_normal((batch, *net.input_shape)).astype(net.dtype),
            rng.integers(0, NUM_CLASSES, batch))


def train_step_rows(backend, batches, dtype, plan, peak, seed=0):
    """``tagi.loop.train_step`` (forward, output update, backward, capped step) at each batch size."""
    net, head = network(backend, dtype, seed)
    rng = np.random.default_rng(seed)
    per_image = flops.train_step_flops(net)
    rows = []
    for batch in batches:
        x, labels = _images(rng, batch, net)
        timing = measure(lambda: train_step(net, head, x, labels, SIGMA_V), backend.synchronize, plan)
        rows.append(record("train_step", backend, "network", "train_step", batch, net.dtype,
                           batch, timing, per_image * batch, peak))
    return rows


def inference_rows(backend, batches, dtype, plan, peak, seed=0):
    """Forward pass and class probabilities at each batch size."""
    net, head = network(backend, dtype, seed)
    rng = np.random.default_rng(seed)
    per_image = flops.inference_flops(net)
    rows = []
    for batch in batches:
        x, _ = _images(rng, batch, net)
        timing = measure(lambda: head.probabilities(*net.forward(x)), backend.synchronize, plan)
        rows.append(record("inference", backend, "network", "forward+probabilities", batch,
                           net.dtype, batch, timing, per_image * batch, peak))
    return rows
