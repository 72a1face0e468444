"""Benchmarks of the TAGI backends on the 3-conv CIFAR-10 network: ``python -m benchmarks``.

Modules by concern: ``flops`` (FLOP counts from the layer geometry), ``timing``
(median of repeats after warm-up), ``suites`` (GEMM peak, per op, training
step, inference), ``epoch`` (the main job as a subprocess, with its max RSS),
``report`` (the tidy table, markdown and plot), ``run`` (the command line).
"""
