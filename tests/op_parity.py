"""Op-by-op parity of an accelerated backend with the NumPy reference, for tests only.

``OP_CASES`` covers every op of the contract with every ``None`` pattern it allows, on small odd
shapes (stride 2, both padding types, H != W, more than one GEMM tile, reductions long enough
to split). ``check_op`` runs one case on a backend in float32 or float64 and compares it with the
reference evaluated in float64; ``check_training_steps`` does the same for whole training steps.
Shared by test_kernels_cpu.py (the kernels on the CPU) and test_cupy_backend.py (on a GPU).
"""
import inspect

import numpy as np
import pytest

from conftest import gaussian_tensors
from tagi import nn
from tagi.backends import numpy_backend as ref
from tagi.geometry import window2d
from tagi.loop import TrainStep, train_step

# (C, H, W, C_out, kernel, stride, padding, padding_type)
CONV_CASES = [
    (2, 5, 5, 3, 3, 1, 1, "symmetric"),
    (3, 7, 6, 2, 3, 2, 1, "symmetric"),       # H != W, stride 2
    (2, 6, 6, 3, 3, 2, 1, "bottom_right"),    # cuTAGI padding type 2
    (3, 8, 8, 33, 5, 1, 2, "symmetric"),      # two output-channel tiles, two position tiles
    (6, 6, 6, 4, 5, 1, 2, "symmetric"),       # a patch of 150 cells: a long forward reduction
    (2, 4, 5, 2, 1, 1, 0, "symmetric"),       # 1x1 kernel
]
# (C, H, W, kernel, stride, padding, padding_type)
POOL_CASES = [
    (2, 8, 8, 3, 2, 1, "bottom_right"),       # the CIFAR pool
    (3, 7, 7, 3, 2, 1, "symmetric"),
    (1, 9, 7, 3, 1, 1, "bottom_right"),
    (2, 6, 6, 2, 2, 0, "symmetric"),
]
# max pooling, beyond those: overlapping windows on H != W with symmetric padding, a stride
# larger than the kernel; every case holds ties (pool_arrays)
MAXPOOL_CASES = POOL_CASES + [(2, 7, 6, 3, 2, 1, "symmetric"), (1, 7, 9, 2, 3, 1, "bottom_right")]
LINEAR_CASES = [(3, 5, 4), (70, 37, 33), (5, 300, 11)]   # (B, N_in, N_out)
BATCH = 2

# The cupy backend's GEMM paths, as its gemm_settings: fused kernels that never split a reduction,
# fused kernels that split every reduction down to one GEMM_BK slice per block, cuBLAS.
GEMM_PATHS = {"fused": dict(blocks_per_sm=0), "split_k": dict(blocks_per_sm=10_000, min_slices_per_split=1),
              "cublas": dict(cublas=True)}

# The None patterns of the contract: the arguments each one leaves out.
FORWARD = {"full": (), "exact_input": ("var_a",), "mean_only": ("var_a", "var_w", "var_b")}
BACKWARD = {"full": (), "mean_only": ("delta_var",)}
DELTAS = {"full": (), "mean_only": ("delta_var",), "unscaled": ("var_w", "var_b")}


def conv_arrays(case, rng, batch=BATCH):
    c, h, w, c_out, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    out = (batch, c_out, g.out_height, g.out_width)
    (mu_a, var_a), (mu_w, var_w) = gaussian_tensors(rng, (batch, c, h, w)), gaussian_tensors(rng, (c_out, c, k, k))
    mu_b, var_b = gaussian_tensors(rng, (c_out,))
    return dict(g=g, mu_a=mu_a, var_a=var_a, mu_w=mu_w, var_w=var_w, mu_b=mu_b, var_b=var_b,
                delta_mu=rng.standard_normal(out), delta_var=-rng.random(out))


