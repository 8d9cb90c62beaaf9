"""Robust statistics shared by the baseline detectors (rate, drift, metric samples, peer group).

Pure code, no state of its own. Three groups of tools:

* **exponentially weighted baselines** — :func:`ew_update` (winsorised location and
  variance), :func:`ew_z`, :func:`ew_df` and :func:`student_sf` (a z-score whose scale is
  itself estimated);
* **count tails** — :func:`count_tails` and :func:`binomial_tails`: one-sided tail
  probabilities of a count (Poisson or negative binomial) or of a number of successes
  (quasi-binomial), from the signed deviance residual with a continuity correction;
* **empirical recalibration** — :class:`TailCalibrator`: whatever a detector's model, the
  tail probability it reports for an agent is mapped to the rate at which that agent's
  windows actually reached it (a lower confidence bound of it), so ``p`` keeps its meaning
  when the model's tails are too light (bursty sessions, bimodal volumes, windows never
  learned because they were flagged).

:class:`RuleBook` resolves a feature name to the first matching rule of a table (glob
patterns), with a bounded cache.

>>> stat = [10.0, 4.0, 50]
>>> ew_z(stat, 16.0, 0.1)
3.0
>>> high, low, z = count_tails(12.0, 3.0, 1.0)
>>> high < 1e-3 < low, z > 3
(True, True)
"""

from __future__ import annotations

import fnmatch
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Generic, Protocol, TypeVar

from agentwatch.models.calibration import P_FLOOR, normal_sf, surprise

__all__ = [
    "N_CAP",
    "RuleBook",
    "TailCalibrator",
    "binomial_tails",
    "count_tails",
    "ew_df",
    "ew_update",
    "ew_z",
    "group_shifts",
    "student_sf",
]

N_CAP = 10_000  # observation counts saturate here (the EW weight has long taken over)


# -- exponentially weighted baselines ----------------------------------------------------------


def ew_update(
    stat: list[float],
    y: float,
    a: float,
    clip_k: float,
    min_scale: float,
    spread_k: float | None = None,
) -> None:
    """Winsorised exponentially weighted update of ``stat = [location, variance, ...]``.

    For the location, ``y`` is clipped to ``location ± clip_k · s`` with
    ``s = max(sd, min_scale)`` (no clipping when ``clip_k`` is 0), so one observation moves
    the location by at most ``a · clip_k · s``; for the variance it is clipped to
    ``± spread_k · s`` (default ``clip_k + 2``: a scale needs the tails a location must not
    follow, or heavy-tailed data would look ever more surprising).

    >>> stat = [10.0, 1.0, 50]
    >>> ew_update(stat, 1e9, 0.1, 3.0, 0.1)  # an outlier counts as location + 3 sd
    >>> round(stat[0], 6), round(stat[1], 6)
    (10.3, 3.15)
    """
    loc = stat[0]
    d = d_spread = y - loc
    if clip_k > 0.0:
        scale = max(math.sqrt(max(stat[1], 0.0)), min_scale)
        bound = clip_k * scale
        d = min(max(d, -bound), bound)
        bound = (clip_k + 2.0 if spread_k is None else spread_k) * scale
        d_spread = min(max(d_spread, -bound), bound)
    stat[0] = loc + a * d
    stat[1] = (1.0 - a) * (stat[1] + a * d_spread * d_spread)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 200):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function ``I_x(a, b)``.

    >>> round(betainc(2.0, 3.0, 0.4), 6), betainc(1.0, 1.0, 0.25)
    (0.5248, 0.25)
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_sf(t: float, df: float) -> float:
    """Upper tail of Student's t with ``df`` degrees of freedom (exact).

    A z-score whose scale is itself estimated has heavier tails than the normal; a small
    ``df`` also stands for data whose tails are heavier than a normal's (volumes). Uses
    ``P(T > t) = I_x(df/2, 1/2) / 2`` with ``x = df / (df + t²)``; beyond 200 degrees of
    freedom the normal tail.

    >>> round(student_sf(3.0, 66), 4), round(student_sf(3.0, 1e9), 4)
    (0.0019, 0.0013)
    >>> f"{student_sf(10.0, 5):.2e}", student_sf(-1.0, 5) > 0.8, student_sf(0.0, 5)
    ('8.55e-05', True, 0.5)
    """
    df = max(df, 1.0)
    if df > 200.0:
        return normal_sf(t)
    tail = 0.5 * betainc(0.5 * df, 0.5, df / (df + t * t))
    return tail if t >= 0.0 else 1.0 - tail


