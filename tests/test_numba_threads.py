"""The Numba backend's batch split (tagi/backends/_numba_threads.py): parts, order, thread state.

The ops' results under the split are checked against the float64 reference in
test_backend_parity.py (at the default thread count); here the parts are shown
to be fixed by the batch, and ops, training steps and whole networks to give
bit-identical results at 1, 2 and 16 threads (batches whose parts are uneven).
"""
import threading

import numba
import numpy as np
import pytest
from threadpoolctl import threadpool_info

from op_parity import CONV_CASES, conv_arrays
from tagi.threads import limit_threads

threads = pytest.importorskip("tagi.backends._numba_threads")
backend = pytest.importorskip("tagi.backends.numba_backend")
TWO = pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="Numba has one thread here")


def blas_threads():
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


@pytest.mark.parametrize("batch, n", [(16, 2), (17, 2), (5, 3), (1, 1), (3, 4)])
def test_parts_cover_the_batch_in_order_evenly(batch, n):
    ranges = threads.parts(batch, n)
    assert len(ranges) == n
    assert [i for first, count in ranges for i in range(first, first + count)] == list(range(batch))
    assert max(c for _, c in ranges) - min(c for _, c in ranges) <= 1


@TWO
def test_split_runs_each_part_single_threaded_and_restores_the_caller():
    seen = []

    def task(first, count):
        seen.append((numba.get_num_threads(), blas_threads()))
        return first, count

    with limit_threads(2):
        before = numba.get_num_threads(), blas_threads()
        assert threads.split(9, task) == [(0, 5), (5, 4)]
        assert (numba.get_num_threads(), blas_threads()) == before
    assert seen == [(1, {1}), (1, {1})]


@pytest.mark.parametrize("batch, counts", [(1, [1]), (7, [7]), (9, [5, 4]), (16, [4, 4, 4, 4]),
                                           (17, [5, 4, 4, 4]), (128, [16] * 8), (1000, [125] * 8)])
def test_batch_parts_are_fixed_by_the_batch_not_the_threads(batch, counts):
    for n in (1, 2):
        with limit_threads(n):
            ranges = threads.batch_parts(batch)
        assert [count for _, count in ranges] == counts
        assert [first for first, _ in ranges] == [sum(counts[:i]) for i in range(len(counts))]


def test_one_thread_runs_every_part_in_turn_in_the_calling_thread():
    seen = []

    def task(first, count):
        seen.append(threading.get_ident())
        return first

    with limit_threads(1):
        assert threads.split(16, task) == [0, 4, 8, 12]
    assert seen == [threading.get_ident()] * 4


def test_an_op_inside_a_part_runs_whole():
    inner = []

    def task(first, count):
        inner.append(threads.split(count, lambda f, c: (f, c)))
        return count

    assert threads.split(64, task) == [8] * 8        # a part of 8 would split in two on its own
    assert inner == [[(0, 8)]] * 8


@TWO
def test_split_restores_the_caller_when_a_part_raises():
    def task(first, count):
        if first:
            raise RuntimeError("part failed")

    with limit_threads(2):
        before = numba.get_num_threads(), blas_threads()
        with pytest.raises(RuntimeError, match="part failed"):
            threads.split(16, task)
        assert (numba.get_num_threads(), blas_threads()) == before


@TWO
@pytest.mark.parametrize("case", CONV_CASES[:2])
def test_conv_ops_are_identical_at_one_and_two_threads(case):
    a = {k: v.astype(np.float32) if isinstance(v, np.ndarray) else v
         for k, v in conv_arrays(case, np.random.default_rng(0), batch=17).items()}
    calls = {"forward": lambda: backend.conv2d_forward(a["mu_a"], a["var_a"], a["mu_w"], a["var_w"],
                                                       a["mu_b"], a["var_b"], a["g"]),
             "backward": lambda: backend.conv2d_backward(a["delta_mu"], a["delta_var"], a["mu_w"],
                                                         a["g"]),
             "param_deltas": lambda: backend.conv2d_param_deltas(a["mu_a"], a["delta_mu"],
                                                                 a["delta_var"], a["var_w"],
                                                                 a["var_b"], a["g"])}
    for op, call in calls.items():
        with limit_threads(1):
            one = call()
        with limit_threads(2):
            two = call()
        for got, want in zip(two, one):
            np.testing.assert_array_equal(got, want, err_msg=op)


def _split_in_child(queue):
    with limit_threads(2):
        queue.put(threads.split(16, lambda first, count: count))


@TWO
def test_a_forked_child_splits_with_its_own_pool():
    import multiprocessing
    with limit_threads(2):
        threads.split(16, lambda first, count: count)     # the parent's pool exists
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_split_in_child, args=(queue,))
    child.start()
    child.join(timeout=20)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in split()")
    assert queue.get(timeout=5) == [4, 4, 4, 4]


@TWO
def test_a_network_trains_in_parts_as_the_reference_does():
    """At 2 threads a numba network runs an odd batch in two uneven parts (tagi.nn.Sequential),
    one per thread; two training steps match the float64 reference."""
    from op_parity import check_training_steps
    from test_network import small_conv_net
    rng = np.random.default_rng(1)
    x, labels = rng.standard_normal((9, 3, 8, 8)), rng.integers(0, 10, 9)
    nets = []

    def make_net(name, dtype):
        nets.append(small_conv_net(name, dtype))
        return nets[-1]

    with limit_threads(2):
        check_training_steps(make_net, "numba", np.float32, x, labels)
    assert [count for _, count in nets[1]._ranges] == [5, 4]
