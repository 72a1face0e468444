"""Activations a = f(z) of a Gaussian hidden state z (docs/math.md §3.5).

Each returns the moments of a and keeps its Jacobian J = Cov(A, Z) / var_z for
the backward pass, which maps the innovations of a to those of z:

    delta_mu_z = J * delta_mu_a,  delta_var_z = J**2 * delta_var_a

- ``ReLU``, linearised (the published CNN results): mu_a = max(mu_z, 0);
  J = 1 and var_a = var_z where mu_z > 0, else J = 0 and var_a = 0.
- ``MixtureReLU``, the exact moments of max(0, Z): with s = sqrt(var_z),
  alpha = mu_z / s, mu_a = mu_z Phi(alpha) + s phi(alpha),
  var_a = (mu_z**2 + var_z) Phi(alpha) + mu_z s phi(alpha) - mu_a**2, J = Phi(alpha).
"""
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
