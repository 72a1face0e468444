"""Architectures described once, as data, and built into a network of any method.

An architecture is a list of layer entries ``{"type": "Conv2d", **kwargs}``;
the keyword arguments are those of the layer class. The output layer's size is
written ``"outputs"``: the method fills it in (11 for TAGI's hierarchical
softmax over 10 classes, 10 for a BP softmax).

``PARAMETERISED`` holds the architectures built from a parameter (the PyTorch
tutorial's width sweep: ``architecture("pytorch_tutorial_width", width=90)``).

Every architecture builds with either method; ``tagi_network`` leaves out the
``Dropout`` entries (of ``cnn4_leaky_dropout``), which have no TAGI counterpart, and
logs so. A Linear reads a conv map flattened in (C, H, W) order, so no Flatten
entry is needed.
"""
import copy
import logging

from .checks import check_choice

log = logging.getLogger(__name__)

OUTPUTS = "outputs"

_POOL = {"type": "AvgPool2d", "kernel_size": 3, "stride": 2, "padding": 1,
         "padding_type": "bottom_right"}

ARCHITECTURES = {
    # docs/math.md §9: the network behind the published 52.71 % / 29.66 % CIFAR-10 table
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
    # the PyTorch "Training a classifier" CIFAR-10 tutorial: 32 -> 28 -> 14 -> 10 -> 5
    "pytorch_tutorial": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 6, "kernel_size": 5},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 6, "out_channels": 16, "kernel_size": 5},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Linear", "in_features": 16 * 5 * 5, "out_features": 120},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 120, "out_features": 84},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 84, "out_features": OUTPUTS},
        ],
    },
    # the TensorFlow/Keras "Convolutional Neural Network" CIFAR-10 tutorial: 32 -> 30 -> 15 -> 13 -> 6 -> 4
    "keras_tutorial": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 32, "kernel_size": 3},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 64, "out_channels": 64, "kernel_size": 3},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 64 * 4 * 4, "out_features": 64},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 64, "out_features": OUTPUTS},
        ],
    },
    # 4 conv layers 16-32-32-64, 3x3 "same", LeakyReLU(0.1), a max-pool and dropout after
    # each pair, FC 256: 32 -> 16 -> 8. The source's first conv has activation="relu" and then
    # LeakyReLU(0.1), which passes ReLU's output unchanged: ReLU here. Its source also puts a
    # LeakyReLU(0.1) between the 10 outputs and the softmax; left out (both methods read the
    # last Linear's outputs: BP's softmax, TAGI's hierarchical softmax)
    "cnn4_leaky_dropout": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 16, "kernel_size": 3, "padding": 1},
            {"type": "ReLU"},
            {"type": "Conv2d", "in_channels": 16, "out_channels": 32, "kernel_size": 3, "padding": 1},
            {"type": "LeakyReLU", "negative_slope": 0.1},
            {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Dropout", "p": 0.25},
            {"type": "Conv2d", "in_channels": 32, "out_channels": 32, "kernel_size": 3, "padding": 1},
            {"type": "LeakyReLU", "negative_slope": 0.1},
            {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3, "padding": 1},
            {"type": "LeakyReLU", "negative_slope": 0.1},
            {"type": "MaxPool2d", "kernel_size": 2}, {"type": "Dropout", "p": 0.25},
            {"type": "Linear", "in_features": 64 * 8 * 8, "out_features": 256},
            {"type": "LeakyReLU", "negative_slope": 0.1}, {"type": "Dropout", "p": 0.5},
            {"type": "Linear", "in_features": 256, "out_features": OUTPUTS},
        ],
    },
    # the "regular NN vs CNN" CIFAR-10 comparison: its fully connected net on the flattened image ...
    "fc_3072_128": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Linear", "in_features": 3 * 32 * 32, "out_features": 128},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 128, "out_features": OUTPUTS},
        ],
    },
    # ... and its small CNN: two 3x3 convs 32, 64 ("valid"), a max-pool after each, FC 128:
    # 32 -> 30 -> 15 -> 13 -> 6
    "cnn_32_64": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 32, "kernel_size": 3},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Linear", "in_features": 64 * 6 * 6, "out_features": 128},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 128, "out_features": OUTPUTS},
        ],
    },
    # the PyTorch tutorial's LeNet with a third conv layer and wider FC layers (its variant
    # "3 convolutional layers - 3 fully connected layers"): 5x5 convs 100-180-240, a max-pool
    # after the first two, FC 240-100-200: 32 -> 28 -> 14 -> 10 -> 5 -> 1
    "pytorch_tutorial_3conv": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 100, "kernel_size": 5},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 100, "out_channels": 180, "kernel_size": 5},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 180, "out_channels": 240, "kernel_size": 5},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 240 * 1 * 1, "out_features": 100},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 100, "out_features": 200},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 200, "out_features": OUTPUTS},
        ],
    },
    # ... and with four: convs 100 (3x3), 180 (3x3), 240 (2x2), 300 (2x2), a max-pool after the
    # first three, FC 300-100-200: 32 -> 30 -> 15 -> 13 -> 6 -> 5 -> 2 -> 1
    "pytorch_tutorial_4conv": {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": 100, "kernel_size": 3},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 100, "out_channels": 180, "kernel_size": 3},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 180, "out_channels": 240, "kernel_size": 2},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": 240, "out_channels": 300, "kernel_size": 2},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 300 * 1 * 1, "out_features": 100},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 100, "out_features": 200},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 200, "out_features": OUTPUTS},
        ],
    },
}


