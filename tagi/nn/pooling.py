"""Pooling TAGI layers (docs/math.md §3.4, §5.4), per channel over K x K windows with stride S
and padding (``tagi.geometry``).

``AvgPool2d``:

    mu_out  = (1 / K**2) * sum_window mu_a,   var_out = (1 / K**4) * sum_window var_a

The divisors count padding cells too (they hold zeros). Backward spreads each
output innovation back over its window: delta_mu / K**2 and delta_var / K**4,
summed where windows overlap.

``MaxPool2d`` (docs/math.md §3.4.1, §5.4.1), the reference implementation's rule: per window,
the output is the mean and variance of the cell with the largest *mean* (padding never wins;
ties go to the first such cell in row-major window order), and the backward routes the
output innovations to that cell only (Jacobian 1 there, 0 at every other cell), summed where
windows overlap. It is not the moments of the max of the window's Gaussians: E[max] >= the
largest mean, and the gap vanishes only when one mean stands clear of the others by several
standard deviations (for two iid N(0, 1) cells E[max] = 1/sqrt(pi) ~ 0.564, the rule gives 0).
"""
from ..shapes import Pool2dWindow
from .layer import Layer


class AvgPool2d(Pool2dWindow, Layer):
    """Window means of the means, window sums of the variances over K**4."""

    def forward(self, mu, var):
        return self.backend.avgpool2d_forward(mu, var, self.geom)

    def backward(self, delta_mu, delta_var, input_delta=True):
        if not input_delta:
            return None, None
        return self.backend.avgpool2d_backward(delta_mu, delta_var, self.geom)


class MaxPool2d(Pool2dWindow, Layer):
    """The moments of each window's cell of largest mean; the same shapes as ``tagi.bp.MaxPool2d``.

    ``padding`` must be < ``kernel_size`` (else a window could hold padding only). The forward
    keeps ``index`` (B, C, Ho, Wo), the winning cell's place ky*K + kx in its window, for the
    backward.
    """

    max_pool = True

    def forward(self, mu, var):
        mu, var, self.index = self.backend.maxpool2d_forward(mu, var, self.geom)
        return mu, var

    def backward(self, delta_mu, delta_var, input_delta=True):
        if not input_delta:
            return None, None
        return self.backend.maxpool2d_backward(delta_mu, delta_var, self.index, self.geom)
