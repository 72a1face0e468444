"""Every available backend offers the whole op contract with the reference's signatures."""
import inspect

import pytest

from tagi.backends import NAMES, OPS, get_backend


def available():
    out = []
    for name in NAMES:
        try:
            out.append(get_backend(name))
        except ImportError:
            pass
    return out


@pytest.mark.parametrize("backend", available(), ids=lambda b: b.NAME)
def test_backend_has_every_op_with_the_reference_signature(backend):
    ref = get_backend("numpy")
    for op in OPS:
        assert hasattr(backend, op), f"{backend.NAME} lacks {op}"
        assert inspect.signature(getattr(backend, op)) == inspect.signature(getattr(ref, op)), op
    assert hasattr(backend, "xp") and backend.NAME in NAMES


def test_auto_and_unknown():
    assert get_backend("auto").NAME in NAMES
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        get_backend("gpu")


def test_cupy_without_a_gpu_is_refused_by_name():
    """Installed or not, cupy with no usable GPU is an unavailable backend, with the reason."""
    from tagi.backends import gpu_missing
    reason = gpu_missing()
    if reason is None:
        pytest.skip("a GPU is present")
    with pytest.raises(ImportError, match=r"backend 'cupy' is not available here: .+"):
        get_backend("cupy")
