"""Backward innovations of a one-hidden-layer net against the RTS smoother written out by hand.

For x -> Z1 = W1 x + b1 -> A1 = ReLU(Z1) -> Z2 = W2 A1 + b2 with observed outputs y:
the output posterior is the Kalman update of Z2; the hidden posterior follows the
RTS step mu_Z1|y = mu_Z1 + sum_k C_ik / var_Z2k * (mu_Z2k|y - mu_Z2k) with
C_ik = Cov(Z1_i, Z2_k) = var_Z1i * J_i * mu_W2[k, i] (outputs treated as independent),
and the first layer's weights then move by Cov(W1, Z1) = var_W1 * x times the hidden
innovation (mu_Z1|y - mu_Z1) / var_Z1. Everything below is computed by hand from the
prior parameters and compared with the parameter deltas the network stores.
"""
import numpy as np

from tagi import nn


def test_hidden_innovations_follow_rts(rng):
    n_in, n_hid, n_out, sigma_v = 4, 6, 3, 0.7
    net = nn.Sequential(nn.Linear(n_in, n_hid), nn.ReLU(), nn.Linear(n_hid, n_out),
                        input_shape=(n_in,), dtype="float64", seed=11)
    first, second = net.layers[0], net.layers[2]
    w1m, w1v, b1m, b1v = (first.params()[k].copy() for k in ("mu_w", "var_w", "mu_b", "var_b"))
    w2m, w2v, b2m, b2v = (second.params()[k].copy() for k in ("mu_w", "var_w", "mu_b", "var_b"))
    x = rng.standard_normal((1, n_in))
    y = rng.standard_normal((1, n_out))

    mu, var = net.forward(x)
    net.backward(*nn.gaussian_innovations(mu, var, y, sigma_v))

    # forward moments by hand
    mz1 = w1m @ x[0] + b1m
    vz1 = w1v @ x[0] ** 2 + b1v
    jac = (mz1 > 0).astype(float)
    ma1, va1 = mz1 * jac, vz1 * jac
    mz2 = w2m @ ma1 + b2m
    vz2 = (w2m ** 2 + w2v) @ va1 + w2v @ ma1 ** 2 + b2v
    # output posterior (Kalman) and hidden posterior (RTS)
    gain = vz2 / (vz2 + sigma_v ** 2)
    mz2_post = mz2 + gain * (y[0] - mz2)
    vz2_post = vz2 - gain * vz2
    cov = (vz1 * jac)[:, None] * w2m.T                    # (n_hid, n_out)
    mz1_post = mz1 + cov @ ((mz2_post - mz2) / vz2)
    vz1_post = vz1 + (cov ** 2) @ ((vz2_post - vz2) / vz2 ** 2)
    # first-layer parameter deltas from the hidden innovations
    delta_mu_z1 = np.where(vz1 > 0, (mz1_post - mz1) / vz1, 0)
    delta_var_z1 = np.where(vz1 > 0, (vz1_post - vz1) / vz1 ** 2, 0)
    dmu_w, dvar_w, dmu_b, dvar_b = first.deltas
    np.testing.assert_allclose(dmu_w, w1v * np.outer(delta_mu_z1, x[0]), atol=1e-12)
    np.testing.assert_allclose(dvar_w, w1v ** 2 * np.outer(delta_var_z1, x[0] ** 2), atol=1e-12)
    np.testing.assert_allclose(dmu_b, b1v * delta_mu_z1, atol=1e-12)
    np.testing.assert_allclose(dvar_b, b1v ** 2 * delta_var_z1, atol=1e-12)
    # and the output layer's deltas from the output posterior
    np.testing.assert_allclose(second.deltas[0], w2v * np.outer((mz2_post - mz2) / vz2, ma1), atol=1e-12)
    assert np.any(jac == 0) and np.any(jac == 1), "the case should have active and inactive units"

