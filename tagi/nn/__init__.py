"""TAGI layers, networks and output heads.

    from tagi import nn
    net = nn.Sequential(nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(), ...,
                        input_shape=(3, 32, 32), backend="numpy", seed=0)
    head = nn.HierarchicalSoftmax(num_classes=10)
"""
from .activations import LeakyReLU, MixtureLeakyReLU, MixtureReLU, ReLU
from .conv2d import Conv2d
from .head import HierarchicalSoftmax, gaussian_innovations
from .layer import Layer, ParametricLayer
from .linear import Linear
from .pooling import AvgPool2d, MaxPool2d
from .sequential import Sequential, default_cap_factor

__all__ = ["AvgPool2d", "Conv2d", "HierarchicalSoftmax", "Layer", "LeakyReLU", "Linear", "MaxPool2d",
           "MixtureLeakyReLU", "MixtureReLU", "ParametricLayer", "ReLU", "Sequential",
           "default_cap_factor", "gaussian_innovations"]
