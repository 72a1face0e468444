"""Softmax cross-entropy (natural log) on ``xp`` arrays: logits (B, K), integer labels (B,)."""
from ..backends import for_array


def log_softmax(logits):
    """(B, K) logits -> (B, K) log-probabilities, shifted by the row maximum for stability."""
    xp = for_array(logits).xp
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def softmax_cross_entropy(logits, labels):
    """-> (losses (B,): -log p(label), grad (B, K): d mean(losses) / d logits = (softmax - onehot) / B)."""
    xp = for_array(logits).xp
    labels = xp.asarray(labels)
    rows = xp.arange(logits.shape[0])
    log_p = log_softmax(logits)
    grad = xp.exp(log_p)
    grad[rows, labels] -= 1.0
    grad /= logits.shape[0]
    return -log_p[rows, labels], grad
