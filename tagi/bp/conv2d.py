"""2-D convolution BP layer: the TAGI mean pass with point weights (backend ``conv2d_*`` ops, ``None`` variances).

A cross-correlation (no kernel flip); geometry and padding types from ``tagi.geometry``.
"""
from ..geometry import window2d
from .layer import ParametricLayer


class Conv2d(ParametricLayer):
    """Weights (out_channels, in_channels, k, k) and biases (out_channels,).

    Forward takes (B, in_channels, H, W) and returns (B, out_channels, Ho, Wo).
    ``padding_type`` is "symmetric" (PyTorch-like) or "bottom_right" (cuTAGI type 2).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 padding_type="symmetric", init_method="He", gain_w=1.0, gain_b=1.0):
        super().__init__(init_method, gain_w, gain_b)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.padding_type = padding_type

    def __repr__(self):
        return (f"Conv2d({self.in_channels}, {self.out_channels}, {self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, padding_type={self.padding_type!r})")

    def build(self, in_shape, backend, dtype, rng):
        super().build(in_shape, backend, dtype, rng)
        if len(in_shape) != 3 or in_shape[0] != self.in_channels:
            raise ValueError(f"{self!r} expects a ({self.in_channels}, H, W) input, "
                             f"got shape {tuple(in_shape)}")
        self.geom = window2d(in_shape, self.kernel_size, self.stride, self.padding, self.padding_type)
        k2 = self.geom.kernel ** 2
        self.init_params((self.out_channels, self.in_channels, self.geom.kernel, self.geom.kernel),
                         k2 * self.in_channels, k2 * self.out_channels, dtype, rng)
        return (self.out_channels, self.geom.out_height, self.geom.out_width)

    def forward(self, x, training=False):
        self.x = x
        return self.backend.conv2d_forward(x, None, self.weight.value, None,
                                           self.bias.value, None, self.geom)[0]

    def backward(self, grad, input_grad=True):
        self.weight.grad, _, self.bias.grad, _ = self.backend.conv2d_param_deltas(
            self.x, grad, None, None, None, self.geom)
        if not input_grad:
            return None
        return self.backend.conv2d_backward(grad, None, self.weight.value, self.geom)[0]
