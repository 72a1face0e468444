"""Average pooling TAGI layer (docs/math.md §3.4, §5.4).

Per channel, over K x K windows with stride S and padding (``tagi.geometry``):

    mu_out  = (1 / K**2) * sum_window mu_a,   var_out = (1 / K**4) * sum_window var_a

The divisors count padding cells too (they hold zeros). Backward spreads each
output innovation back over its window: delta_mu / K**2 and delta_var / K**4,
summed where windows overlap.
"""
from ..geometry import window2d
from .layer import Layer


class AvgPool2d(Layer):
    """(B, C, H, W) -> (B, C, Ho, Wo); ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0, padding_type="symmetric"):
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding, self.padding_type = padding, padding_type

    def __repr__(self):
        return (f"AvgPool2d({self.kernel_size}, {self.stride}, padding={self.padding}, "
                f"padding_type={self.padding_type!r})")

    def build(self, in_shape, backend, dtype, rng):
        super().build(in_shape, backend, dtype, rng)
        self.geom = window2d(self.in_shape, self.kernel_size, self.stride, self.padding,
                             self.padding_type)
        return (self.geom.channels, self.geom.out_height, self.geom.out_width)

    def forward(self, mu, var):
        return self.backend.avgpool2d_forward(mu, var, self.geom)

    def backward(self, delta_mu, delta_var, input_delta=True):
        if not input_delta:
            return None, None
        return self.backend.avgpool2d_backward(delta_mu, delta_var, self.geom)
