"""Pooling: average (the TAGI mean pass, backend ``avgpool2d_*`` ops) and max (BP only, on ``backend.xp``)."""
from ..geometry import check_max_pool, window2d
from .layer import Layer


class _Pool2d(Layer):
    """A pooling window over (C, H, W) maps; ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, padding_type="symmetric"):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.padding_type = padding, padding_type

    def __repr__(self):
        return (f"{type(self).__name__}({self.kernel_size}, {self.stride}, padding={self.padding}, "
                f"padding_type={self.padding_type!r})")

    def build(self, in_shape, backend, dtype, rng):
        super().build(in_shape, backend, dtype, rng)
        self.geom = window2d(self.in_shape, self.kernel_size, self.stride, self.padding,
                             self.padding_type)
        return (self.geom.channels, self.geom.out_height, self.geom.out_width)


class AvgPool2d(_Pool2d):
    """Window sums divided by kernel_size**2, padding cells included (TAGI's AvgPool2d, docs/math.md §3.4)."""

    def forward(self, x, training=False):
        y, _ = self.backend.avgpool2d_forward(x, var_a=None, g=self.geom)
        return y

    def backward(self, grad, input_grad=True):
        if not input_grad:
            return None
        grad_x, _ = self.backend.avgpool2d_backward(grad, delta_var=None, g=self.geom)
        return grad_x


class MaxPool2d(_Pool2d):
    """Window maxima; padding cells never win. The gradient goes to the first maximal cell of each window."""

    def build(self, in_shape, backend, dtype, rng):
        out_shape = super().build(in_shape, backend, dtype, rng)
        check_max_pool(self.geom, self)
        return out_shape

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
