"""Fully connected TAGI layer: z = W a + b with Gaussian W and b (docs/math.md §3.2, §5.2, §6.1).

Forward, for sample b and output unit i (W: (N_out, N_in), inputs (B, N_in)):

    mu_z[b, i]  = sum_j mu_w[i, j] mu_a[b, j] + mu_b[i]
    var_z[b, i] = sum_j ((mu_w[i, j]**2 + var_w[i, j]) var_a[b, j]
                         + var_w[i, j] mu_a[b, j]**2) + var_b[i]

Backward (innovations of the input, with the prior means; the activation that
produced the input applies its Jacobian):

    delta_mu_a = delta_mu_z @ mu_w,  delta_var_a = delta_var_z @ mu_w**2

Parameter deltas, summed over the batch, applied by ``step`` (docs/math.md §6.2):

    delta_mu_w = var_w * (delta_mu_z.T @ mu_a),  delta_var_w = var_w**2 * (delta_var_z.T @ mu_a**2)
    delta_mu_b = var_b * sum_b delta_mu_z,       delta_var_b = var_b**2 * sum_b delta_var_z
"""
from ..shapes import linear_shapes
from .layer import ParametricLayer


class Linear(ParametricLayer):
    """Gaussian W (out_features, in_features) and b (out_features,).

    An image input (C, H, W) is read flattened in (C, H, W) order; ``in_features``
    must equal C*H*W. Forward takes (B, *in_shape) and returns (B, out_features).
    ``init_method`` ("He" or "Xavier"), ``gain_w`` and ``gain_b`` set the prior (docs/math.md §2.1).
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
