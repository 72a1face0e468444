"""CPU threads: how many the BLAS library and Numba's parallel kernels may use.

By default both use every core. When jobs share the cores (a joblib sweep, two
runs side by side), each job's threads wait at every GEMM and parallel loop for
a thread that another job has pushed off its core: on 2 cores, a Numba training
step beside a running main job fell from about 400 to under 25 images/s with 2
threads, and ran at about 200 images/s with 1. ``limit_threads(n)`` caps both
pools for the duration of a block.
"""
from contextlib import contextmanager

import numba
from threadpoolctl import threadpool_limits

# Numba's OpenMP workers must be told to sleep, not spin, before Numba starts them
from .backends import numba_backend  # noqa: F401


@contextmanager
def limit_threads(n):
    """Within the block, BLAS and Numba's parallel kernels use at most ``n`` threads (None: no cap)."""
    if n is None:
        yield
        return
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"a thread count must be an integer >= 1 or None, got {n!r}")
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)
