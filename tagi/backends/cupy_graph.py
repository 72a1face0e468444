"""CUDA graphs for the cupy backend: a function of device arrays (a whole training step, e.g.
``tagi.loop.TrainStep``) recorded once and replayed with one launch (``capture``)."""
import logging

import cupy

log = logging.getLogger(__name__)


class CapturedGraph:
    """One call of a function recorded as a CUDA graph (made by ``capture``), or, where the
    recording failed, the function itself.

    ``replay()`` re-runs every kernel of that call with a single graph launch on the current
    stream, on the very same device arrays; ``outputs`` is what the call returned, refreshed in
    place by each replay and valid while this object lives. Without a graph (``captured`` is
    False, ``reason`` says why) ``replay()`` calls the function eagerly and ``outputs`` is what
    the latest call returned.
    """

    def __init__(self, fn, outputs, graph=None, pool=None, reason=None):
        self._fn, self._graph, self._pool = fn, graph, pool
        self.outputs, self.reason = outputs, reason

    @property
    def captured(self):
        return self._graph is not None

    def replay(self):
        if self._graph is None:
            self.outputs = self._fn()
        else:
            self._graph.launch()


def capture(fn):
    """Record ``fn()`` as a CUDA graph -> ``CapturedGraph``; ``fn`` also runs once for real first.

    For a training step, ``fn`` is a ``tagi.loop.TrainStep``: the layer code, unchanged, on
    device buffers that the caller refills (``step.load(x, labels)``, the same batch size)
    before each ``replay()``. Rules: ``fn`` must not copy from the host (such a copy would be
    frozen into the graph), must not synchronise, and must see the same shapes; the
    graph keeps the parameter arrays it updated, so ``load_state_dict`` needs a new
    capture.

    The first, real call compiles the kernels and creates, with the ordinary allocator,
    whatever the code keeps between calls (the head's code tables, any cache), so those
    outlive the graph. The recorded call then allocates its buffers (layer inputs kept for
    the backward pass, innovations, outputs) from a memory pool that belongs to the graph
    alone, so they are never handed to other work while the graph lives.

    Where the recording fails (CuPy refuses cuBLAS calls during stream capture, so the
    ``cublas`` GEMM setting cannot be recorded; an old CuPy or driver), one line is
    logged with the reason and the returned object replays ``fn`` eagerly.
    """
    outputs = fn()
    cupy.cuda.get_current_stream().synchronize()      # that call's work, before the recording
    pool = cupy.cuda.MemoryPool()
    try:
        stream = cupy.cuda.Stream(non_blocking=True)
        with cupy.cuda.using_allocator(pool.malloc), stream:
            stream.begin_capture()
            try:
                outputs = fn()
            finally:
                graph = stream.end_capture()
        stream.synchronize()
    except Exception as err:  # any failure to record: the same work, run eagerly
        reason = " ".join(f"{type(err).__name__}: {err}".split())   # one line
        log.warning("CUDA-graph capture of %s failed, replaying it eagerly (%s)",
                    getattr(fn, "__qualname__", fn), reason)
        return CapturedGraph(fn, outputs, reason=reason)
    return CapturedGraph(fn, outputs, graph, pool)
