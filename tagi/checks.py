"""Argument checks that name the offending parameter in their error, for TAGI, BP and the
experiments' settings alike."""
import math


def check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """``value`` as a float if it is finite and within the bounds, else ValueError naming ``name``.

    ``low_open`` / ``high_open`` exclude the bound itself: ``low=0, high=1, high_open=True`` is [0, 1).
    """
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_open else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_open else '<='} {high}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    ok = (math.isfinite(number)
          and (low is None or (number > low if low_open else number >= low))
          and (high is None or (number < high if high_open else number <= high)))
    if not ok:
        raise ValueError(f"{name} must be a finite number {' and '.join(bounds)}, got {value!r}")
    return number


def check_int(name, value, low):
    """``value`` as an int if it is an integer >= ``low``, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_choice(name, value, choices):
    """``value`` if it is one of ``choices``, else ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value

