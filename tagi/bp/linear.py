"""Fully connected BP layer: the TAGI mean pass with point weights (backend ``linear_*`` ops, no variances).

Forward y = x W^T + b; backward dL/dW = g^T x, dL/db = sum_b g, dL/dx = g W, with g = dL/dy.
"""
from ..shapes import linear_shapes
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
        shapes = linear_shapes(self.in_features, self.out_features, self.in_shape)
        self.init_params(shapes, dtype, rng)
        return shapes.out

    def forward(self, x, training=False):
        self.x = x.reshape(x.shape[0], -1)
        y, _ = self.backend.linear_forward(self.x, var_a=None, mu_w=self.weight.value, var_w=None,
                                           mu_b=self.bias.value, var_b=None)
        return y

    def backward(self, grad, input_grad=True):
        # with no prior variances the "deltas" are the unscaled sums: x^T g and sum_b g
        self.weight.grad, _, self.bias.grad, _ = self.backend.linear_param_deltas(
            self.x, grad, delta_var=None, var_w=None, var_b=None)
        if not input_grad:
            return None
        grad_x, _ = self.backend.linear_backward(grad, delta_var=None, mu_w=self.weight.value)
        return grad_x.reshape((grad.shape[0],) + self.in_shape)
