"""Pooling: average (the TAGI mean pass, backend ``avgpool2d_*`` ops) and max (BP only, on ``backend.xp``)."""
from ..shapes import Pool2dWindow
from .layer import Layer


class AvgPool2d(Pool2dWindow, Layer):
    """Window sums divided by kernel_size**2, padding cells included (TAGI's AvgPool2d, docs/math.md §3.4)."""

    def forward(self, x, training=False):
        y, _ = self.backend.avgpool2d_forward(x, var_a=None, g=self.geom)
        return y

    def backward(self, grad, input_grad=True):
        if not input_grad:
            return None
        grad_x, _ = self.backend.avgpool2d_backward(grad, delta_var=None, g=self.geom)
        return grad_x


class MaxPool2d(Pool2dWindow, Layer):
    """Window maxima; padding cells never win. The gradient goes to the first maximal cell of each window."""

    max_pool = True

    def _offsets(self):
        """(ky, kx) of every cell of a window, in row-major order."""
        k = self.geom.kernel
        return [(ky, kx) for ky in range(k) for kx in range(k)]

    def _cells(self, padded, ky, kx):
        """The view of ``padded`` that window cell (ky, kx) reads for every output: (B, C, Ho, Wo)."""
        g = self.geom
        return padded[:, :, ky:ky + g.stride * (g.out_height - 1) + 1:g.stride,
                      kx:kx + g.stride * (g.out_width - 1) + 1:g.stride]

    def forward(self, x, training=False):
        xp, g = self.backend.xp, self.geom
        pads = ((0, 0), (0, 0), (g.pad_begin, g.pad_end), (g.pad_begin, g.pad_end))
        padded = xp.pad(x, pads, constant_values=-xp.inf)
        cells = xp.stack([self._cells(padded, ky, kx) for ky, kx in self._offsets()])  # (K*K, B, C, Ho, Wo)
        if training:
            self.winner = cells.argmax(axis=0)               # (B, C, Ho, Wo): index of the max cell
            self.x_shape, self.padded_shape = x.shape, padded.shape
        return cells.max(axis=0)

    def backward(self, grad, input_grad=True):
        if not input_grad:
            return None
        xp, g = self.backend.xp, self.geom
        grad_padded = xp.zeros(self.padded_shape, dtype=grad.dtype)
        for index, (ky, kx) in enumerate(self._offsets()):   # K*K vectorised scatters
            self._cells(grad_padded, ky, kx)[...] += xp.where(self.winner == index, grad, 0)
        h, w = self.x_shape[2:]
        return grad_padded[:, :, g.pad_begin:g.pad_begin + h, g.pad_begin:g.pad_begin + w]
