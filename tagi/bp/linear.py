"""Fully connected BP layer: the TAGI mean pass with point weights (backend ``linear_*`` ops, ``None`` variances)."""
from ..layer_shapes import LinearShape
from .layer import ParametricLayer


class Linear(LinearShape, ParametricLayer):
    """y = x W^T + b with W (out_features, in_features) and b (out_features,).

    An image input (C, H, W) is read flattened in (C, H, W) order; ``in_features``
    must equal C*H*W. Forward takes (B, *in_shape) and returns (B, out_features).
    """

    def forward(self, x, training=False):
        self.x = x.reshape(x.shape[0], -1)
        return self.backend.linear_forward(self.x, None, self.weight.value, None,
                                           self.bias.value, None)[0]

    def backward(self, grad, input_grad=True):
        self.weight.grad, _, self.bias.grad, _ = self.backend.linear_param_deltas(
            self.x, grad, None, None, None)
        if not input_grad:
            return None
        grad_x = self.backend.linear_backward(grad, None, self.weight.value)[0]
        return grad_x.reshape((grad.shape[0],) + self.in_shape)
