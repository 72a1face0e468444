"""Activations a = f(z) of a Gaussian hidden state z (docs/math.md §3.5).

Each returns the moments of a and keeps its Jacobian J = Cov(A, Z) / var_z for
the backward pass, which maps the innovations of a to those of z:

    delta_mu_z = J * delta_mu_a,  delta_var_z = J**2 * delta_var_a

- ``ReLU``, linearised (the published CNN results): mu_a = max(mu_z, 0);
  J = 1 and var_a = var_z where mu_z > 0, else J = 0 and var_a = 0.
- ``MixtureReLU``, the exact moments of max(0, Z): with s = sqrt(var_z),
  alpha = mu_z / s, mu_a = mu_z Phi(alpha) + s phi(alpha),
  var_a = (mu_z**2 + var_z) Phi(alpha) + mu_z s phi(alpha) - mu_a**2, J = Phi(alpha).
- ``LeakyReLU(negative_slope)``, linearised like ``ReLU``: J = 1 where mu_z > 0, else
  negative_slope; mu_a = J mu_z, var_a = J**2 var_z. Exact where |mu_z| >> sd_z; otherwise it
  drops the kink's curvature: for mu_z = 0 the true mean is (1 - slope) sd_z / sqrt(2 pi), the
  rule's 0.
- ``MixtureLeakyReLU(negative_slope)``, the exact moments of max(Z, 0) + slope * min(Z, 0),
  through A = (1 - slope) max(0, Z) + slope Z: mu_a = (1 - slope) m + slope mu_z,
  var_a = (1 - slope)**2 v + (slope**2 + 2 slope (1 - slope) Phi(alpha)) var_z, with m, v the
  MixtureReLU moments, and J = slope + (1 - slope) Phi(alpha).
"""
from ..checks import check_number
from .layer import Layer


class _Activation(Layer):
    """An activation's backward: scale the innovations by its Jacobian (``backend.scale_by_jacobian``)."""

    def forward(self, mu, var):
        mu_a, var_a, self.jac = self.moments(mu, var)
        return mu_a, var_a

    def backward(self, delta_mu, delta_var, input_delta=True):
        if not input_delta:
            return None, None
        return self.backend.scale_by_jacobian(delta_mu, delta_var, self.jac)


class ReLU(_Activation):
    """Locally linearised ReLU: J is 1 where mu_z > 0, else 0."""

    def moments(self, mu, var):
        return self.backend.relu_forward(mu, var)


class MixtureReLU(_Activation):
    """Exact mean and variance of max(0, Z) for Gaussian Z; J = Phi(mu_z / sd_z)."""

    def moments(self, mu, var):
        return self.backend.mixture_relu_forward(mu, var)


class _Leaky(_Activation):
    """An activation with a slope for z < 0: a finite number (ValueError otherwise)."""

    def __init__(self, negative_slope=0.01):
        self.negative_slope = check_number("negative_slope", negative_slope)

    def __repr__(self):
        return f"{type(self).__name__}(negative_slope={self.negative_slope})"


class LeakyReLU(_Leaky):
    """Locally linearised leaky ReLU: J is 1 where mu_z > 0, else negative_slope."""

    def moments(self, mu, var):
        return self.backend.leaky_relu_forward(mu, var, self.negative_slope)


class MixtureLeakyReLU(_Leaky):
    """Exact mean and variance of max(Z, 0) + negative_slope * min(Z, 0) for Gaussian Z."""

    def moments(self, mu, var):
        return self.backend.mixture_leaky_relu_forward(mu, var, self.negative_slope)
