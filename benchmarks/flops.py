"""FLOP counts of the TAGI ops, from the layer geometry (docs/design.md §4, docs/math.md §3-§6).

Only the products are counted: a multiply-add is 2 FLOPs, and each op costs
as many products of the plain mean pass as it has matrix products (the
reference backend's GEMMs). Elementwise work (squares, biases, ReLU, the
capped update) is left out; it is memory-bound and small beside the products.
Average pooling has no products: it counts one FLOP per window cell per
moment. Every counter returns FLOPs per image; multiply by the batch size.
"""
from dataclasses import dataclass

from tagi import nn


def conv2d_macs(g, out_channels):
    """Multiply-adds of a plain conv forward pass per image: Co * Ho * Wo * C * K**2."""
    return out_channels * g.out_height * g.out_width * g.patch_size


def linear_macs(in_features, out_features):
    """Multiply-adds of a plain linear forward pass per image: N_out * N_in."""
    return in_features * out_features


def conv2d_forward(g, out_channels, var_in=True):
    """mu_W*mu_a, var_W*mu_a**2, and (mu_W**2 + var_W)*var_a unless the input is exact."""
    return 2 * conv2d_macs(g, out_channels) * (3 if var_in else 2)


def conv2d_backward(g, out_channels):
    """The transposed correlations mu_W*delta_mu and mu_W**2*delta_var."""
    return 2 * conv2d_macs(g, out_channels) * 2


def conv2d_param_deltas(g, out_channels):
    """Sums over batch and positions of mu_a*delta_mu and mu_a**2*delta_var."""
    return 2 * conv2d_macs(g, out_channels) * 2


def linear_forward(in_features, out_features, var_in=True):
    """mu_W*mu_a, var_W*mu_a**2, and (mu_W**2 + var_W)*var_a unless the input is exact."""
    return 2 * linear_macs(in_features, out_features) * (3 if var_in else 2)


def linear_backward(in_features, out_features):
    """delta_mu @ mu_W and delta_var @ mu_W**2."""
    return 2 * linear_macs(in_features, out_features) * 2


def linear_param_deltas(in_features, out_features):
    """Sums over the batch of mu_a*delta_mu and mu_a**2*delta_var."""
    return 2 * linear_macs(in_features, out_features) * 2


def avgpool2d_forward(g, var_in=True):
    """Window sums of the means, and of the variances unless the input is exact."""
    return g.channels * g.out_height * g.out_width * g.kernel ** 2 * (2 if var_in else 1)


def avgpool2d_backward(g):
    """Each output innovation (mean and variance) spread over its window's cells."""
    return g.channels * g.out_height * g.out_width * g.kernel ** 2 * 2


COUNTERS = {
    "conv2d": {"forward": conv2d_forward, "backward": conv2d_backward,
               "param_deltas": conv2d_param_deltas},
    "linear": {"forward": linear_forward, "backward": linear_backward,
               "param_deltas": linear_param_deltas},
    "avgpool2d": {"forward": avgpool2d_forward, "backward": avgpool2d_backward},
}

# layer class -> (op family: the backend's op-name prefix, short name of its layers)
FAMILIES = {nn.Conv2d: ("conv2d", "conv"), nn.Linear: ("linear", "fc"),
            nn.AvgPool2d: ("avgpool2d", "pool")}


@dataclass(frozen=True)
class LayerOps:
    """One layer of a built network, and the ops a TAGI training step runs on it.

    ``var_in`` is False for the first layer (the network input is exact);
    ``input_delta`` is False for the first parametric layer and those before it
    (no innovations flow into the input).
    """

    name: str         # conv1, pool1, fc1, ...
    family: str       # conv2d | linear | avgpool2d
    layer: object
    var_in: bool
    input_delta: bool
    out_shape: tuple

    @property
    def ops(self):
        """The op names a training step runs here: forward, backward, param_deltas."""
        return tuple(op for op in COUNTERS[self.family]
                     if op != "backward" or self.input_delta)

    @property
    def shape_args(self):
        """The counters' size arguments: (geometry, out_channels), (in, out) or (geometry,)."""
        layer = self.layer
        if self.family == "conv2d":
            return layer.geom, layer.out_channels
        if self.family == "linear":
            return layer.in_features, layer.out_features
        return (layer.geom,)


def layer_ops(net):
    """The conv, linear and pooling layers of a built ``Sequential``, in order (activations skipped)."""
    first_parametric = next((i for i, layer in enumerate(net.layers) if layer.has_params),
                            len(net.layers))
    out_shapes = [layer.in_shape for layer in net.layers[1:]] + [net.output_shape]
    counts, found = {}, []
    for index, layer in enumerate(net.layers):
        if type(layer) not in FAMILIES:
            continue
        family, short = FAMILIES[type(layer)]
        counts[short] = counts.get(short, 0) + 1
        found.append(LayerOps(f"{short}{counts[short]}", family, layer,
                              var_in=not (index == 0 and first_parametric == 0),
                              input_delta=index > first_parametric,
                              out_shape=tuple(out_shapes[index])))
    return found


def op_flops(spec, op):
    """FLOPs per image of ``op`` ("forward", "backward" or "param_deltas") on the layer ``spec``."""
    count = COUNTERS[spec.family][op]
    if op == "forward":
        return count(*spec.shape_args, var_in=spec.var_in)
    return count(*spec.shape_args)


def plain_forward_macs(net):
    """Multiply-adds per image of a plain (point-weight) forward pass: docs/design.md's 12.36 M."""
    total = 0
    for spec in layer_ops(net):
        if spec.family == "conv2d":
            total += conv2d_macs(*spec.shape_args)
        elif spec.family == "linear":
            total += linear_macs(*spec.shape_args)
    return total


def train_step_flops(net):
    """FLOPs per image of a TAGI training step: every layer's forward, backward and deltas."""
    return sum(op_flops(spec, op) for spec in layer_ops(net) for op in spec.ops)


def inference_flops(net):
    """FLOPs per image of a TAGI forward pass (means and variances)."""
    return sum(op_flops(spec, "forward") for spec in layer_ops(net))

