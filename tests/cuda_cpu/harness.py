"""Run the CUDA kernels of ``kernels/*.cu`` on the CPU, and the cupy backend on top of them.

``CpuCuda(build_dir).module(code, options)`` compiles CUDA source with g++ and the shim header
``cuda_shim.h`` into a shared library; ``module.get_function(name)`` returns a kernel that is
called like CuPy's ``RawKernel``: ``kernel(grid, block, args)``. Every call checks the launch
against a GPU's limits (grid and block dimensions) and its arguments against the kernel's C
signature (C-contiguous arrays of the pointee type, numpy scalars of the exact type, None for a
null pointer), runs the grid through ctypes, and fails if the kernel wrote outside any of its
arrays (each array is copied between guard bytes for the launch).

``fake_cupy(cuda, multiprocessors)`` stands in for the ``cupy`` package (numpy arrays plus that
RawModule; new arrays are filled with NaN so that unwritten outputs show; a device of that many
SMs; stream capture that always fails, as without a GPU), and ``load_cupy_backend(fake)``
imports the cupy backend's modules (``tagi/backends/cupy_*.py``) afresh against it: the
backend's own launch code (grids, argument order and types, split-K workspaces) then runs in
CI, where there is no GPU.
"""
import contextlib
import ctypes
import hashlib
import importlib
import re
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import tagi.backends

SHIM = Path(__file__).with_name("cuda_shim.h")
KERNEL_DECLARATION = re.compile(r"__global__\s+void\s+(?:__launch_bounds__\([^)]*\)\s*)?TAGI_NAME\((\w+)\)")
POINTEE = {"f": np.dtype(np.float32), "d": np.dtype(np.float64), "i": np.dtype(np.int32)}
SCALAR = {"f": (np.float32, ctypes.c_float), "d": (np.float64, ctypes.c_double),
          "i": (np.int32, ctypes.c_int)}
GUARD = 64  # bytes before and after every array during a launch
GUARD_BYTE = 0xA5
MAX_GRID = (2 ** 31 - 1, 65_535, 65_535)  # every CUDA GPU since compute capability 3.0
MAX_BLOCK = (1024, 1024, 64)
MAX_BLOCK_THREADS = 1024


class CpuCuda:
    """Compiles CUDA sources for the CPU into ``build_dir``, one shared library per source."""

    def __init__(self, build_dir):
        self.build_dir = Path(build_dir)
        self._modules = {}

    def compile(self, sources):
        """Compile several (code, options) pairs at once (one g++ per core) -> [CpuModule]."""
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda source: self.module(*source), sources))

    def module(self, code, options=(), max_grid=MAX_GRID, launches=None):
        """The kernels of ``code``, launched within the grid limits ``max_grid`` (x, y, z); with a
        list ``launches``, a dry run: each launch is checked and appended as (name, grid, block),
        not run."""
        key = hashlib.sha256(repr((code, tuple(options))).encode()).hexdigest()[:16]
        if key not in self._modules:
            names = KERNEL_DECLARATION.findall(code)
            exports = "".join(f"\nTAGI_CPU_EXPORT(TAGI_NAME({name}))" for name in names)
            source = self.build_dir / f"kernels_{key}.cpp"
            source.write_text(code + "\n" + exports + "\n")
            library = self.build_dir / f"kernels_{key}.so"
            includes = [opt for opt in options if opt.startswith(("-I", "-D"))]
            command = ["g++", "-std=c++20", "-O1", "-shared", "-fPIC", "-w", "-include", str(SHIM),
                       *includes, str(source), "-o", str(library)]
            result = subprocess.run(command, capture_output=True, text=True)
            if result.returncode:
                raise RuntimeError(f"g++ failed on the kernels:\n{result.stderr[-6000:]}")
            self._modules[key] = ctypes.CDLL(str(library))
        return CpuModule(self._modules[key], max_grid, launches)


class CpuModule:
    """The kernels of one compiled source, found by their extern "C" names."""

    def __init__(self, library, max_grid=MAX_GRID, launches=None):
        self.library, self.max_grid, self.launches = library, tuple(max_grid), launches
        self.library.tagi_cpu_error.restype = ctypes.c_char_p

    def get_function(self, name):
        return CpuKernel(self.library, name, self.max_grid, self.launches)


