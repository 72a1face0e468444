"""CPU threads: how many the BLAS library and Numba's parallel kernels may use.

By default both use every core. When jobs share the cores (a joblib sweep, two
runs side by side), each job's threads wait at every GEMM and parallel loop for
a thread that another job has pushed off its core, and a step runs many times
slower than with one thread per job. ``limit_threads(n)`` caps both pools for
the duration of a block. Capping starts Numba's threads, so it first tunes the
process as choosing the numba backend does (``numba_backend.tune_process``).
"""
from contextlib import contextmanager

import numba
from threadpoolctl import threadpool_limits

from .backends.numba_backend import tune_process
from .checks import check_int


@contextmanager
def limit_threads(n):
    """Within the block, BLAS and Numba's parallel kernels use at most ``n`` threads (None: no cap)."""
    if n is None:
        yield
        return
    n = check_int("a thread count", n, 1)
    tune_process()                  # Numba's OpenMP workers must sleep, not spin: set before they start
    previous = numba.get_num_threads()
    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        numba.set_num_threads(previous)
