"""Architectures described once, as data, and built into a network of any method.

An architecture is a list of layer entries ``{"type": "Conv2d", **kwargs}``;
the keyword arguments are those of the layer class. The output layer's size is
written ``"outputs"``: the method fills it in (11 for TAGI's hierarchical
softmax over 10 classes, 10 for a BP softmax).
"""
import copy

OUTPUTS = "outputs"

_POOL = {"type": "AvgPool2d", "kernel_size": 3, "stride": 2, "padding": 1,
         "padding_type": "bottom_right"}

ARCHITECTURES = {
    # math doc §9: the network behind the published 52.71 % / 29.66 % CIFAR-10 table
    "cifar10_3conv": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 32, "kernel_size": 5, "padding": 2},
            {"type": "ReLU"}, _POOL,
            {"type": "Conv2d", "in_channels": 32, "out_channels": 32, "kernel_size": 5, "padding": 2},
            {"type": "ReLU"}, _POOL,
            {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 5, "padding": 2},
            {"type": "ReLU"}, _POOL,
            {"type": "Linear", "in_features": 1024, "out_features": 64},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 64, "out_features": OUTPUTS},
        ],
    },
}


def architecture(name):
    """A deep copy of the named architecture: {"input_shape": ..., "layers": [...]}."""
    if name not in ARCHITECTURES:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES)}")
    return copy.deepcopy(ARCHITECTURES[name])


def build_layers(layers, num_outputs, namespace):
    """Layer entries -> layer objects taken from ``namespace`` (a module such as ``tagi.nn``)."""
    built = []
    for position, entry in enumerate(layers):
        kwargs = dict(entry)
        kind = kwargs.pop("type", None)
        cls = getattr(namespace, str(kind), None)
        if not isinstance(cls, type):
            raise ValueError(f"layer {position}: type {kind!r} is not a layer of "
                             f"{namespace.__name__}")
        kwargs = {key: num_outputs if value == OUTPUTS else value for key, value in kwargs.items()}
        try:
            built.append(cls(**kwargs))
        except TypeError as err:
            raise ValueError(f"layer {position} ({kind}): {err}") from err
    return built


def tagi_network(spec, num_outputs, **options):
    """A ``tagi.nn.Sequential`` from an architecture spec; options go to Sequential (backend, seed, ...)."""
    from . import nn
    return nn.Sequential(*build_layers(spec["layers"], num_outputs, nn),
                         input_shape=tuple(spec["input_shape"]), **options)
