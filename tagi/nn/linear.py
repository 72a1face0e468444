"""Fully connected TAGI layer (math doc §3.2, §5.2, §6.1)."""
from ..layer_shapes import LinearShape
from .layer import ParametricLayer


class Linear(LinearShape, ParametricLayer):
    """z = W a + b with Gaussian W (out_features, in_features) and b (out_features,).

    An image input (C, H, W) is read flattened in (C, H, W) order; ``in_features``
    must equal C*H*W. Forward takes (B, *in_shape) and returns (B, out_features).
    ``init_method`` ("He" or "Xavier"), ``gain_w`` and ``gain_b`` set the prior (math doc §2.1).
    """

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
