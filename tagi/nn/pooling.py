"""Average pooling (math doc §3.4, §5.4): the divisor is K**2 (K**4 for variances), padding included."""
from ..layer_shapes import Pool2dShape
from .layer import Layer


class AvgPool2d(Pool2dShape, Layer):
    """(B, C, H, W) -> (B, C, Ho, Wo); ``stride`` defaults to ``kernel_size``."""

    def forward(self, mu, var):
        return self.backend.avgpool2d_forward(mu, var, self.geom)

    def backward(self, delta_mu, delta_var, input_delta=True):
        if not input_delta:
            return None, None
        return self.backend.avgpool2d_backward(delta_mu, delta_var, self.geom)
