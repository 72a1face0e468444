"""Gradient-descent optimisers over a list of ``Parameter`` s, updating their values in place.

Weight decay is the L2 penalty ``weight_decay / 2 * ||w||**2`` added to the loss,
i.e. ``weight_decay * w`` added to the gradient, on parameters with ``decay``
set (weights, not biases). ``lr`` may be changed between steps (a schedule).
``state_dict()`` / ``load_state_dict()`` carry the buffers and the step count
(for a checkpoint); the learning rate is the schedule's business.
"""
import numpy as np

from ..backends import for_array
from ..chain import check_state_dict
from ..checks import check_choice, check_number


class Optimizer:
    """Common part: the parameters, learning rate, weight decay, per-parameter buffers, step count."""

    def __init__(self, params, lr, weight_decay, buffers):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got no parameters to optimise")
        self.lr = lr
        self.weight_decay = check_number("weight_decay", weight_decay, low=0)
        self.buffers = {name: [for_array(p.value).xp.zeros_like(p.value) for p in self.params]
                        for name in buffers}
        self.steps = 0

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_number("lr (learning rate)", value, low=0)

    def gradient(self, param):
        """dL/dw of the data loss plus the weight-decay term."""
        if param.grad is None:
            raise RuntimeError(f"{type(self).__name__}.step() before any backward(): {param!r} has no grad")
        if self.weight_decay and param.decay:
            return param.grad + self.weight_decay * param.value
        return param.grad

    def step(self):
        """Update every parameter from its grad, in place."""
        self.steps += 1
        for i, param in enumerate(self.params):
            self.update(param, self.gradient(param), *(self.buffers[name][i] for name in self.buffers))

    def state_dict(self):
        """{"{buffer}.{index}": host array, ..., "steps": 0-d int array}."""
        state = {f"{name}.{i}": for_array(b).to_numpy(b).copy()
                 for name, bufs in self.buffers.items() for i, b in enumerate(bufs)}
        state["steps"] = np.array(self.steps)
        return state

    def load_state_dict(self, state):
        check_state_dict({key: np.shape(value) for key, value in self.state_dict().items()}, state)
        for name, bufs in self.buffers.items():
            for i, b in enumerate(bufs):
                b[...] = for_array(b).asarray(np.asarray(state[f"{name}.{i}"]), dtype=b.dtype)
        self.steps = int(state["steps"])


class SGD(Optimizer):
    """v <- momentum * v + g;  w <- w - lr * v  (v starts at 0; momentum 0 is plain SGD)."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        self.momentum = check_number("momentum", momentum, low=0, high=1, high_open=True)
        super().__init__(params, lr, weight_decay, ("velocity",) if self.momentum else ())

    def update(self, param, g, velocity=None):
        if velocity is not None:
            velocity *= self.momentum
            velocity += g
            g = velocity
        param.value -= self.lr * g


class Adam(Optimizer):
    """Kingma & Ba (2015): bias-corrected first and second moments m, v of g;
    w <- w - lr * m_hat / (sqrt(v_hat) + eps)."""

    BUFFERS = ("m", "v")

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.beta1 = check_number("beta1", betas[0], low=0, high=1, high_open=True)
        self.beta2 = check_number("beta2", betas[1], low=0, high=1, high_open=True)
        self.eps = check_number("eps", eps, low=0, low_open=True)
        super().__init__(params, lr, weight_decay, self.BUFFERS)

    def update(self, param, g, m, v):
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        v *= self.beta2
        v += (1.0 - self.beta2) * g * g
        m_hat_scale = self.lr / (1.0 - self.beta1 ** self.steps)
        param.value -= m_hat_scale * m / ((v / (1.0 - self.beta2 ** self.steps)) ** 0.5 + self.eps)


class Adamax(Adam):
    """Adam with the infinity norm for the second moment (Kingma & Ba 2015, §7.1):
    m <- beta1 m + (1 - beta1) g,  u <- max(beta2 u, |g|),  w <- w - lr / (1 - beta1**t) * m / (u + eps)."""

    BUFFERS = ("m", "u")

    def update(self, param, g, m, u):
        m *= self.beta1
        m += (1.0 - self.beta1) * g
        for_array(u).xp.maximum(self.beta2 * u, abs(g), out=u)
        param.value -= self.lr / (1.0 - self.beta1 ** self.steps) * m / (u + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamax": Adamax}


def make_optimizer(name, params, **options):
    """``make_optimizer("sgd", net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)``."""
    return OPTIMIZERS[check_choice("optimizer", name, tuple(OPTIMIZERS))](params, **options)
