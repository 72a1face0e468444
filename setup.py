"""tagi: Tractable Approximate Gaussian Inference for Bayesian neural networks."""
import re
from pathlib import Path

from setuptools import find_packages, setup

# the version is tagi.__version__, read from the source (importing tagi needs its dependencies)
VERSION = re.search(r'^__version__ = "([^"]+)"', (Path(__file__).parent / "tagi" / "__init__.py")
                    .read_text(), re.MULTILINE).group(1)

# pytagi, the reference implementation's CPU build, for tests/test_pytagi_oracle.py; it links
# NCCL (from the wheel below) and Open MPI (apt-get install libopenmpi3)
ORACLE = ["pytagi==0.2.1", "nvidia-nccl-cu12"]
TRACKING = ["mlflow>=2"]
# the tuning app (experiments/tune.py); scikit-learn for its fANOVA parameter importances
TUNE = ["optuna>=4", "scikit-learn>=1.0"]

setup(
    name="tagi",
    version=VERSION,
    description="TAGI (Goulet, Nguyen & Amiri, JMLR 2021): closed-form Bayesian "
                "neural network training on NumPy, Numba and CuPy backends",
    python_requires=">=3.10",
    packages=find_packages(include=["tagi", "tagi.*", "experiments", "experiments.*",
                                    "benchmarks", "benchmarks.*"]) + ["tagi.kernels"],
    # the CUDA sources stay in the top-level kernels/ and install as tagi/kernels/ (package data)
    package_dir={"tagi.kernels": "kernels"},
    package_data={"experiments": ["conf/*.yaml", "conf/*/*.yaml", "conf/*/*/*.yaml"],
                  "tagi.kernels": ["*.cu", "*.cuh", "README.md"]},
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "scipy>=1.10",
        "pandas>=2.0",
        "hydra-core>=1.3",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        # not imported by the package: the README's first command builds CIFAR-10 from the JPEG
        # copy with ../shared/data/make_cifar10.py, which decodes the images with Pillow
        "pillow>=9.0",
        "tabulate>=0.9",
        "threadpoolctl>=3.1",
    ],
    extras_require={
        "dev": ["pytest>=7", "hydra-joblib-launcher>=1.2", "hydra-submitit-launcher>=1.2",
                "wheel"] + TRACKING + TUNE,   # wheel: tests/test_kernels_package.py builds one
        "tracking": TRACKING,              # tracking=mlflow (experiments/tracking.py)
        "tune": TUNE,                      # python -m experiments.tune (docs/tuning.md)
        # hydra/launcher=ray; the plugin's metadata caps cloudpickle below 3 (it runs with 3.1 too),
        # so pip installs cloudpickle 2.x beside it: not part of dev for that reason
        "ray": ["hydra-ray-launcher>=1.2.2", "ray[default]>=2"],
        # CuPy >= 14: memory a CUDA graph's capture allocated stays valid while the graph lives
        "cuda": ["cupy-cuda13x>=14"],      # CUDA 13 drivers; use the cuda12 extra on CUDA 12
        "cuda12": ["cupy-cuda12x>=14"],
        "oracle": ORACLE,
        "peers": ORACLE + ["torch==2.13.0"],   # other implementations, for benchmarks/peers.py
    },
)