class CpuKernel:
    """A kernel called as ``kernel(grid, block, args, shared_mem=0)``, like a CuPy RawKernel."""

    def __init__(self, library, name, max_grid=MAX_GRID, launches=None):
        self.name, self.max_grid, self.launches = name, max_grid, launches
        try:
            self._launch = getattr(library, f"tagi_cpu_launch_{name}")
            signature = getattr(library, f"tagi_cpu_signature_{name}")
        except AttributeError:
            raise AttributeError(f"no kernel named {name!r}") from None
        self._launch.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_void_p)]
        self._launch.restype = ctypes.c_int
        signature.restype = ctypes.c_char_p
        self.signature = signature().decode().split(",")
        self._error = library.tagi_cpu_error

    def __call__(self, grid, block, args, shared_mem=0):
        if shared_mem:
            raise ValueError("the kernels use static shared memory only")
        grid, block = (tuple(grid) + (1, 1))[:3], (tuple(block) + (1, 1))[:3]
        for what, dims, limits in (("grid", grid, self.max_grid), ("block", block, MAX_BLOCK)):
            if any(not 1 <= d <= limit for d, limit in zip(dims, limits)):
                raise ValueError(f"{self.name}: {what} {dims} outside the device's limits {limits} "
                                 "(cudaErrorInvalidConfiguration on a GPU)")
        if block[0] * block[1] * block[2] > MAX_BLOCK_THREADS:
            raise ValueError(f"{self.name}: block {block} has more than {MAX_BLOCK_THREADS} threads")
        if len(args) != len(self.signature):
            raise TypeError(f"{self.name} takes {len(self.signature)} arguments "
                            f"({','.join(self.signature)}), got {len(args)}")
        dims = (ctypes.c_uint * 6)(*grid, *block)
        guarded = GuardedArrays() if self.launches is None else _Unguarded()
        values = [self._value(i, code, arg, guarded) for i, (code, arg) in enumerate(zip(self.signature, args))]
        if self.launches is not None:
            self.launches.append((self.name, grid, block))
            return
        pointers = (ctypes.c_void_p * len(values))(*(ctypes.addressof(v) for v in values))
        if self._launch(dims, pointers):
            raise RuntimeError(f"{self.name}: {self._error().decode()}")
        guarded.check_and_copy_back(self.name)

    def _value(self, position, code, arg, guarded):
        where = f"{self.name} argument {position} ({code})"
        if code.endswith("*"):
            if arg is None:
                return ctypes.c_void_p(None)
            if not isinstance(arg, np.ndarray):
                raise TypeError(f"{where}: expected an array or None, got {type(arg).__name__}")
            if arg.dtype != POINTEE[code[0]]:
                raise TypeError(f"{where}: expected {POINTEE[code[0]]} data, got {arg.dtype}")
            if not arg.flags.c_contiguous:
                raise TypeError(f"{where}: a kernel reads a raw pointer, the array must be C-contiguous")
            return ctypes.c_void_p(guarded.address(arg))
        scalar_type, c_type = SCALAR[code]
        if type(arg) is not scalar_type:
            raise TypeError(f"{where}: expected a numpy.{scalar_type.__name__}, got {type(arg).__name__}"
                            " (CuPy would pass a Python int or float as 64 bits)")
        return c_type(arg)


class _Unguarded:
    """The arrays of a dry-run launch, passed as they are (nothing runs)."""

    def address(self, array):
        return array.ctypes.data


class GuardedArrays:
    """Copies of a launch's arrays between guard bytes; the same memory passed twice is one copy."""

    def __init__(self):
        self._copies = {}   # (data address, nbytes) -> (array, guarded buffer)

    def address(self, array):
        key = (array.__array_interface__["data"][0], array.nbytes)
        for start, nbytes in self._copies:
            if key != (start, nbytes) and start < key[0] + key[1] and key[0] < start + nbytes:
                raise ValueError("two overlapping but different arrays passed to one kernel")
        if key not in self._copies:
            buffer = np.full(array.nbytes + 2 * GUARD, GUARD_BYTE, dtype=np.uint8)
            buffer[GUARD:GUARD + array.nbytes] = array.reshape(-1).view(np.uint8)
            self._copies[key] = (array, buffer)
        return self._copies[key][1].ctypes.data + GUARD

    def check_and_copy_back(self, name):
        for array, buffer in self._copies.values():
            if (buffer[:GUARD] != GUARD_BYTE).any() or (buffer[GUARD + array.nbytes:] != GUARD_BYTE).any():
                raise RuntimeError(f"{name} wrote outside an array of shape {array.shape}")
            if array.nbytes:
                array.reshape(-1).view(np.uint8)[...] = buffer[GUARD:GUARD + array.nbytes]


