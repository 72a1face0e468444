"""2-D convolution TAGI layer (math doc §3.3, §5.3, §6.1): a cross-correlation, no kernel flip."""
from ..layer_shapes import Conv2dShape
from .layer import ParametricLayer


class Conv2d(Conv2dShape, ParametricLayer):
    """Gaussian weights (out_channels, in_channels, k, k) and biases (out_channels,).

    Forward takes (B, in_channels, H, W) and returns (B, out_channels, Ho, Wo).
    ``padding_type`` is "symmetric" (PyTorch-like) or "bottom_right" (cuTAGI type 2);
    ``init_method``, ``gain_w`` and ``gain_b`` set the prior (math doc §2.1).
    """

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
