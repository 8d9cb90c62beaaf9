"""From tail probabilities to 0–100 scores: one scale for every detector and every agent.

A detector reports how rare what it saw is *for this agent* as a tail probability ``p``
(the chance of something at least this unusual under the agent's baseline). The score is
the surprise ``-log10 p`` on a fixed scale, so the same score means the same rarity for a
chatty agent and a quiet one, whichever detector produced it:

=========  ==========  ============
p          score       severity
=========  ==========  ============
0.1        25          low
0.01       50          medium
0.001      75          high
0.0001     100         critical
=========  ==========  ============

>>> score_from_p(0.01), score_from_p(1e-4), score_from_p(0.5)
(50.0, 100.0, 7.5)
>>> round(fisher_combine([0.01, 0.01]), 5)
0.00102
"""

from __future__ import annotations

import math
from collections.abc import Sequence

P_FLOOR = 1e-12
SURPRISE_AT_100 = 4.0  # -log10 p that maps to a score of 100


def surprise(p: float) -> float:
    return -math.log10(min(1.0, max(P_FLOOR, p)))


def score_from_p(p: float) -> float:
    """0–100 score of a tail probability."""
    return round(min(100.0, max(0.0, 100.0 * surprise(p) / SURPRISE_AT_100)), 1)


def p_from_score(score: float) -> float:
    """Inverse of :func:`score_from_p` (for thresholds given as scores)."""
    return float(10 ** (-score * SURPRISE_AT_100 / 100.0))


def bonferroni(p: float, tests: int) -> float:
    """Family-wise tail probability of the smallest of ``tests`` p-values."""
    return min(1.0, p * max(1, tests))


def per_period(p: float, trials: float) -> float:
    """Tail probability of the most unusual of ``trials`` independent tests (Šidák).

    A detector that rates every window of an agent on a uniform scale flags a share ``p`` of
    ordinary windows by construction; ``per_period(p, windows per hour)`` is the chance that
    an ordinary hour of the agent holds a window at least this unusual, so a score of 50 means
    once in a hundred agent-hours, not once in a hundred windows.

    >>> round(per_period(0.01, 1), 6), round(per_period(1e-4, 60), 4), per_period(0.5, 60) > 0.99
    (0.01, 0.006, True)
    """
    if trials <= 1.0:
        return min(1.0, max(0.0, p))
    p = min(1.0, max(0.0, p))
    return min(1.0, -math.expm1(trials * math.log1p(-p))) if p < 1.0 else 1.0


def fisher_combine(ps: Sequence[float]) -> float:
    """Combine independent tail probabilities (Fisher's method, closed form)."""
    ps = [min(1.0, max(P_FLOOR, p)) for p in ps]
    if not ps:
        return 1.0
    half = -sum(math.log(p) for p in ps)  # chi-square statistic / 2, dof = 2k
    term, total = 1.0, 1.0
    for i in range(1, len(ps)):
        term *= half / i
        total += term
    return min(1.0, math.exp(-half) * total)


def normal_sf(z: float) -> float:
    """Upper tail of the standard normal."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))
