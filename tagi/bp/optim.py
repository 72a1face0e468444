"""Gradient-descent optimisers over a list of ``Parameter`` s, updating their values in place.

Weight decay is the L2 penalty ``weight_decay / 2 * ||w||**2`` added to the loss,
i.e. ``weight_decay * w`` added to the gradient, on parameters with ``decay``
set (weights, not biases). ``lr`` may be changed between steps (a schedule).
"""
from ..backends import for_array
from .checks import check_choice, check_number


def _zeros_like(value):
    return for_array(value).xp.zeros_like(value)


class Optimizer:
    """Common part: the parameters, the learning rate and the weight decay."""

    def __init__(self, params, lr, weight_decay):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__} got no parameters to optimise")
        self.lr = lr
        self.weight_decay = check_number("weight_decay", weight_decay, low=0)

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


class SGD(Optimizer):
    """v <- momentum * v + g;  w <- w - lr * v  (v starts at 0; momentum 0 is plain SGD)."""

    def __init__(self, params, lr=0.01, momentum=0.0, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.momentum = check_number("momentum", momentum, low=0, high=1, high_open=True)
        self.velocity = [_zeros_like(param.value) for param in self.params]

    def step(self):
        for param, v in zip(self.params, self.velocity):
            g = self.gradient(param)
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            param.value -= self.lr * g


class Adam(Optimizer):
    """Kingma & Ba (2015): bias-corrected first and second moments of g;
    w <- w - lr * m_hat / (sqrt(v_hat) + eps)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(params, lr, weight_decay)
        self.beta1 = check_number("beta1", betas[0], low=0, high=1, high_open=True)
        self.beta2 = check_number("beta2", betas[1], low=0, high=1, high_open=True)
        self.eps = check_number("eps", eps, low=0, low_open=True)
        self.t = 0
        self.m = [_zeros_like(param.value) for param in self.params]
        self.v = [_zeros_like(param.value) for param in self.params]

    def step(self):
        self.t += 1
        correct1, correct2 = 1.0 - self.beta1 ** self.t, 1.0 - self.beta2 ** self.t
        for param, m, v in zip(self.params, self.m, self.v):
            g = self.gradient(param)
            m *= self.beta1
            m += (1.0 - self.beta1) * g
            v *= self.beta2
            v += (1.0 - self.beta2) * g * g
            param.value -= (self.lr / correct1) * m / ((v / correct2) ** 0.5 + self.eps)


OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def make_optimizer(name, params, **options):
    """``make_optimizer("sgd", net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)``."""
    return OPTIMIZERS[check_choice("optimizer", name, tuple(OPTIMIZERS))](params, **options)