def ew_df(n: float, alpha: float) -> float:
    """Effective sample size behind an EW estimate: ``n - 1`` while young, then ``(2-a)/a``."""
    return max(1.0, min(n - 1.0, (2.0 - alpha) / alpha))


def ew_z(stat: Sequence[float], y: float, min_scale: float) -> float:
    """Standardised distance of ``y`` from ``stat = [location, variance, ...]``.

    >>> ew_z([10.0, 4.0, 50], 16.0, 0.1)
    3.0
    """
    return (y - stat[0]) / max(math.sqrt(max(stat[1], 0.0)), min_scale)


# -- peer-relative levels -----------------------------------------------------------------------


def group_shifts(
    ratios: Iterable[tuple[str, str, float]], min_peers: int, bound: float
) -> dict[tuple[str, str], float]:
    """Common shift of a peer group right now: ``{(group, feature): median log-ratio}``.

    ``ratios`` holds one ``(group, feature, log(value / agent's own typical value))`` per
    agent of the windows that closed together. When the whole group is busier at once
    (a daily peak, a fleet-wide batch), the median agent is; one agent that runs away
    moves the median by at most one rank. Groups with fewer than ``min_peers`` agents for a
    feature get no shift (nothing to compare with); shifts are clipped to ``± bound``.

    >>> rows = [("g", "events", r) for r in (1.2, 1.3, 1.25, 9.0)] + [("h", "events", 2.0)]
    >>> group_shifts(rows, 3, 5.0)
    {('g', 'events'): 1.275}
    """
    by: dict[tuple[str, str], list[float]] = {}
    for group, feature, r in ratios:
        by.setdefault((group, feature), []).append(r)
    return {
        key: min(bound, max(-bound, statistics.median(values)))
        for key, values in by.items()
        if len(values) >= min_peers
    }


# -- count tails ---------------------------------------------------------------------------------


def _deviance_poisson(x: float, m: float) -> float:
    """Half the Poisson deviance of observing ``x`` when ``m`` is expected."""
    if x <= 0.0:
        return m
    return x * math.log(x / m) - (x - m)


def _deviance_negbin(x: float, m: float, r: float) -> float:
    """Half the negative-binomial deviance (mean ``m``, size ``r``) of observing ``x``."""
    d = x * math.log(x / m) if x > 0.0 else 0.0
    return max(0.0, d - (x + r) * math.log((x + r) / (m + r)))


def _deviance_count(x: float, m: float, phi: float) -> float:
    """Poisson deviance, or negative binomial with variance ``phi · m`` when ``phi > 1``."""
    if phi <= 1.0 + 1e-9:
        return _deviance_poisson(x, m)
    return _deviance_negbin(x, m, m / (phi - 1.0))


def _deviance_binomial(k: float, n: float, q: float) -> float:
    """Half the binomial deviance of ``k`` successes in ``n`` trials at rate ``q``."""
    d = 0.0
    if k > 0.0:
        d += k * math.log(k / (n * q))
    if n - k > 0.0:
        d += (n - k) * math.log((n - k) / (n * (1.0 - q)))
    return max(0.0, d)


def _tails(up: float, down: float) -> tuple[float, float, float]:
    up, down = max(0.0, up), max(0.0, down)  # rounding can leave a deviance at -1e-17
    z_up = math.sqrt(2.0 * up)
    z_down = math.sqrt(2.0 * down)
    p_high = normal_sf(z_up) if up > 0.0 else 1.0
    p_low = normal_sf(z_down) if down > 0.0 else 1.0
    return p_high, p_low, z_up if up > 0.0 else -z_down


