"""Batch splitting for the Numba backend: a batch runs in parts fixed by its size, on the threads.

On a few cores, a conv op run as a sequence of parallel kernels and
multi-threaded GEMMs hands work between threads dozens of times per op (every
chunk's gather, GEMM and scatter), and every hand-off waits for the slowest
thread: on a shared or loaded machine, for a thread the scheduler has not run
yet. ``split(batch, task)`` instead runs ``task(first, count)`` once per part
of the batch, the parts shared out among the threads, with BLAS and Numba
single-threaded inside, so the op hands off once. The parts write disjoint
slices of the outputs, or return partial sums that the caller adds in part
order.

``run(ranges, task)`` does the same for given ranges: ``tagi.nn.Sequential``
runs a whole network's forward, then its backward, on each part of a batch,
so that a step hands off twice. Inside a part, an op's own split runs whole.

The parts depend on the batch size only (``batch_parts``: ``PARTS`` of them,
fewer for a smaller batch), never on the thread count, and every part runs
with one BLAS and one Numba thread: the same batch gives the same float
round-off, hence the same parameters and metrics, at any thread count, and a
run resumed on another machine ends as the uninterrupted one. The thread
count (``numba.get_num_threads()``, which ``tagi.threads.limit_threads``
caps) only decides how many parts run at once. Numba kernels must be compiled
``nogil=True`` so that the parts run at once; numpy's GEMMs release the GIL
themselves.
"""
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numba
from threadpoolctl import ThreadpoolController

# A batch runs in at most PARTS parts of at least MIN_PART samples: enough parts for a few cores,
# each large enough that one thread running them in turn loses little to running the batch whole
# (``python -m benchmarks.peers --only tagi_parts,bp_parts`` times that cost)
PARTS = 8
MIN_PART = 4

_state = {"pool": None, "size": 0, "blas": None}
_inside = threading.local()          # .part: this thread is running a part of a batch
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
    """``batch // MIN_PART`` contiguous (first, count) parts of range(batch), at least 1 and at most
    PARTS: fixed by the batch size alone, so that sums over parts add the same numbers in the same
    order at any thread count."""
    return parts(batch, max(min(PARTS, batch // MIN_PART), 1))


def _run_parts(ranges, task, results):
    """Run ``task`` on each range in turn, as a part of a batch, into ``results[range index]``."""
    _inside.part = True
    try:
        for index, (first, count) in ranges:
            results[index] = task(first, count)
    finally:
        _inside.part = False


def run(ranges, task):
    """Run ``task(first, count)`` for each range -> results in range order.

    The ranges are shared out among ``min(numba.get_num_threads(), len(ranges))``
    threads, the calling thread one of them (worker i runs ranges i, i + n, ...);
    BLAS and Numba are single-threaded until every range has ended, and restored
    after, also when a task raises.
    """
    results = [None] * len(ranges)
    workers = max(min(numba.get_num_threads(), len(ranges)), 1)
    numbered = list(enumerate(ranges))
    shares = [numbered[i::workers] for i in range(workers)]
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with _SingleBlas():
            futures = ([_executor(workers - 1).submit(_run_parts, share, task, results)
                        for share in shares[1:]] if workers > 1 else [])
            try:
                _run_parts(shares[0], task, results)
            finally:
                wait(futures)
            for future in futures:
                future.result()          # a part's exception, raised here
            return results
    finally:
        numba.set_num_threads(threads)


def split(batch, task):
    """Run ``task(first, count)`` on each part of range(batch) -> results in part order; inside a
    part of a batch already split (a network's part), ``task`` runs once on the whole range."""
    if getattr(_inside, "part", False):
        return [task(0, batch)]
    return run(batch_parts(batch), task)
