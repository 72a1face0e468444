"""Error rate, NLL and calibration of predicted probabilities, on cases worked out by hand."""
import numpy as np
import pytest

from tagi.metrics import (error_rate, expected_calibration_error, nll, pooled_reliability,
                          reliability_bins, reliability_sums)

PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
LABELS = np.array([0, 1, 1, 0])          # right, wrong, right, wrong


def test_error_and_nll():
    assert error_rate(PROBS, LABELS) == 0.5
    assert nll(PROBS, LABELS) == pytest.approx(-np.mean(np.log([0.9, 0.2, 0.7, 0.4])))
    assert nll(np.array([[1.0, 0.0]]), np.array([1])) == pytest.approx(-np.log(1e-30))


def test_reliability_and_ece():
    # confidences 0.9 (right), 0.8 (wrong), 0.7 (right), 0.6 (wrong); 5 bins of width 0.2
    table = reliability_bins(PROBS, LABELS, bins=5)
    assert table["count"].tolist() == [0, 0, 1, 2, 1]
    np.testing.assert_allclose(table["confidence"].iloc[2:], [0.6, 0.75, 0.9])
    np.testing.assert_allclose(table["accuracy"].iloc[2:], [0.0, 0.5, 1.0])
    ece = (1 * 0.6 + 2 * 0.25 + 1 * 0.1) / 4
    assert expected_calibration_error(PROBS, LABELS, bins=5) == pytest.approx(ece)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(perfect, np.array([0, 1])) == 0.0


def test_reliability_sums_of_runs_pool_to_the_bins_of_all_their_samples():
    rng = np.random.default_rng(0)
    runs = [(rng.dirichlet(np.ones(10) * a, size=n), rng.integers(0, 10, size=n))
            for a, n in ((0.3, 500), (1.0, 300), (3.0, 200))]
    pooled = pooled_reliability([reliability_sums(p, y) for p, y in runs])
    together = reliability_bins(np.concatenate([p for p, _ in runs]), np.concatenate([y for _, y in runs]))
    assert pooled["count"].tolist() == together["count"].tolist() and together["count"].sum() == 1000
    np.testing.assert_allclose(pooled["confidence"], together["confidence"], rtol=1e-12)
    np.testing.assert_allclose(pooled["accuracy"], together["accuracy"], rtol=1e-12)
    assert (together["count"] == 0).any() and pooled["confidence"][together["count"] == 0].isna().all()
