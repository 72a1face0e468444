"""Batch splitting for the Numba backend: one contiguous part of a batch per thread.

On a few cores, a conv op run as a sequence of parallel kernels and
multi-threaded GEMMs hands work between threads dozens of times per op (every
chunk's gather, GEMM and scatter), and every hand-off waits for the slowest
thread: on a shared or loaded machine, for a thread the scheduler has not run
yet. ``split(batch, task)`` instead runs ``task(first, count)`` once per thread
on its own part of the batch, with BLAS and Numba single-threaded inside, so
the op hands off once. The parts write disjoint slices of the outputs, or
return partial sums that the caller adds.

``run(ranges, task)`` does the same for given ranges: ``tagi.nn.Sequential``
runs a whole network's forward, then its backward, on each part of a batch,
so that a step hands off twice. Inside a part Numba has one thread, so an
op's own split there runs whole.

The thread count is the caller's Numba setting (``numba.get_num_threads()``,
which ``tagi.threads.limit_threads`` caps); with one thread the task runs
whole, in the calling thread. Numba kernels must be compiled ``nogil=True``
so that the parts run at once; numpy's GEMMs release the GIL themselves.
"""
import functools
import os
from concurrent.futures import ThreadPoolExecutor, wait

import numba
from threadpoolctl import ThreadpoolController

_state = {"pool": None, "size": 0, "blas": None}
# a forked child has none of its parent's pool threads: it starts its own pool
os.register_at_fork(after_in_child=lambda: _state.update(pool=None, size=0))


def parts(batch, n):
    """``n`` contiguous (first, count) ranges covering 0..batch-1, sizes differing by at most 1."""
    base, extra = divmod(batch, n)
    out, first = [], 0
    for i in range(n):
        count = base + (i < extra)
        out.append((first, count))
        first += count
    return out


def _blas_libraries():
    """The BLAS libraries loaded in this process (threadpoolctl controllers), found once."""
    if _state["blas"] is None:
        _state["blas"] = ThreadpoolController().select(user_api="blas").lib_controllers
    return _state["blas"]


def _executor(workers):
    """A pool of at least ``workers`` threads, each with Numba single-threaded (a per-thread setting)."""
    if _state["size"] < workers:
        if _state["pool"] is not None:
            _state["pool"].shutdown(wait=True)
        _state["pool"] = ThreadPoolExecutor(workers, thread_name_prefix="tagi-numba",
                                            initializer=numba.set_num_threads, initargs=(1,))
        _state["size"] = workers
    return _state["pool"]


class _SingleBlas:
    """Within the block, every BLAS library runs single-threaded (restored on exit)."""

    def __enter__(self):
        self.saved = [(lib, lib.num_threads) for lib in _blas_libraries()]
        for lib, _ in self.saved:
            lib.set_num_threads(1)

    def __exit__(self, *exc):
        for lib, count in self.saved:
            lib.set_num_threads(count)


def single_blas(op):
    """``op`` with BLAS single-threaded: for GEMMs too small to share (the linear layers), whose
    second BLAS thread would only be woken, and waited for, on every call."""
    @functools.wraps(op)
    def wrapped(*args, **kwargs):
        with _SingleBlas():
            return op(*args, **kwargs)
    return wrapped


def batch_parts(batch):
    """One contiguous (first, count) part of range(batch) per thread (the caller's Numba setting)."""
    return parts(batch, max(min(numba.get_num_threads(), batch), 1))


def run(ranges, task):
    """Run ``task(first, count)`` for each range, one per thread -> results in range order.

    The calling thread runs the first range; BLAS and Numba are single-threaded
    until every range has ended, and restored after, also when a task raises.
    One range runs in the calling thread as it is.
    """
    if len(ranges) <= 1:
        return [task(*r) for r in ranges]
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with _SingleBlas():
            futures = [_executor(len(ranges) - 1).submit(task, *r) for r in ranges[1:]]
            try:
                first = task(*ranges[0])
            finally:
                wait(futures)
            return [first] + [future.result() for future in futures]
    finally:
        numba.set_num_threads(threads)


def split(batch, task):
    """Run ``task(first, count)`` on one part of range(batch) per thread -> results in part order."""
    return run(batch_parts(batch), task)