def pool_arrays(case, rng, batch=BATCH):
    """A pooling case's arrays; the means of sample 0, channel 0 tie over the first 2 x 3 cells
    (max pooling's tie rule), and ``index`` is the reference max pool's."""
    c, h, w, k, s, p, ptype = case
    g = window2d((c, h, w), k, s, p, ptype)
    out = (batch, c, g.out_height, g.out_width)
    mu_a, var_a = gaussian_tensors(rng, (batch, c, h, w))
    mu_a[0, 0, :2, :3] = 0.25
    return dict(g=g, mu_a=mu_a, var_a=var_a, delta_mu=rng.standard_normal(out), delta_var=-rng.random(out),
                index=ref.maxpool2d_forward(mu_a, None, g)[2])


def linear_arrays(case, rng):
    batch, n_in, n_out = case
    (mu_a, var_a), (mu_w, var_w) = gaussian_tensors(rng, (batch, n_in)), gaussian_tensors(rng, (n_out, n_in))
    mu_b, var_b = gaussian_tensors(rng, (n_out,))
    return dict(mu_a=mu_a, var_a=var_a, mu_w=mu_w, var_w=var_w, mu_b=mu_b, var_b=var_b,
                delta_mu=rng.standard_normal((batch, n_out)), delta_var=-rng.random((batch, n_out)))


def elementwise_arrays(op, rng):
    if op == "gaussian_innovations":
        var = 0.1 + rng.random((6, 11))
        var[0, 0], var[1, 1] = np.inf, np.nan                # non-finite S: zero innovations
        y = np.where(rng.random((6, 11)) < 0.4, np.nan, np.sign(rng.standard_normal((6, 11))))
        return dict(mu=rng.standard_normal((6, 11)), var=var, y=y, sigma_v=0.7)
    if op == "capped_update":
        var = 0.1 + rng.random((7, 9))
        var[0, :3] = 1e-4                                    # small variances: the 1e-5 floor
        return dict(mu=rng.standard_normal((7, 9)), var=var, delta_mu=2 * rng.standard_normal((7, 9)),
                    delta_var=-rng.random((7, 9)), cap_factor=2.0)
    mu, var = gaussian_tensors(rng, (4, 3, 5, 7))
    return dict(mu_z=mu, var_z=var, delta_mu=rng.standard_normal(mu.shape), delta_var=-rng.random(mu.shape),
                jac=rng.random(mu.shape), x=3 * rng.standard_normal((6, 10, 4)), negative_slope=0.1)


def _cases():
    cases = []
    for arrays, family, ops in [
            (conv_arrays, CONV_CASES, [("conv2d_forward", FORWARD), ("conv2d_backward", BACKWARD),
                                       ("conv2d_param_deltas", DELTAS)]),
            (linear_arrays, LINEAR_CASES, [("linear_forward", FORWARD), ("linear_backward", BACKWARD),
                                           ("linear_param_deltas", DELTAS)]),
            (pool_arrays, POOL_CASES, [("avgpool2d_forward", {"full": (), "mean_only": ("var_a",)}),
                                       ("avgpool2d_backward", BACKWARD)]),
            (pool_arrays, MAXPOOL_CASES, [("maxpool2d_forward", {"full": (), "mean_only": ("var_a",)}),
                                          ("maxpool2d_backward", BACKWARD)])]:
        for i, case in enumerate(family):
            for op, modes in ops:
                cases += [(f"{op}-{i}-{mode}", op, arrays, case, dropped) for mode, dropped in modes.items()]
    for op, modes in [("relu_forward", {"full": (), "mean_only": ("var_z",)}),
                      ("mixture_relu_forward", {"full": ()}),
                      ("leaky_relu_forward", {"full": (), "mean_only": ("var_z",)}),
                      ("mixture_leaky_relu_forward", {"full": ()}), ("scale_by_jacobian", BACKWARD),
                      ("normal_cdf", {"full": ()}), ("gaussian_innovations", {"full": ()}),
                      ("capped_update", {"full": ()})]:
        cases += [(f"{op}-{mode}", op, elementwise_arrays, op, dropped) for mode, dropped in modes.items()]
    return cases


OP_CASES = _cases()   # (id, op, make_arrays, case, dropped argument names)


