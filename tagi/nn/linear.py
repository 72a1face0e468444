"""Fully connected TAGI layer (math doc §3.2, §5.2, §6.1)."""
import math

from .layer import ParametricLayer


class Linear(ParametricLayer):
    """z = W a + b with Gaussian W (out_features, in_features) and b (out_features,).

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

    def forward(self, mu, var):
        batch = mu.shape[0]
        self.mu_a = mu.reshape(batch, -1)
        var_a = None if var is None else var.reshape(batch, -1)
        return self.backend.linear_forward(self.mu_a, var_a, self.mu_w, self.var_w,
                                           self.mu_b, self.var_b)

    def backward(self, delta_mu, delta_var, input_delta=True):
        self.deltas = self.backend.linear_param_deltas(self.mu_a, delta_mu, delta_var,
                                                       self.var_w, self.var_b)
        if not input_delta:
            return None, None
        d_mu, d_var = self.backend.linear_backward(delta_mu, delta_var, self.mu_w)
        shape = (delta_mu.shape[0],) + self.in_shape
        return d_mu.reshape(shape), d_var.reshape(shape)
