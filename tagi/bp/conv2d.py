"""2-D convolution BP layer: the TAGI mean pass with point weights (backend ``conv2d_*`` ops, ``None`` variances).

A cross-correlation (no kernel flip); geometry and padding types from ``tagi.geometry``.
"""
from ..layer_shapes import Conv2dShape
from .layer import ParametricLayer


class Conv2d(Conv2dShape, ParametricLayer):
    """Weights (out_channels, in_channels, k, k) and biases (out_channels,).

    Forward takes (B, in_channels, H, W) and returns (B, out_channels, Ho, Wo).
    ``padding_type`` is "symmetric" (PyTorch-like) or "bottom_right" (cuTAGI type 2).
    """

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
