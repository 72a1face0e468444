"""Shared by the tests/test_bp_*.py files: the backends to run BP on, unavailable ones skipped."""
import pytest

from tagi.backends import NAMES, get_backend


def _backend_param(name):
    try:
        get_backend(name)
    except ImportError as err:
        return pytest.param(name, id=name, marks=pytest.mark.skip(reason=f"backend {name!r}: {err}"))
    return pytest.param(name, id=name)


BACKENDS = [_backend_param(name) for name in NAMES]

