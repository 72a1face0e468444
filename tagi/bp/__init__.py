"""Backprop baseline: point-weight layers on the same geometry and backend ops as the TAGI engine.

    from tagi import bp
    net = bp.Sequential(bp.Conv2d(3, 32, 5, padding=2), bp.ReLU(), bp.MaxPool2d(2), ...,
                        input_shape=(3, 32, 32), backend="numpy", seed=0)
    optimizer = bp.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    schedule = bp.CosineLR(0.05, epochs=30)

Linear, Conv2d, AvgPool2d and ReLU run the TAGI mean pass (backend ops with
``None`` variances) forward and its transposed products backward; MaxPool2d,
LeakyReLU, Dropout and the softmax cross-entropy are BP only, on ``backend.xp``.
The training loop is ``tagi.bp.loop``.
"""
from .activations import LeakyReLU, ReLU
from .conv2d import Conv2d
from .dropout import Dropout
from .layer import INIT_METHODS, Layer, ParametricLayer, Parameter
from .linear import Linear
from .loss import log_softmax, softmax_cross_entropy
from .optim import OPTIMIZERS, SGD, Adam, Adamax, make_optimizer
from .pooling import AvgPool2d, MaxPool2d
from .schedules import SCHEDULES, ConstantLR, CosineLR, ExponentialLR, StepLR, make_schedule
from .sequential import Sequential

__all__ = ["INIT_METHODS", "OPTIMIZERS", "SCHEDULES", "Adam", "Adamax", "AvgPool2d", "ConstantLR", "Conv2d",
           "CosineLR", "Dropout", "ExponentialLR", "Layer", "LeakyReLU", "Linear", "MaxPool2d", "ParametricLayer",
           "Parameter", "ReLU", "SGD", "Sequential", "StepLR", "log_softmax", "make_optimizer",
           "make_schedule", "softmax_cross_entropy"]
