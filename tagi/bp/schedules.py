"""Learning-rate schedules: ``schedule(epoch) -> lr`` for 1-based epochs (epoch 1 runs at ``lr``).

Set it once per epoch: ``optimizer.lr = schedule(epoch)``.
"""
import math

from ..checks import check_choice, check_int, check_number


class _Schedule:
    def __init__(self, lr):
        self.lr = check_number("lr (learning rate)", lr, low=0)

    def __call__(self, epoch):
        return self.at(check_int("epoch", epoch, 1))


class ConstantLR(_Schedule):
    """lr at every epoch."""

    def at(self, epoch):
        return self.lr


class StepLR(_Schedule):
    """lr * gamma ** ((epoch - 1) // step_size): divided every ``step_size`` epochs."""

    def __init__(self, lr, step_size, gamma=0.1):
        super().__init__(lr)
        self.step_size = check_int("step_size", step_size, 1)
        self.gamma = check_number("gamma", gamma, low=0, high=1, low_open=True)

    def at(self, epoch):
        return self.lr * self.gamma ** ((epoch - 1) // self.step_size)


class ExponentialLR(_Schedule):
    """lr * gamma ** (epoch - 1): multiplied by ``gamma`` once per epoch.

    Keras' ``LearningRateScheduler(lambda epoch: lr * gamma ** epoch)`` passes the 0-based
    epoch index, so its first epoch runs at ``lr`` too: the same rates epoch for epoch.
    """

    def __init__(self, lr, gamma):
        super().__init__(lr)
        self.gamma = check_number("gamma", gamma, low=0, high=1, low_open=True)

    def at(self, epoch):
        return self.lr * self.gamma ** (epoch - 1)


class CosineLR(_Schedule):
    """min_lr + (lr - min_lr) * (1 + cos(pi * (epoch - 1) / epochs)) / 2: half a cosine over ``epochs``."""

    def __init__(self, lr, epochs, min_lr=0.0):
        super().__init__(lr)
        self.epochs = check_int("epochs", epochs, 1)
        self.min_lr = check_number("min_lr", min_lr, low=0, high=self.lr)

    def at(self, epoch):
        progress = min(epoch - 1, self.epochs) / self.epochs
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


SCHEDULES = {"constant": ConstantLR, "step": StepLR, "exponential": ExponentialLR, "cosine": CosineLR}


def make_schedule(name, lr, **options):
    """``make_schedule("cosine", 0.05, epochs=30)``, ``make_schedule("step", 0.1, step_size=10)``,
    ``make_schedule("exponential", 5e-3, gamma=0.9)``."""
    return SCHEDULES[check_choice("schedule", name, tuple(SCHEDULES))](lr, **options)
