"""Backprop baseline: point-weight layers on the same geometry and backend ops as the TAGI engine.

    from tagi import bp
    net = bp.Sequential(bp.Conv2d(3, 32, 5, padding=2), bp.ReLU(), bp.MaxPool2d(2), ...,
                        input_shape=(3, 32, 32), backend="numpy", seed=0)

Linear, Conv2d, AvgPool2d and ReLU run the TAGI mean pass (backend ops with
``None`` variances) forward and its transposed products backward; MaxPool2d,
LeakyReLU, Dropout and the softmax cross-entropy are BP only, on ``backend.xp``.
"""
from .activations import LeakyReLU, ReLU
from .conv2d import Conv2d
from .dropout import Dropout
from .layer import INIT_METHODS, Layer, ParametricLayer, Parameter
from .linear import Linear
from .loss import log_softmax, softmax_cross_entropy
from .pooling import AvgPool2d, MaxPool2d
from .sequential import Sequential

__all__ = ["INIT_METHODS", "AvgPool2d", "Conv2d", "Dropout", "Layer", "LeakyReLU", "Linear",
           "MaxPool2d", "ParametricLayer", "Parameter", "ReLU", "Sequential", "log_softmax",
           "softmax_cross_entropy"]
