"""Scores of predicted class probabilities: error rate, NLL, calibration (ECE, reliability bins).

``probs`` is (N, K) with rows summing to 1, ``labels`` (N,) integers in [0, K).
Probabilities holding NaN or infinite values (a diverged model) raise ValueError:
they have no score, least of all a perfect one.
"""
import numpy as np
import pandas as pd


def _checked(probs):
    """``probs`` as an array, or ValueError naming the rows that hold NaN or infinite values."""
    probs = np.asarray(probs)
    bad = np.unique(np.nonzero(~np.isfinite(probs))[0])
    if bad.size:
        raise ValueError(f"probabilities hold NaN or infinite values in {bad.size} of {len(probs)} rows "
                         f"(first: {bad[:5].tolist()}); a diverged model has no score")
    return probs


def error_rate(probs, labels):
    """Fraction of samples whose most probable class is not the label."""
    return float(np.mean(np.argmax(_checked(probs), axis=1) != labels))


def nll(probs, labels, floor=1e-30):
    """Mean negative log probability of the labels (natural log); probabilities floored at ``floor``."""
    p_true = _checked(probs).astype(np.float64)[np.arange(len(labels)), labels]
    return float(-np.log(np.maximum(p_true, floor)).mean())


def reliability_bins(probs, labels, bins=15):
    """Confidence (max probability) in ``bins`` equal-width bins: a DataFrame with one row per bin,
    columns lower, upper, count, confidence (mean in the bin), accuracy (fraction correct)."""
    return pooled_reliability([reliability_sums(probs, labels, bins)])


def reliability_sums(probs, labels, bins=15):
    """The reliability bins as sums, which add up over runs: {"count", "confidence_sum",
    "correct"}, each a list of ``bins`` numbers (samples, their summed max probability, how many
    of them are right) -> dict of lists, JSON-able; ``pooled_reliability`` turns summed ones back."""
    probs = _checked(probs)
    confidence = np.max(probs, axis=1)
    correct = np.argmax(probs, axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    return {"count": np.bincount(which, minlength=bins).tolist(),
            "confidence_sum": np.bincount(which, weights=confidence, minlength=bins).tolist(),
            "correct": np.bincount(which, weights=correct, minlength=bins).astype(int).tolist()}


def pooled_reliability(sums):
    """A list of ``reliability_sums`` (runs of one comparison) -> the reliability_bins DataFrame of
    all their samples together."""
    count = np.sum([s["count"] for s in sums], axis=0)
    edges = np.linspace(0.0, 1.0, len(count) + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.DataFrame({"lower": edges[:-1], "upper": edges[1:], "count": count,
                             "confidence": np.sum([s["confidence_sum"] for s in sums], axis=0) / count,
                             "accuracy": np.sum([s["correct"] for s in sums], axis=0) / count})


def expected_calibration_error(probs, labels, bins=15):
    """ECE: sum over confidence bins of (share of samples) * |accuracy - mean confidence|."""
    table = reliability_bins(probs, labels, bins)
    used = table[table["count"] > 0]
    return float((used["count"] * (used["accuracy"] - used["confidence"]).abs()).sum() / len(labels))
