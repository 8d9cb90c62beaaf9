"""Ranking metrics for scores against binary labels. Pure numpy.

>>> average_precision([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0])
0.8333333333333333
>>> recall_at_fpr([0.9, 0.8, 0.3, 0.1], [1, 0, 1, 0], max_fpr=0.0)
(0.5, 0.0, 0.9)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Curve = tuple[np.ndarray, np.ndarray, np.ndarray]


def _curve(scores: Sequence[float], labels: Sequence[int]) -> Curve:
    """Cumulative true and false positives at each distinct threshold (descending)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(y)[distinct]
    fp = np.cumsum(~y)[distinct]
    return tp, fp, s[distinct]


def average_precision(scores: Sequence[float], labels: Sequence[int]) -> float:
    """Area under the precision–recall curve as a step function (scikit-learn's definition)."""
    tp, fp, _ = _curve(scores, labels)
    positives = tp[-1] if len(tp) else 0
    if positives == 0:
        return 0.0
    precision = tp / (tp + fp)
    recall = tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_fpr(
    scores: Sequence[float], labels: Sequence[int], max_fpr: float
) -> tuple[float, float, float]:
    """Best recall with false-positive rate ≤ ``max_fpr``: (recall, fpr, threshold).

    Flagged means ``score >= threshold``; threshold is +inf when nothing qualifies.
    """
    tp, fp, thresholds = _curve(scores, labels)
    positives = tp[-1] if len(tp) else 0
    negatives = fp[-1] if len(fp) else 0
    best = (0.0, 0.0, float("inf"))
    for t, f, threshold in zip(tp, fp, thresholds, strict=True):
        fpr = f / negatives if negatives else 0.0
        if fpr <= max_fpr + 1e-12:
            recall = t / positives if positives else 0.0
            if recall > best[0]:
                best = (float(recall), float(fpr), float(threshold))
    return best


def precision_recall_curve(
    scores: Sequence[float], labels: Sequence[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp, fp, thresholds = _curve(scores, labels)
    positives = max(int(tp[-1]) if len(tp) else 0, 1)
    return tp / np.maximum(tp + fp, 1), tp / positives, thresholds