def count_tails(x: float, m: float, phi: float) -> tuple[float, float, float]:
    """``(p_high, p_low, z)`` of a count ``x`` with mean ``m`` and variance ``phi · m``.

    The normal tail of the signed deviance residual ``sqrt(2 D)`` of a negative binomial
    (Poisson when ``phi = 1``), with a continuity correction: within a factor of about two
    of the exact tail for a quiet agent (0.1 per window) and a chatty, bursty one alike.

    >>> p_high, p_low, z = count_tails(0.0, 10.0, 1.0)  # silence where 10 are usual
    >>> p_high, p_low < 1e-3, z < 0
    (1.0, True, True)
    """
    up = _deviance_count(x - 0.5, m, phi) if x - 0.5 > m else 0.0
    down = _deviance_count(x + 0.5, m, phi) if x + 0.5 < m else 0.0
    return _tails(up, down)


def binomial_tails(k: float, trials: float, q: float, phi: float) -> tuple[float, float, float]:
    """``(p_high, p_low, z)`` of ``k`` successes in ``trials`` at rate ``q`` (quasi-binomial:
    the deviance shrinks by the over-dispersion ``phi``).

    >>> one_of_one = binomial_tails(1.0, 1.0, 0.05, 1.0)[0]
    >>> one_of_one > 0.05, binomial_tails(20.0, 40.0, 0.05, 1.0)[0] < 1e-9
    (True, True)
    """
    up = _deviance_binomial(k - 0.5, trials, q) / phi if (k - 0.5) > q * trials else 0.0
    down = _deviance_binomial(k + 0.5, trials, q) / phi if (k + 0.5) < q * trials else 0.0
    return _tails(up, down)


# -- rule tables ---------------------------------------------------------------------------------


class _Rule(Protocol):
    @property
    def side(self) -> str: ...

    def matches(self, name: str) -> bool: ...


R = TypeVar("R", bound=_Rule)


class RuleBook(Generic[R]):
    """The first rule of a table whose pattern matches a name (``None``: not watched).

    Rules with ``side == "none"`` mean "not watched"; answers are cached for up to
    ``cache`` names.

    >>> from agentwatch.models.rate import FeatureRule
    >>> book = RuleBook((FeatureRule("tool.x", side="none"), FeatureRule("tool.*")))
    >>> book.get("tool.x") is None, book.get("tool.y").pattern, book.get("bytes") is None
    (True, 'tool.*', True)
    """

    __slots__ = ("_cache", "_limit", "rules")

    def __init__(self, rules: Sequence[R], cache: int = 4096) -> None:
        self.rules = tuple(rules)
        self._cache: dict[str, R | None] = {}
        self._limit = cache

    def get(self, name: str) -> R | None:
        try:
            return self._cache[name]
        except KeyError:
            pass
        rule = next((r for r in self.rules if r.matches(name)), None)
        if rule is not None and rule.side == "none":
            rule = None
        if len(self._cache) < self._limit:
            self._cache[name] = rule
        return rule


def glob_match(pattern: str, name: str) -> bool:
    """Case-sensitive glob match (the rule tables' pattern language)."""
    return fnmatch.fnmatchcase(name, pattern)


# -- empirical recalibration ---------------------------------------------------------------------

LEVELS: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0, 6.0, 8.0)
"""Surprise levels ``-log10 p`` at which a :class:`TailCalibrator` counts exceedances."""


def poisson_lower(count: float, z: float) -> float:
    """One-sided lower confidence bound of a Poisson mean after observing ``count``.

    Wilson–Hilferty: ``count · (1 - 1/(9 count) - z / (3 sqrt(count)))³`` (0 when that is
    negative); ``z = 1.645`` is a 95 % bound, ``z = 2.326`` a 99 % one.

    >>> round(poisson_lower(1.0, 1.645), 2), round(poisson_lower(100.0, 2.326))
    (0.04, 78)
    """
    if count <= 0.0:
        return 0.0
    root = 1.0 - 1.0 / (9.0 * count) - z / (3.0 * math.sqrt(count))
    return count * root**3 if root > 0.0 else 0.0


