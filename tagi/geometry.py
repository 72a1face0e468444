"""Geometry of 2-D sliding windows (convolution and pooling), shared by TAGI and BP.

Output ``(oy, ox)`` of a window reads input rows ``oy*stride + ky - pad_begin``
and columns ``ox*stride + kx - pad_begin`` for ``ky, kx in range(kernel)``;
reads outside the input are padding (zero mean, zero variance).

Padding types (docs/math.md §3.3): ``"symmetric"`` pads ``padding`` cells on every
side; ``"bottom_right"`` (cuTAGI's type 2) pads ``padding`` cells after the
last row and column only. Output sizes round down, as in PyTorch, when the
stride does not divide the padded extent.
"""
from dataclasses import dataclass

PADDING_TYPES = ("symmetric", "bottom_right")


@dataclass(frozen=True)
class Window2d:
    """A square ``kernel`` x ``kernel`` window sliding over a (channels, height, width) map."""

    channels: int
    height: int
    width: int
    kernel: int
    stride: int
    pad_begin: int  # rows above / columns left of the input
    pad_end: int    # rows below / columns right of the input

    @property
    def out_height(self):
        return (self.height + self.pad_begin + self.pad_end - self.kernel) // self.stride + 1

    @property
    def out_width(self):
        return (self.width + self.pad_begin + self.pad_end - self.kernel) // self.stride + 1

    @property
    def patch_size(self):
        """Number of input cells under one window: channels * kernel**2."""
        return self.channels * self.kernel * self.kernel


def window2d(in_shape, kernel, stride, padding, padding_type):
    """Check the hyperparameters against ``in_shape = (C, H, W)`` and return a Window2d."""
    if len(in_shape) != 3:
        raise ValueError(f"a 2-D window needs a (channels, height, width) input, got shape {in_shape}")
    if padding_type not in PADDING_TYPES:
        raise ValueError(f"padding_type must be one of {PADDING_TYPES}, got {padding_type!r}")
    for name, value, low in (("kernel_size", kernel, 1), ("stride", stride, 1), ("padding", padding, 0)):
        if int(value) != value or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    begin = padding if padding_type == "symmetric" else 0
    geom = Window2d(*map(int, in_shape), int(kernel), int(stride), int(begin), int(padding))
    if geom.out_height < 1 or geom.out_width < 1:
        raise ValueError(f"kernel {kernel} with padding {padding} does not fit the input {tuple(in_shape)}")
    return geom


def check_max_pool(geom, layer):
    """ValueError naming ``layer`` unless every window of ``geom`` holds an input cell (padding
    < kernel), so that a max pool's padding, which never wins, is never all a window holds."""
    if geom.pad_end >= geom.kernel:
        raise ValueError(f"{layer!r}: padding must be < kernel_size, or a window could hold "
                         f"padding only")
