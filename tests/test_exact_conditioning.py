"""TAGI is exact for a linear layer with one observation: y = w.x + b + v, x known.

The exact posterior of theta = (w, b) under N(mu, diag(var)) prior is the Kalman
update with h = (x, 1): mean mu + var*h*(y - h.mu)/S, variance var - (var*h)**2/S,
S = h.(var*h) + sigma_v**2. TAGI must give these marginals to float64 round-off.
"""
import numpy as np
import pytest

from tagi import nn


@pytest.mark.parametrize("n_in, sigma_v", [(1, 0.5), (5, 1.0), (12, 0.1)])
def test_linear_layer_posterior_is_exact(rng, n_in, sigma_v):
    net = nn.Sequential(nn.Linear(n_in, 1), input_shape=(n_in,), dtype="float64", seed=3,
                        cap_factor=1e-30)                       # bound sqrt(var)/cap never binds
    layer = net.layers[0]
    prior = {k: v.copy() for k, v in layer.params().items()}
    x = rng.standard_normal((1, n_in))
    y = np.array([[rng.standard_normal() * 2.0]])

    mu, var = net.forward(x)
    net.backward(*nn.gaussian_innovations(mu, var, y, sigma_v))
    net.step()

    h = np.concatenate([x[0], [1.0]])
    m0 = np.concatenate([prior["mu_w"][0], prior["mu_b"]])
    v0 = np.concatenate([prior["var_w"][0], prior["var_b"]])
    s = h @ (v0 * h) + sigma_v ** 2
    mean = m0 + v0 * h * (y[0, 0] - h @ m0) / s
    variance = v0 - (v0 * h) ** 2 / s
    np.testing.assert_allclose(np.concatenate([layer.mu_w[0], layer.mu_b]), mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.concatenate([layer.var_w[0], layer.var_b]), variance, rtol=0, atol=1e-10)
    # the predictive moments are the exact ones too
    np.testing.assert_allclose(mu[0, 0], h @ m0, atol=1e-12)
    np.testing.assert_allclose(var[0, 0], s - sigma_v ** 2, atol=1e-12)