def _pytorch_tutorial_width(width):
    """The PyTorch tutorial's LeNet widened (its width sweep): conv ``width`` 5x5 -> ReLU ->
    max-pool 2 -> conv 200 5x5 -> ReLU -> max-pool 2 -> FC 5000-100-84: 32 -> 28 -> 14 -> 10 -> 5."""
    return {
        "input_shape": (3, 32, 32),
        "layers": [
            {"type": "Conv2d", "in_channels": 3, "out_channels": width, "kernel_size": 5},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Conv2d", "in_channels": width, "out_channels": 200, "kernel_size": 5},
            {"type": "ReLU"}, {"type": "MaxPool2d", "kernel_size": 2},
            {"type": "Linear", "in_features": 200 * 5 * 5, "out_features": 100},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 100, "out_features": 84},
            {"type": "ReLU"},
            {"type": "Linear", "in_features": 84, "out_features": OUTPUTS},
        ],
    }


# name -> (builder, the parameters it takes, each a positive integer)
PARAMETERISED = {"pytorch_tutorial_width": (_pytorch_tutorial_width, ("width",))}


def architecture(name, **params):
    """The named architecture, {"input_shape": ..., "layers": [...]}: a deep copy of a fixed one
    (which takes no ``params``), or one of ``PARAMETERISED`` built from its ``params``."""
    if name in ARCHITECTURES:
        if params:
            raise ValueError(f"architecture {name!r} takes no parameters, got {sorted(params)}")
        return copy.deepcopy(ARCHITECTURES[name])
    if name not in PARAMETERISED:
        raise KeyError(f"unknown architecture {name!r}; known: {sorted(ARCHITECTURES) + sorted(PARAMETERISED)}")
    build, takes = PARAMETERISED[name]
    if set(params) != set(takes):
        raise ValueError(f"architecture {name!r} takes the parameters {list(takes)}, got {sorted(params)}")
    for key in takes:
        value = params[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"architecture {name!r}: {key} must be a positive integer, got {value!r}")
    return build(**params)


def _layer_class(namespace, kind):
    """The class ``namespace.<kind>`` if it is a layer (a subclass of ``namespace.Layer``), else None."""
    cls = getattr(namespace, str(kind), None)
    return cls if isinstance(cls, type) and issubclass(cls, namespace.Layer) else None


def build_layers(layers, num_outputs, namespace, omit=()):
    """Layer entries -> layer objects taken from ``namespace`` (a module such as ``tagi.nn``),
    leaving out the entries whose type is in ``omit``.

    Every layer type the namespace lacks is named in one error, with its positions in
    ``layers``, before anything is built.
    """
    missing = {}
    for position, entry in enumerate(layers):
        if entry.get("type") not in omit and _layer_class(namespace, entry.get("type")) is None:
            missing.setdefault(repr(entry.get("type")), []).append(position)
    if missing:
        listed = "; ".join(f"{kind} (layer{'s' if len(at) > 1 else ''} {', '.join(map(str, at))})" for kind, at in missing.items())
        known = sorted(name for name in dir(namespace) if _layer_class(namespace, name)
                       and not name.startswith("_") and not name.endswith("Layer"))
        raise ValueError(f"{namespace.__name__} has no layer of type {listed}; "
                         f"its layers are {', '.join(known)}")
    built = []
    for position, entry in enumerate(layers):
        if entry.get("type") in omit:
            continue
        kwargs = dict(entry)
        kind = kwargs.pop("type")
        cls = _layer_class(namespace, kind)
        kwargs = {key: num_outputs if value == OUTPUTS else value for key, value in kwargs.items()}
        try:
            built.append(cls(**kwargs))
        except TypeError as err:
            raise ValueError(f"layer {position} ({kind}): {err}") from err
    return built


# BP layers TAGI leaves out: dropout regularises point weights; TAGI's weights are Gaussians
# whose variances already carry the parameter uncertainty, and it has no dropout of its own
TAGI_OMITS = ("Dropout",)


def tagi_network(spec, num_outputs, **options):
    """A ``tagi.nn.Sequential`` from an architecture spec; options go to Sequential (backend, seed, ...).

    Entries of a type in ``TAGI_OMITS`` are left out, and the log says which.
    """
    from . import nn
    omitted = [f"{position} ({entry['type']})" for position, entry in enumerate(spec["layers"])
               if entry.get("type") in TAGI_OMITS]
    if omitted:
        log.info("TAGI leaves out layer%s %s: TAGI has no dropout, its Gaussian weights already "
                 "carry the parameter uncertainty", "s" if len(omitted) > 1 else "", ", ".join(omitted))
    return nn.Sequential(*build_layers(spec["layers"], num_outputs, nn, omit=TAGI_OMITS),
                         input_shape=tuple(spec["input_shape"]), **options)


def bp_network(spec, num_classes, init_method=None, **options):
    """A ``tagi.bp.Sequential`` with ``num_classes`` softmax outputs from an architecture spec;
    options go to Sequential (backend, dtype, seed).

    ``init_method`` (one of ``tagi.bp.INIT_METHODS``) initialises every layer with parameters
    whose entry names none; None leaves each layer's default ("He").
    """
    from . import bp
    layers = spec["layers"]
    if init_method is not None:
        check_choice("init_method", init_method, bp.INIT_METHODS)
        layers = [{"init_method": init_method, **entry}
                  if (_layer_class(bp, entry.get("type")) or bp.Layer).has_params else entry
                  for entry in layers]
    return bp.Sequential(*build_layers(layers, num_classes, bp),
                         input_shape=tuple(spec["input_shape"]), **options)
