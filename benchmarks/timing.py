"""Wall-clock timing: warm-up calls, then repeats until a time budget, summarised by the median.

Every timed call is bracketed by the backend's ``synchronize()``, so queued GPU
work is inside the measurement and nothing from an earlier call leaks into it;
or, with ``clock=cuda_event_seconds``, timed on the GPU by CUDA events.
"""
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """How long to time one measurement.

    ``warmup`` untimed calls (JIT compilation, caches, allocator), then at least
    ``min_repeats`` timed calls, and more while the timed total is under
    ``budget_s`` and fewer than ``max_repeats`` were made.
    """

    warmup: int = 2
    min_repeats: int = 5
    max_repeats: int = 100
    budget_s: float = 2.0


FULL = Plan()
QUICK = Plan(warmup=1, min_repeats=3, max_repeats=20, budget_s=0.3)


@dataclass(frozen=True)
class Timing:
    """Seconds of each timed call."""

    seconds: tuple

    @property
    def median(self):
        return statistics.median(self.seconds)

    @property
    def best(self):
        return min(self.seconds)

    @property
    def repeats(self):
        return len(self.seconds)


def measure(call, synchronize, plan, clock=None):
    """Time ``call()`` following ``plan``; ``synchronize()`` waits for the device's queued work.

    ``clock(call)`` -> seconds of one call; default: host wall time up to ``synchronize()``.
    """
    for _ in range(plan.warmup):
        call()
    synchronize()
    seconds = []
    while len(seconds) < plan.min_repeats or (sum(seconds) < plan.budget_s
                                              and len(seconds) < plan.max_repeats):
        if clock is None:
            start = time.perf_counter()
            call()
            synchronize()
            seconds.append(time.perf_counter() - start)
        else:
            seconds.append(clock(call))
    return Timing(tuple(seconds))


def cuda_event_seconds(call):
    """GPU seconds of ``call()``: between two CUDA events recorded around it on the current stream."""
    import cupy
    start, end = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    call()
    end.record()
    end.synchronize()
    return cupy.cuda.get_elapsed_time(start, end) / 1e3
