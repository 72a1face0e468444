"""CPU threads: how many the BLAS library and Numba's parallel kernels may use.

By default both use every core. When jobs share the cores (a joblib sweep, two
runs side by side), each job's threads wait at every GEMM and parallel loop for
a thread that another job has pushed off its core, and a step runs many times
slower than with one thread per job. ``limit_threads(n)`` caps both pools for
the duration of a block.
"""
from contextlib import contextmanager

import numba
from threadpoolctl import threadpool_limits

# Numba's OpenMP workers must be told to sleep, not spin, before Numba starts them
from .backends import numba_backend  # noqa: F401


def check_thread_count(n, what="a thread count"):
    """Raise ValueError, naming ``what``, unless ``n`` is an integer >= 1 or None."""
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"{what} must be an integer >= 1 or None, got {n!r}")


@contextmanager
def limit_threads(n):
    """Within the block, BLAS and Numba's parallel kernels use at most ``n`` threads (None: no cap)."""
    check_thread_count(n)
    if n is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)
