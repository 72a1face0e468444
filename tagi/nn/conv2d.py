"""2-D convolution TAGI layer: a cross-correlation (no kernel flip) with Gaussian weights
(docs/math.md §3.3, §5.3, §6.1).

Output (b, co, oy, ox) reads input cells (ci, iy, ix) with iy = oy*S + ky - p_top,
ix = ox*S + kx - p_left (``tagi.geometry``); padding cells have zero mean and variance:

    mu_z  = sum_{ci,ky,kx} mu_w mu_a + mu_b[co]
    var_z = sum_{ci,ky,kx} ((mu_w**2 + var_w) var_a + var_w mu_a**2) + var_b[co]

Backward is the transposed correlation of the innovations with mu_w (means) and
mu_w**2 (variances). Parameter deltas are summed over the batch and every output
position sharing a weight: delta_mu_w = var_w * sum mu_a delta_mu_z,
delta_var_w = var_w**2 * sum mu_a**2 delta_var_z; biases the same without mu_a.
"""
from ..shapes import conv2d_shapes
from .layer import ParametricLayer


class Conv2d(ParametricLayer):
    """Gaussian weights (out_channels, in_channels, k, k) and biases (out_channels,).

    Forward takes (B, in_channels, H, W) and returns (B, out_channels, Ho, Wo).
    ``padding_type`` is "symmetric" (PyTorch-like) or "bottom_right" (cuTAGI type 2);
    ``init_method``, ``gain_w`` and ``gain_b`` set the prior (docs/math.md §2.1).
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

    def forward(self, mu, var):
        self.mu_a = mu
        return self.backend.conv2d_forward(mu, var, self.mu_w, self.var_w,
                                           self.mu_b, self.var_b, self.geom)

    def backward(self, delta_mu, delta_var, input_delta=True):
        self.deltas = self.backend.conv2d_param_deltas(self.mu_a, delta_mu, delta_var,
                                                       self.var_w, self.var_b, self.geom)
        if not input_delta:
            return None, None
        return self.backend.conv2d_backward(delta_mu, delta_var, self.mu_w, self.geom)