# ----------------------------------------------------------------------------- cupy on the CPU

def _empty(shape, dtype=float):
    """Like numpy.empty, but filled with NaN (floats) or -1 (integers), so unwritten cells show."""
    dtype = np.dtype(dtype)
    return np.full(shape, np.nan if dtype.kind == "f" else -1, dtype=dtype)


def _empty_like(a, dtype=None):
    return _empty(a.shape, a.dtype if dtype is None else dtype)


class _Device:
    def __init__(self, multiprocessors, max_grid):
        self.id = 0
        self.attributes = {"MultiProcessorCount": multiprocessors, "MaxGridDimX": max_grid[0],
                           "MaxGridDimY": max_grid[1], "MaxGridDimZ": max_grid[2]}

    def synchronize(self):
        """Kernels run synchronously on the CPU."""


class _Stream:
    """A stream on which kernels run at once, and stream capture fails as without a GPU."""

    def __init__(self, non_blocking=False):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        """Kernels run synchronously on the CPU."""

    def begin_capture(self):
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")


def fake_cupy(cuda, multiprocessors, max_grid=MAX_GRID, ndarray=np.ndarray, launches=None):
    """A stand-in for the ``cupy`` package: numpy arrays, kernels from ``cuda`` (a CpuCuda).

    ``multiprocessors`` is the SM count the backend sees (0 keeps every GEMM in one split; an
    H100 or H200 has 132), ``max_grid`` the device's grid limits, which every launch must keep.
    ``ndarray`` is the array type the backend takes for a device array: a numpy subclass makes
    plain numpy arrays count as host arrays. With a list ``launches`` the kernels are not run,
    only checked and recorded there (see CpuCuda.module).
    """
    fake = types.ModuleType("cupy")
    fake.__dict__.update(
        ndarray=ndarray, asarray=np.asarray, ascontiguousarray=np.ascontiguousarray,
        asnumpy=np.array, empty=_empty, empty_like=_empty_like, zeros=np.zeros,
        zeros_like=np.zeros_like, matmul=np.matmul, tensordot=np.tensordot,
        concatenate=np.concatenate, add=np.add, sqrt=np.sqrt,
        RawModule=lambda code, options=(): cuda.module(code, options, max_grid, launches),
        random=types.SimpleNamespace(standard_normal=lambda shape, dtype=float: np.random.default_rng(
            0).standard_normal(shape).astype(dtype)),
        cuda=types.SimpleNamespace(
            runtime=types.SimpleNamespace(
                getDeviceCount=lambda: 1, CUDARuntimeError=RuntimeError,
                getDeviceProperties=lambda device: {"name": b"CPU harness",
                                                    "multiProcessorCount": multiprocessors}),
            Device=lambda: _Device(multiprocessors, max_grid), Stream=_Stream,
            get_current_stream=_Stream, MemoryPool=lambda: types.SimpleNamespace(malloc=None),
            using_allocator=lambda malloc: contextlib.nullcontext()))
    return fake


# the cupy backend's modules: kernel compilation, CUDA graphs, and the ops that import both
BACKEND_MODULES = ("cupy_kernels", "cupy_graph", "cupy_backend")


def load_cupy_backend(fake, module="cupy_backend"):
    """Fresh module objects of the cupy backend importing ``fake`` as cupy -> the one named
    ``module``: the ops (``cupy_backend``, the backend as ``get_backend`` returns it), or its
    ``cupy_kernels`` or ``cupy_graph``. The modules already imported (on a GPU machine, the real
    backend) are left as they were: in ``sys.modules`` and as attributes of ``tagi.backends``."""
    package, missing = tagi.backends, object()
    names = ["cupy", *(f"{package.__name__}.{name}" for name in BACKEND_MODULES)]
    saved_modules = {name: sys.modules.pop(name, None) for name in names}
    saved_attributes = {name: getattr(package, name, missing) for name in BACKEND_MODULES}
    sys.modules["cupy"] = fake
    try:
        importlib.import_module(f"{package.__name__}.cupy_backend")
        return sys.modules[f"{package.__name__}.{module}"]
    finally:
        for name, saved in saved_modules.items():
            sys.modules.pop(name, None)
            if saved is not None:
                sys.modules[name] = saved
        for name, saved in saved_attributes.items():
            if saved is missing:
                package.__dict__.pop(name, None)
            else:
                setattr(package, name, saved)
