"""2-D convolution BP layer: the TAGI mean pass with point weights (backend ``conv2d_*`` ops, no variances).

A cross-correlation (no kernel flip); geometry and padding types from ``tagi.geometry``.
Backward: dL/dW is the correlation of the inputs with g = dL/dy, dL/dx the transposed
correlation of g with W.
"""
from ..shapes import conv2d_shapes
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
        shapes, self.geom = conv2d_shapes(self.in_channels, self.out_channels, self.kernel_size,
                                          self.stride, self.padding, self.padding_type,
                                          self.in_shape)
        self.init_params(shapes, dtype, rng)
        return shapes.out

    def forward(self, x, training=False):
        self.x = x
        y, _ = self.backend.conv2d_forward(x, var_a=None, mu_w=self.weight.value, var_w=None,
                                           mu_b=self.bias.value, var_b=None, g=self.geom)
        return y

    def backward(self, grad, input_grad=True):
        # with no prior variances the "deltas" are the unscaled sums
        self.weight.grad, _, self.bias.grad, _ = self.backend.conv2d_param_deltas(
            self.x, grad, delta_var=None, var_w=None, var_b=None, g=self.geom)
        if not input_grad:
            return None
        grad_x, _ = self.backend.conv2d_backward(grad, delta_var=None, mu_w=self.weight.value,
                                                 g=self.geom)
        return grad_x