def op_arguments(op, make_arrays, case, dropped, seed=0):
    """The reference op's arguments for one case, float64 arrays (None where dropped)."""
    arrays = make_arrays(case, np.random.default_rng(seed))
    names = inspect.signature(getattr(ref, op)).parameters
    return [None if name in dropped else arrays[name] for name in names]


def assert_close(got, want, dtype, what=""):
    """got (backend, dtype) against want (reference, float64), relative to the scale of want;
    an integer output (a max-pool index) must be equal, of the same dtype."""
    if want is None:
        assert got is None, what
        return
    if want.dtype.kind in "iu":
        assert got is not None and got.dtype == want.dtype, what
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    assert got is not None and got.dtype == dtype and got.shape == want.shape, what
    tol = 1e-5 if dtype == np.float32 else 1e-12
    finite = np.isfinite(want)
    scale = max(1.0, np.abs(want[finite]).max(initial=0.0))
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * scale, err_msg=what)


def check_op(backend, op, args, dtype, to_device=np.asarray, to_host=np.asarray):
    """Run ``op`` on ``backend`` in ``dtype`` and compare each output with the float64 reference.

    Skipped when the backend's op is the reference's own function (the Numba backend re-exports
    some): that would compare the reference with itself, which is no parity."""
    if getattr(backend, op) is getattr(ref, op):
        pytest.skip(f"{backend.NAME} re-exports the reference op {op}: no parity to check")
    device_args = [to_device(a.astype(dtype) if a.dtype.kind == "f" else a) if isinstance(a, np.ndarray)
                   else a for a in args]
    if op == "capped_update":                       # in place on mu and var
        ref.capped_update(*args)
        backend.capped_update(*device_args)
        got, want = device_args[:2], args[:2]
    else:
        got, want = getattr(backend, op)(*device_args), getattr(ref, op)(*args)
        if not isinstance(want, tuple):
            got, want = (got,), (want,)
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert_close(None if g is None else to_host(g), w, dtype, f"{op} output {i}")


def max_pool_leaky_net(backend, dtype):
    """A small network through every new layer: max pools (non-overlapping, then overlapping with
    padding), linearised and mixture leaky ReLUs, on 8 x 10 inputs."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3, padding=1), nn.MixtureLeakyReLU(0.1), nn.MaxPool2d(3, 2, padding=1),
        nn.Linear(36, 8), nn.LeakyReLU(0.2), nn.Linear(8, 11),
        input_shape=(3, 8, 10), backend=backend, dtype=dtype, seed=5)


def check_training_steps(make_net, backend, dtype, x, labels, steps=2, to_host=np.asarray, tol=None):
    """``steps`` calls of tagi.loop.train_step on make_net(backend, dtype) against the float64
    reference network: the prior predictive outputs of the last step and every parameter after.
    ``tol`` defaults to float32 / float64 round-off."""
    nets = [make_net("numpy", "float64"), make_net(backend, np.dtype(dtype).name)]
    outputs = []
    for net in nets:
        head = nn.HierarchicalSoftmax(10, backend=net.backend)
        for _ in range(steps):
            mu, var = train_step(net, head, x, labels, sigma_v=1.0)
        outputs.append((to_host(mu), to_host(var)))
    tol = tol or (2e-5 if dtype == np.float32 else 1e-11)
    for got, want in zip(outputs[1], outputs[0]):
        np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max(), err_msg="outputs")
    want, got = nets[0].state_dict(), nets[1].state_dict()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=tol, atol=tol * np.abs(want[key]).max(),
                                   err_msg=key)


def replay_training_steps(backend, net, head, batches):
    """Train ``net`` on ``batches`` [(x, labels)] through ``backend.capture`` of a
    ``tagi.loop.TrainStep``: recorded on the first batch (its real first call trains on it),
    then replayed on each other batch after refilling the buffers -> the CapturedGraph."""
    step = TrainStep(net, head, 1.0)
    step.load(*batches[0])
    graph = backend.capture(step)
    for x, labels in batches[1:]:
        step.load(x, labels)
        graph.replay()
    return graph
