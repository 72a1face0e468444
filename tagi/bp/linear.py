"""Fully connected BP layer: the TAGI mean pass with point weights (backend ``linear_*`` ops, ``None`` variances)."""
import math

from .layer import ParametricLayer


class Linear(ParametricLayer):
    """y = x W^T + b with W (out_features, in_features) and b (out_features,).

    An image input (C, H, W) is read flattened in (C, H, W) order; ``in_features``
    must equal C*H*W. Forward takes (B, *in_shape) and returns (B, out_features).
    """

    def __init__(self, in_features, out_features, init_method="He", gain_w=1.0, gain_b=1.0):
        super().__init__(init_method, gain_w, gain_b)
        self.in_features, self.out_features = int(in_features), int(out_features)

    def __repr__(self):
        return f"Linear({self.in_features}, {self.out_features})"

    def build(self, in_shape, backend, dtype, rng):
        super().build(in_shape, backend, dtype, rng)
        if math.prod(in_shape) != self.in_features:
            raise ValueError(f"{self!r} expects {self.in_features} input features, "
                             f"but its input has shape {tuple(in_shape)}")
        self.init_params((self.out_features, self.in_features), self.in_features,
                         self.out_features, dtype, rng)
        return (self.out_features,)

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
