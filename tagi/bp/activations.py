"""Elementwise layers y = J(x) * x, whose backward is dL/dx = J * dL/dy (backend ``scale_by_jacobian``).

ReLU is the TAGI mean pass (backend ``relu_forward``); LeakyReLU is BP only, on ``backend.xp``.
"""
from ..checks import check_number
from .layer import Layer


class _Elementwise(Layer):
    """Keeps the Jacobian J (like x) of its last forward for the backward pass."""

    def backward(self, grad, input_grad=True):
        if not input_grad:
            return None
        grad_x, _ = self.backend.scale_by_jacobian(grad, delta_var=None, jac=self.jac)
        return grad_x


class ReLU(_Elementwise):
    """max(0, x); J is 1 where x > 0, else 0."""

    def forward(self, x, training=False):
        y, _, self.jac = self.backend.relu_forward(x, var_z=None)
        return y


class LeakyReLU(_Elementwise):
    """x where x > 0, else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        self.negative_slope = check_number("negative_slope", negative_slope)

    def __repr__(self):
        return f"LeakyReLU(negative_slope={self.negative_slope})"

    def forward(self, x, training=False):
        self.jac = self.backend.xp.where(x > 0, 1.0, self.negative_slope).astype(x.dtype)
        return x * self.jac