class TailCalibrator:
    """Maps a model's tail probability to the agent's observed rate of reaching it.

    The state of one agent (and kind of window) is a list ``[n, e_1, …, e_K]``: an
    exponentially decayed count of scored windows ``n`` and, per surprise level ``s_j``
    (:data:`LEVELS`), of windows whose raw ``p`` was at most ``10^-s_j``. The calibrated
    tail probability at level ``j`` is the larger of ``10^-s_j`` and a lower confidence
    bound (:func:`poisson_lower`, 99 %) of the observed rate ``e_j / (n + prior)``, where
    ``prior`` windows are assumed to follow the model: where the data clearly show the
    model's tail is too light it is corrected, otherwise the model is trusted — one early
    extreme window does not blunt the detector. Between levels the correction is
    interpolated on the log scale; beyond the last one the model's own relative tail is
    kept. The result is never smaller than the raw ``p`` and is monotone in it.

    Every scored window must be counted (flagged ones included): leaving the flagged ones
    out would erode the tail that is being measured.

    >>> cal = TailCalibrator()
    >>> state = cal.new()
    >>> for i in range(2000):  # a model that says p = 1e-4 for one window in ten
    ...     cal.count(state, 1e-4 if i % 10 == 0 else 0.5)
    >>> cal.p(state, 0.5), 0.05 < cal.p(state, 1e-4) < 0.1, cal.p(state, 1e-9) < 1e-4
    (0.5, True, True)
    >>> fresh = cal.new(); cal.count(fresh, 1e-6); cal.p(fresh, 1e-6) < 1e-4
    True
    """

    __slots__ = ("decay", "levels", "prior", "z")

    def __init__(
        self,
        levels: Sequence[float] = LEVELS,
        memory: float = 10_000.0,
        z: float = 2.326,
        prior: float = 100.0,
    ) -> None:
        if not levels or list(levels) != sorted(levels) or levels[0] <= 0:
            raise ValueError("levels must be increasing and positive")
        if memory < 1:
            raise ValueError("memory must be >= 1")
        self.levels = tuple(float(s) for s in levels)
        self.decay = 1.0 - 1.0 / memory
        self.z = z
        self.prior = prior

    def new(self) -> list[float]:
        return [0.0] * (len(self.levels) + 1)

    def count(self, state: list[float], p: float) -> None:
        """Fold one scored window's raw tail probability into ``state``."""
        s = surprise(p)
        decay = self.decay
        state[0] = state[0] * decay + 1.0
        for j, level in enumerate(self.levels, 1):
            state[j] = state[j] * decay + (1.0 if s >= level else 0.0)

    def p(self, state: Sequence[float] | None, p: float) -> float:
        """The calibrated tail probability of a raw ``p`` (no state change)."""
        if not state or state[0] <= 0.0 or p >= 1.0:
            return min(1.0, p)
        n = state[0] + self.prior
        s = surprise(p)
        # log10 of the calibrated exceedance at each level (non-increasing with depth)
        previous_s, previous_c = 0.0, 0.0
        ceiling = 0.0
        for j, level in enumerate(self.levels, 1):
            observed = poisson_lower(state[j], self.z) / n
            c = max(-level, math.log10(observed) if observed > 0.0 else -level)
            c = min(c, ceiling)
            ceiling = c
            if s <= level:
                frac = (s - previous_s) / (level - previous_s)
                calibrated = previous_c + frac * (c - previous_c)
                return max(p, math.pow(10.0, calibrated))
            previous_s, previous_c = level, c
        return max(p, P_FLOOR, math.pow(10.0, previous_c - (s - previous_s)))

    def state(self, state: Sequence[float]) -> list[float]:
        """Plain data for a snapshot (rounded: 4 significant digits are plenty)."""
        return [float(f"{x:.4g}") for x in state]

    def load(self, raw: Sequence[float] | None) -> list[float]:
        state = self.new()
        for i, x in enumerate(list(raw or ())[: len(state)]):
            state[i] = float(x)
        return state


def mapping_floats(raw: Mapping[str, Sequence[float]], width: int) -> dict[str, list[float]]:
    """``{name: [float] * width}`` from plain data (snapshots)."""
    return {str(k): [float(x) for x in v][:width] for k, v in raw.items()}
