"""CPU thread caps: limit_threads on BLAS and Numba, and the main job's choice of a cap."""
import os

import numba
import pytest
from omegaconf import OmegaConf
from threadpoolctl import threadpool_info

from experiments.train import job_threads
from tagi.threads import limit_threads

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def blas_threads():
    return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}


def test_limit_threads_caps_blas_and_numba_then_restores():
    numba_before, blas_before = numba.get_num_threads(), blas_threads()
    with limit_threads(1):
        assert numba.get_num_threads() == 1
        assert blas_threads() == {1}
    assert numba.get_num_threads() == numba_before
    assert blas_threads() == blas_before


def test_limit_threads_none_changes_nothing():
    before = numba.get_num_threads(), blas_threads()
    with limit_threads(None):
        assert (numba.get_num_threads(), blas_threads()) == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, "two", True])
def test_limit_threads_refuses_a_bad_count(bad):
    with pytest.raises(ValueError, match="thread count"):
        with limit_threads(bad):
            pass


def job(threads=None):
    return OmegaConf.create({"threads": threads})


def launcher(target, **options):
    return OmegaConf.create({"_target_": target, **options})


def test_job_threads():
    cores = os.cpu_count()
    assert job_threads(job(), launcher(BASIC)) is None                    # every core
    assert job_threads(job(3), launcher(BASIC)) == 3                      # as configured
    assert job_threads(job(3), launcher(JOBLIB, n_jobs=-1)) == 3
    assert job_threads(job(), launcher(JOBLIB, n_jobs=-1)) == 1           # a job per core
    assert job_threads(job(), launcher(JOBLIB, n_jobs=1)) == cores        # one job at a time
    assert job_threads(job(), launcher(JOBLIB, n_jobs=2)) == max(1, cores // 2)
    assert job_threads(job(), launcher(JOBLIB, n_jobs=-2)) == cores // max(1, cores - 1)


@pytest.mark.parametrize("bad", [0, "two", 1.5])
def test_job_threads_names_the_setting(bad):
    with pytest.raises(ValueError, match="^threads must be"):
        job_threads(job(bad), launcher(BASIC))
