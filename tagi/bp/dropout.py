"""Inverted dropout: in training, zero each unit with probability p and scale the others by 1/(1 - p)."""
from ..checks import check_number
from .activations import _Elementwise


class Dropout(_Elementwise):
    """Identity outside training. The mask is drawn on the backend's device (``backend.xp.random``),
    from a generator seeded by the Sequential's seed (``reseed`` restarts it)."""

    def __init__(self, p=0.5):
        self.p = check_number("dropout p", p, low=0, high=1, high_open=True)

    def __repr__(self):
        return f"Dropout(p={self.p})"

    def build(self, in_shape, backend, dtype, rng):
        shape = super().build(in_shape, backend, dtype, rng)
        self.reseed(int(rng.integers(2 ** 63)))
        return shape

    def reseed(self, seed):
        """Restart the mask generator from the integer ``seed``."""
        self.rng = self.backend.xp.random.default_rng(seed)

    def forward(self, x, training=False):
        if not training:
            return x
        keep = self.rng.random(x.shape, dtype=x.dtype) >= self.p
        self.jac = keep.astype(x.dtype) * (1.0 / (1.0 - self.p))
        return x * self.jac
