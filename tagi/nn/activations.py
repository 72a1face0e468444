"""Activations (math doc §3.5). Each keeps its Jacobian J = Cov(A, Z) / var_z for the backward pass."""
from .layer import Layer


class _Activation(Layer):
    def forward(self, mu, var):
        mu_a, var_a, self.jac = self.moments(mu, var)
        return mu_a, var_a

    def backward(self, delta_mu, delta_var, input_delta=True):
        if not input_delta:
            return None, None
        return self.backend.scale_by_jacobian(delta_mu, delta_var, self.jac)


class ReLU(_Activation):
    """Locally linearised ReLU (used for the published CNN results): J is 1 where mu_z > 0, else 0."""

    def moments(self, mu, var):
        return self.backend.relu_forward(mu, var)


class MixtureReLU(_Activation):
    """Exact mean and variance of max(0, Z) for Gaussian Z; J = Phi(mu_z / sd_z)."""

    def moments(self, mu, var):
        return self.backend.mixture_relu_forward(mu, var)
