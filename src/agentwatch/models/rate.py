"""Rate and volume baselines per agent and feature: is this window's value rare *for this agent*?

Pure code. For every feature of a closed window (or session) the detector keeps a robust
exponentially weighted baseline per agent, and one per peer group, and turns the window's
value into a tail probability. How a feature is modelled, and which side of it is news, is
data (:class:`FeatureRule`, matched by glob pattern, first match wins), not code:

``count`` (events, tool calls, destinations)
    location ``m`` is the EW mean count, spread ``φ`` the EW mean of squared Pearson
    residuals (over-dispersion, never below 1). The tail probability is the normal tail of
    the signed deviance residual ``sqrt(2 D)`` of a negative binomial with mean ``m`` and
    variance ``φ m`` (Poisson when ``φ = 1``), with a continuity correction — within a
    factor of about two of the exact tail for a quiet agent (0.1 events per window) and a
    chatty, bursty one (200, ``φ = 3``) alike. A count rule with ``active_only`` models the
    value only in windows where it is above zero — *how many, once used* — so a tool used
    in bursts a few times a day keeps its burst size as its baseline instead of an average
    that decays towards zero between uses (and makes every burst look extreme); whether it
    is used at all is the novelty detectors' business.
``ratio`` (error and denial rates)
    a quasi-binomial model with the window's denominator (``given``, e.g. ``actions``) as the
    number of trials: 1 error out of 1 call is not news, 20 out of 40 is.
``volume`` (bytes, tokens, cost, durations)
    a hurdle log-normal model: EW mean and variance of ``log(value + offset)`` over the
    windows where the value is above zero (whether there is any volume at all is a matter
    for the counts), with a Student-t tail of at most ``volume_df`` degrees of freedom:
    volumes are heavy-tailed (one large document read, one long answer), so a tenfold
    volume is notable but not "impossible"; ``offset`` sets the size below which
    differences do not matter (1 KB for bytes, a tenth of a cent for cost).

Sides: ``high`` (more is news), ``low`` (less is news), ``both`` (two-sided, p doubled) or
``none`` (not tested). By default ``events`` and ``tool_calls`` are two-sided — an agent that
goes silent is news — and everything else is high side only. A window's raw tail
probability is the Bonferroni bound over the features tested, so adding features does not
add false alarms.

Silence: one empty window is rarely news, a run of them is. Per agent, exponentially
weighted records (over ``silence_memory`` windows) count active windows, the silent spells
that followed them and how many of those spells reached 2, 4, … 64 windows
(:data:`SPELL_LEVELS`); a run of ``k`` silent windows gets ``quiet_windows`` ``p = P(a spell
starts) · P(a spell lasts ≥ k)``, each level shrunk towards a heavy-tailed ``1/k`` prior (an
agent never seen silent is not "impossible" to see silent) and extrapolated as ``1/k``. The
aggregator emits the zero windows as event time moves on (in a live worker, with the other
agents' events), so the silent agent's own next event is not needed. A spell is learned
once it is over and only if none of it was flagged. An agent with a record of silent
spells has its silent windows judged by that record instead of by the count models'
extrapolation to zero; one with a record of idle spells (alive — metric samples — but no
actions) is not tested on the low side while idle: pausing between tasks is how it works.

Peer-relative levels: windows close on the same boundaries for every agent, and the engine
hands each batch to :meth:`RateDetector.prepare` first. Per peer group and feature, the
median over the agents of ``log(value / own typical value)`` is the group's current level
(``min_peers`` agents at least); when the whole group is busier (a daily peak) every
agent's baseline is scaled up by it before the test; when it is quieter, only the low side
is tested against the scaled-down baseline. One runaway agent moves a median by one rank.

Calibration: the raw tail probability is then mapped, per agent and kind of window, to the
rate at which the agent's own scored windows reached it
(:class:`~agentwatch.models.robust.TailCalibrator`). The models above are approximations —
sessions cut by window boundaries, bimodal volumes, and the protection below (flagged
windows are never learned, so a baseline never sees its own tail) all make raw tails too
light — and the calibrator sees every scored window, flagged or not, so a reported
``p = 0.01`` means one window in a hundred of *this* agent.

Baselines resist poisoning: the engine only calls :meth:`RateDetector.learn` for windows it
did not flag (and :meth:`RateDetector.observe` for the others, which only counts them for
calibration), and every update is winsorised — the value is clipped to
``location ± clip_k · scale`` (plus one unit of slack for counts and ratios, so rare events
still register) before it moves the location, and to ``± (clip_k + 2) · scale`` before it
moves the scale. A baselined feature's location therefore moves at most
``alpha · (clip_k · scale + slack)`` per window however extreme the input; gradual
manipulation within that bound is what :mod:`agentwatch.models.drift` watches for.

Cold start: an agent is ``warming_up`` until it has ``min_windows`` learned windows; until
then (and for any feature of its own with fewer than ``min_windows`` observations) each
feature is scored against the peer group's baseline of that feature, learned from every
agent of the group. A feature new to an agent starts a fresh baseline; one it had not used
for a while decays towards zero with every window it is absent (unless ``active_only``).

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.features.windows import WindowFeatures
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> def window(i, calls, agent="a"):
...     start = t0 + timedelta(minutes=i)
...     values = {"events": float(calls), "tool_calls": float(calls)}
...     return WindowFeatures(agent, "support", "window", start.isoformat(), start,
...                           start + timedelta(minutes=1), values, calls)
>>> rate = RateDetector(RateConfig(min_windows=20))
>>> for i in range(60):
...     rate.learn(window(i, 10 + (i * 7) % 5))
>>> rate.status("a"), rate.score(window(60, 12)) is None
('baselined', True)
>>> finding = rate.score(window(61, 120))
>>> finding.contributions[0].feature, finding.p < 1e-6
('events', True)
>>> print(finding.explanation.split(";")[0])
events 120 in 60 s
>>> rate.score(window(62, 0)).contributions[0].unusual.startswith("low")  # silence is news
True
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from agentwatch.config import DetectSettings
from agentwatch.features.windows import WindowFeatures
from agentwatch.models.base import Finding, fmt, register, settings_overrides
from agentwatch.models.calibration import bonferroni
from agentwatch.models.robust import (
    N_CAP,
    RuleBook,
    TailCalibrator,
    binomial_tails,
    count_tails,
    ew_df,
    ew_update,
    ew_z,
    glob_match,
    group_shifts,
    student_sf,
)
from agentwatch.schemas.anomaly import Contribution

__all__ = [
    "SESSION_RULES",
    "WINDOW_RULES",
    "Baseline",
    "FeatureRule",
    "RateConfig",
    "RateDetector",
    "fmt",
    "settings_overrides",
    "with_sides",
]

Family = Literal["count", "ratio", "volume"]
Side = Literal["high", "low", "both", "none"]
Status = Literal["warming_up", "baselined"]


@dataclass(frozen=True, slots=True)
class FeatureRule:
    """How one feature (or a glob of features) is modelled and tested.

    Parameters
    ----------
    pattern
        Feature name or :mod:`fnmatch` glob (``tool.*``); the first matching rule wins.
    family
        ``count``, ``ratio`` or ``volume`` (see the module documentation).
    side
        ``high``, ``low``, ``both`` or ``none`` (tracked nowhere, never tested).
    offset
        ``volume`` only: the model is on ``log(value + offset)``.
    given
        Test (and learn) only when this feature is > 0; for ``ratio`` it is also the
        number of trials.
    active_only
        ``count`` only: model and test the value only where it is above zero.

    Examples
    --------
    >>> FeatureRule("tool.*").matches("tool.search"), FeatureRule("events").matches("tool.x")
    (True, False)
    """

    pattern: str
    family: Family = "count"
    side: Side = "high"
    offset: float = 1.0
    given: str | None = None
    active_only: bool = False

    def __post_init__(self) -> None:
        if self.family not in ("count", "ratio", "volume"):
            raise ValueError(f"rule {self.pattern!r}: unknown family {self.family!r}")
        if self.side not in ("high", "low", "both", "none"):
            raise ValueError(f"rule {self.pattern!r}: unknown side {self.side!r}")
        if self.family == "volume" and self.offset <= 0:
            raise ValueError(f"rule {self.pattern!r}: a volume needs offset > 0")
        if self.family == "ratio" and not self.given:
            raise ValueError(f"rule {self.pattern!r}: a ratio needs `given` (its denominator)")
        if self.active_only and self.family != "count":
            raise ValueError(f"rule {self.pattern!r}: active_only is for counts")

    def matches(self, name: str) -> bool:
        return glob_match(self.pattern, name)

    @property
    def positive_only(self) -> bool:
        """Whether windows where the value is zero are skipped (volumes, ``active_only``)."""
        return self.active_only or self.family == "volume"


# Rules the window and the session tables share.
_RARE = (
    FeatureRule("new_destinations", "count", "high"),
    FeatureRule("secret_accesses", "count", "high"),
    FeatureRule("error_rate", "ratio", "high", given="actions"),
    FeatureRule("denied_rate", "ratio", "high", given="actions"),
)
_SENT = (
    FeatureRule("bytes_out", "volume", "high", offset=1024.0),
    FeatureRule("tokens_out", "volume", "high", offset=100.0),
    FeatureRule("cost_usd", "volume", "high", offset=0.001),
)

WINDOW_RULES: tuple[FeatureRule, ...] = (
    FeatureRule("events", "count", "both"),
    FeatureRule("tool_calls", "count", "both"),
    FeatureRule("events.tool_call", side="none"),  # the same as tool_calls
    FeatureRule("events.secret_access", side="none"),  # the same as secret_accesses
    FeatureRule("events.*", "count", "high", active_only=True),
    FeatureRule("tool.*", "count", "high", active_only=True),
    FeatureRule("distinct_tools", "count", "high"),
    FeatureRule("distinct_destinations", "count", "high"),
    *_RARE,
    FeatureRule("bytes_in", "volume", "high", offset=1024.0),
    FeatureRule("tokens_in", "volume", "high", offset=100.0),
    *_SENT,
    FeatureRule("duration_p95_ms", "volume", "high", offset=10.0, given="actions"),
)
"""Default rules for tumbling windows (features not matched are not tested)."""

SESSION_RULES: tuple[FeatureRule, ...] = (
    FeatureRule("events", "volume", "high"),
    FeatureRule("tool_calls", "volume", "high"),
    FeatureRule("distinct_tools", "volume", "high"),
    FeatureRule("distinct_destinations", "volume", "high"),
    *_RARE,
    *_SENT,
)
"""Default rules for whole sessions: totals of a session vary with its length, so most are
modelled as volumes (log scale)."""


@dataclass(frozen=True, slots=True)
class RateConfig:
    """Tunables of :class:`RateDetector` (see :func:`settings_overrides` for settings).

    Parameters
    ----------
    alpha
        EW weight of one window in an agent's baseline (0.03 ≈ a 23-window half-life).
    group_alpha
        EW weight of one agent-window in a peer group's baseline.
    clip_k
        Winsorising bound: values are clipped to ``location ± clip_k · scale`` before learning.
    min_windows
        Learned windows before an agent is ``baselined`` (and per feature, observations
        before its own baseline is used instead of the peer group's).
    min_sessions
        The same for session baselines.
    min_group_windows
        Observations of a peer-group feature before it is used for cold start.
    prior_windows
        Weight, in windows, of a baseline seeded from the peer group or kept across a
        :meth:`RateDetector.rebaseline`.
    rebaseline_inflation
        Factor on the variance (or dispersion) of baselines kept across a rebaseline.
    min_count
        Floor of a count's expected value per window (a feature never seen is not "0").
    min_ratio
        Floor of a ratio's expected value (and of one minus it).
    min_log_scale
        Floor of a volume's scale in log units (0.1 ≈ ±10 %).
    volume_df
        Most degrees of freedom of a volume's Student-t tail (heavier tails than a normal).
    max_dispersion
        Ceiling of the over-dispersion ``φ`` of counts and ratios.
    max_features
        Features with a baseline per agent and kind (windows, sessions).
    max_group_features
        Features with a baseline per peer group and kind.
    max_groups
        Peer groups kept (least recently used evicted).
    report_p
        Windows with a (calibrated) tail probability above this produce no finding.
    calibration_memory
        Windows over which the per-agent calibration of tail probabilities decays.
    max_contributions
        Features listed in a finding's contributions.
    score_sessions
        Also score whole sessions (``kind == "session"``) against session baselines.
    silence
        Test runs of silent windows (``quiet_windows``, see the module documentation).
    silence_memory
        Windows over which the quiet-spell statistics decay (1440 one-minute windows: a day).
    group_relative
        Compare each agent's counts and volumes with its peer group's current level.
    min_peers
        Agents of a group, in windows that close together, needed for a group level.
    max_shift
        Bound of a group level, in log units (7 ≈ a thousandfold).
    window_rules, session_rules
        The feature rules (see :data:`WINDOW_RULES`, :data:`SESSION_RULES`).
    """

    alpha: float = 0.03
    group_alpha: float = 0.01
    clip_k: float = 3.0
    min_windows: int = 30
    min_sessions: int = 20
    min_group_windows: int = 50
    prior_windows: int = 10
    rebaseline_inflation: float = 4.0
    min_count: float = 0.02
    min_ratio: float = 0.01
    min_log_scale: float = 0.1
    volume_df: float = 5.0
    max_dispersion: float = 100.0
    max_features: int = 48
    max_group_features: int = 256
    max_groups: int = 1024
    report_p: float = 0.01
    calibration_memory: float = 10_000.0
    max_contributions: int = 5
    score_sessions: bool = True
    silence: bool = True
    silence_memory: float = 1440.0
    group_relative: bool = True
    min_peers: int = 3
    max_shift: float = 7.0
    window_rules: tuple[FeatureRule, ...] = WINDOW_RULES
    session_rules: tuple[FeatureRule, ...] = SESSION_RULES

    def __post_init__(self) -> None:
        if not (0 < self.alpha <= 1 and 0 < self.group_alpha <= 1):
            raise ValueError("alpha and group_alpha must be in (0, 1]")
        if self.clip_k <= 0 or self.rebaseline_inflation < 1:
            raise ValueError("clip_k must be > 0 and rebaseline_inflation >= 1")
        if min(self.min_windows, self.min_sessions, self.min_group_windows) < 1:
            raise ValueError("minimum counts must be >= 1")
        if not 0 <= self.prior_windows <= N_CAP:
            raise ValueError(f"prior_windows must be in [0, {N_CAP}]")
        if not 0 < self.min_ratio < 0.5 or self.min_count <= 0 or self.min_log_scale <= 0:
            raise ValueError("min_ratio must be in (0, 0.5), min_count and min_log_scale > 0")
        if self.volume_df < 1 or self.calibration_memory < 1 or self.silence_memory < 1:
            raise ValueError("volume_df, calibration_memory and silence_memory must be >= 1")
        if self.min_peers < 1 or self.max_shift < 0:
            raise ValueError("min_peers must be >= 1 and max_shift >= 0")


def with_sides(rules: tuple[FeatureRule, ...], sides: Mapping[str, str]) -> tuple[FeatureRule, ...]:
    """``rules`` with the side of some features overridden: ``{pattern: side}``.

    Each override is put first, modelled like the feature it matches in ``rules``, so a
    settings field such as ``rate_sides = {"bytes_out": "both", "tool.*": "none"}`` can
    re-target tests without code.

    >>> rules = with_sides(WINDOW_RULES, {"bytes_out": "both"})
    >>> rules[0].pattern, rules[0].family, rules[0].side, rules[0].offset
    ('bytes_out', 'volume', 'both', 1024.0)
    """
    extra = []
    for pattern, side in sides.items():
        like = next((r for r in rules if r.matches(pattern) or r.pattern == pattern), None)
        base = like if like is not None else FeatureRule(pattern)
        extra.append(replace(base, pattern=pattern, side=side))  # type: ignore[arg-type]
    return (*extra, *rules)


# -- the statistics ---------------------------------------------------------------------------
#
# A baseline is a list ``[location, spread, n]``: for counts and ratios the location is the EW
# mean and the spread the over-dispersion φ; for volumes the location and the variance of
# log(value + offset). ``n`` counts observations (saturating at N_CAP) and sets the
# warm-start weight max(alpha, 1 / (n + 1)).


@dataclass(frozen=True, slots=True)
class Baseline:
    """A readable view of one baseline: what is typical and how much it varies.

    ``typical`` and ``low``/``high`` (one scale either side) are in the feature's own units.
    """

    feature: str
    family: Family
    typical: float
    low: float
    high: float
    n: int


class _Model:
    """The statistics of one family, with the configured floors."""

    __slots__ = ("cfg",)

    def __init__(self, cfg: RateConfig) -> None:
        self.cfg = cfg

    def dispersion(self, stat: list[float]) -> float:
        return min(self.cfg.max_dispersion, max(1.0, stat[1]))

    def tails(
        self, rule: FeatureRule, stat: list[float], x: float, trials: float, alpha: float
    ) -> tuple[float, float, float]:
        """``(p_high, p_low, z)``: one-sided tail probabilities and a signed z-score."""
        family = rule.family
        if family == "volume":
            z = ew_z(stat, math.log(max(0.0, x) + rule.offset), self.cfg.min_log_scale)
            df = min(ew_df(stat[2], alpha), self.cfg.volume_df)
            return student_sf(z, df), student_sf(-z, df), z
        phi = self.dispersion(stat)
        if family == "count":
            return count_tails(x, max(stat[0], self.cfg.min_count), phi)
        q = min(max(stat[0], self.cfg.min_ratio), 1.0 - self.cfg.min_ratio)
        return binomial_tails(x * trials, trials, q, phi)

    def update(
        self,
        rule: FeatureRule,
        stat: list[float],
        x: float,
        trials: float,
        alpha: float,
        clip: bool,
    ) -> None:
        """Fold one observation into ``stat``, winsorised when ``clip``."""
        cfg = self.cfg
        n = stat[2]
        a = max(alpha, 1.0 / (n + 1.0))
        stat[2] = min(n + 1, N_CAP)
        k = cfg.clip_k
        family = rule.family
        if family == "volume":
            y = math.log(max(0.0, x) + rule.offset)
            ew_update(stat, y, a, k if clip else 0.0, cfg.min_log_scale)
            return
        m = stat[0]
        phi = self.dispersion(stat)
        if family == "count":
            var_unit = max(m, cfg.min_count)  # Poisson variance at the current mean
            slack = 1.0
        else:
            q = min(max(m, cfg.min_ratio), 1.0 - cfg.min_ratio)
            var_unit = q * (1.0 - q) / trials
            slack = 1.0 / trials
        wide = x
        if clip:
            spread = math.sqrt(phi * var_unit)
            bound = k * spread + slack
            x = min(max(x, m - bound), m + bound)
            bound = (k + 2.0) * spread + slack
            wide = min(max(wide, m - bound), m + bound)
        d = x - m
        stat[0] = max(0.0, m + a * d)
        d = wide - m
        stat[1] = min(cfg.max_dispersion, (1.0 - a) * stat[1] + a * d * d / var_unit)

    def view(self, name: str, rule: FeatureRule, stat: list[float]) -> Baseline:
        family = rule.family
        if family == "volume":
            sd = max(math.sqrt(max(stat[1], 0.0)), self.cfg.min_log_scale)
            loc = stat[0]
            return Baseline(
                name,
                family,
                max(0.0, math.exp(loc) - rule.offset),
                max(0.0, math.exp(loc - sd) - rule.offset),
                math.exp(loc + sd) - rule.offset,
                int(stat[2]),
            )
        m = stat[0]
        if family == "count":
            sd = math.sqrt(self.dispersion(stat) * max(m, self.cfg.min_count))
        else:  # per single trial: how much the rate of one window of one action varies
            sd = math.sqrt(self.dispersion(stat) * max(m, self.cfg.min_ratio) * (1.0 - m))
            return Baseline(name, family, m, max(0.0, m - sd), min(1.0, m + sd), int(stat[2]))
        return Baseline(name, family, m, max(0.0, m - sd), m + sd, int(stat[2]))


@dataclass(slots=True)
class _Baselines:
    """Baselines of one owner (an agent or a peer group) for one kind of window.

    An agent's also carry its calibration state ``cal`` (see
    :class:`~agentwatch.models.robust.TailCalibrator`).
    """

    windows: int = 0  # learned since the start (or the last rebaseline)
    features: dict[str, list[float]] = field(default_factory=dict)
    cal: list[float] | None = None
    # Quiet-spell records (tumbling windows only), silent (no events) then idle (no
    # actions); see ``_new_spells``.
    quiet: list[float] | None = None

    def state(self, cal: TailCalibrator) -> dict[str, Any]:
        features = {k: [v[0], v[1], int(v[2])] for k, v in self.features.items()}
        out: dict[str, Any] = {"n": self.windows, "f": features}
        if self.cal is not None:
            out["c"] = cal.state(self.cal)
        if self.quiet is not None:
            out["q"] = [
                x if i % _SPELL == _END else float(f"{x:.6g}") for i, x in enumerate(self.quiet)
            ]
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, Any], cal: TailCalibrator) -> _Baselines:
        features = {
            str(k): [float(v[0]), float(v[1]), float(v[2])] for k, v in state.get("f", {}).items()
        }
        raw = state.get("c")
        quiet = state.get("q")
        return cls(
            int(state.get("n", 0)),
            features,
            cal.load(raw) if raw else None,
            [float(x) for x in quiet][: 2 * _SPELL] if quiet and len(quiet) >= 2 * _SPELL else None,
        )


def _observed(
    book: RuleBook[FeatureRule], values: Mapping[str, float]
) -> Iterator[tuple[str, FeatureRule, float, float]]:
    """``(feature, rule, value, trials)`` of the window's features its rules test."""
    for name, x in values.items():
        rule = book.get(name)
        if rule is None:
            continue
        trials = 0.0
        if rule.given is not None:
            trials = values.get(rule.given, 0.0)
            if trials <= 0.0:
                continue
        if x <= 0.0 and rule.positive_only:
            continue
        yield name, rule, x, trials


_QUIET_RULE = FeatureRule("quiet_windows", "count", "low")

SPELL_LEVELS: tuple[float, ...] = (2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
"""Spell lengths (windows) at which the quiet-spell records count spells that reached them."""
# One spell record: [active windows (EW), spells (EW), spells reaching each level (EW) …,
# current run, end of the last window seen (epoch s), windows of the current run learned].
_RUN = 2 + len(SPELL_LEVELS)
_END = _RUN + 1
_CLEAN = _RUN + 2
_SPELL = _CLEAN + 1  # record length; the idle record follows the silent one


def _new_spells() -> list[float]:
    record = [0.0] * _SPELL
    record[_END] = -1.0
    return record * 2


def _spell_survival(q: list[float], o: int, k: float) -> float:
    """``P(a spell lasts at least k windows)`` from the record's counts at
    :data:`SPELL_LEVELS`, each shrunk towards a heavy-tailed prior ``1/k`` (one pseudo
    spell), log-log interpolated between levels and extrapolated as ``1/k`` beyond the last.
    Spell lengths are heavy-tailed (short pauses, long breaks): a geometric model would make
    every long break look impossible."""
    if k <= 1.0:
        return 1.0
    spells = q[o + 1]
    previous_level, previous = 1.0, 1.0
    for j, level in enumerate(SPELL_LEVELS):
        reached = min(previous, (q[o + 2 + j] + 1.0 / level) / (spells + 1.0))
        if k <= level:
            frac = math.log(k / previous_level) / math.log(level / previous_level)
            return math.exp(math.log(previous) + frac * (math.log(reached) - math.log(previous)))
        previous_level, previous = level, reached
    return previous * previous_level / k


def _spell_survival_median(q: list[float], o: int) -> float:
    """The spell length half of the agent's spells reach (for explanations)."""
    k = 1.0
    while k < 4096 and _spell_survival(q, o, k * 2.0) >= 0.5:
        k *= 2.0
    return k


def _shifted(rule: FeatureRule, stat: list[float], shift: float, min_count: float) -> list[float]:
    """A baseline moved up by a peer group's current level (``shift``, log units)."""
    if rule.family == "volume":
        return [stat[0] + shift, stat[1], stat[2]]
    m = math.exp(shift) * (max(stat[0], min_count) + 1.0) - 1.0
    return [m, stat[1], stat[2]]


@dataclass(frozen=True, slots=True)
class _Test:
    feature: str
    rule: FeatureRule
    value: float
    p: float
    z: float
    side: str
    baseline: Baseline
    reference: str  # "own" or "peer_group"


class RateDetector:
    """Robust per-agent, per-feature baselines of window and session features.

    Parameters
    ----------
    config
        Tunables and feature rules (defaults: :class:`RateConfig`).

    Notes
    -----
    State per agent is ``{"window": {"n": windows, "f": {feature: [location, spread, n]},
    "c": [calibration]}, "session": {...}}``: about 45 bytes of msgpack per feature, at most
    ``max_features`` per kind — under 3 KB with the default rules and 16 tools. Peer-group
    baselines are shared and exported separately (:meth:`group_state_of`).
    """

    name = "rate"

    def __init__(self, config: RateConfig | None = None) -> None:
        self.config = cfg = config or RateConfig()
        self._model = _Model(cfg)
        self._books: dict[str, RuleBook[FeatureRule]] = {"window": RuleBook(cfg.window_rules)}
        self._minimum: dict[str, int] = {"window": cfg.min_windows, "session": cfg.min_sessions}
        if cfg.score_sessions:
            self._books["session"] = RuleBook(cfg.session_rules)
        self._calibrator = TailCalibrator(memory=cfg.calibration_memory)
        self._agents: dict[str, dict[str, _Baselines]] = {}
        self._groups: OrderedDict[tuple[str, str], _Baselines] = OrderedDict()
        # The last scored window and its raw tail probability, not yet counted for calibration.
        self._pending: tuple[WindowFeatures, float] | None = None
        # Peer groups' current levels, {("window key\x1fgroup", feature): log shift}, from
        # the windows that close together (see :meth:`prepare`).
        self._shifts: dict[tuple[str, str], float] = {}
        self._quiet_decay = 1.0 - 1.0 / cfg.silence_memory

    # -- rules ------------------------------------------------------------------------------

    def rule_for(self, kind: str, feature: str) -> FeatureRule | None:
        """The rule testing ``feature`` in windows of ``kind`` (``None``: not tested)."""
        book = self._books.get(kind)
        return None if book is None else book.get(feature)

    # -- protocol ---------------------------------------------------------------------------

    def agents(self) -> int:
        return len(self._agents)

    def groups(self) -> int:
        """Peer groups with a baseline."""
        return len({group for _, group in self._groups})

    def status(self, agent_id: str) -> Status:
        """``baselined`` once the agent has ``min_windows`` learned windows."""
        own = self._agents.get(agent_id, {}).get("window")
        return "baselined" if own and own.windows >= self.config.min_windows else "warming_up"

    def score(self, window: WindowFeatures) -> Finding | None:
        """How rare the window's features are for its agent.

        Changes no baseline; the window's raw tail probability is remembered and counted for
        calibration when the window is learned or observed (or the next window is scored).
        """
        tests = self._tests(window)
        if not tests:
            return None
        best = min(tests, key=lambda t: t.p)
        raw = bonferroni(best.p, len(tests))
        self._remember(window, raw)
        own = self._agents.get(window.agent_id, {}).get(window.kind)
        p = self._calibrator.p(own.cal if own else None, raw)
        cfg = self.config
        if p > cfg.report_p:
            return None
        notable = sorted((t for t in tests if t.p * len(tests) <= cfg.report_p), key=lambda t: t.p)
        notable = notable or [best]
        span = (
            f"in {fmt((window.end - window.start).total_seconds())} s"
            if window.kind == "window"
            else f"in session {window.key}"
        )
        typical = self._typical(best, window.peer_group)
        explanation = f"{best.feature} {fmt(best.value)} {span}; {typical}, p={p:.1g}"
        if len(notable) > 1:
            others = ", ".join(t.feature for t in notable[1:4])
            explanation += f"; also unusual: {others}" + (" …" if len(notable) > 4 else "")
        contributions = tuple(
            Contribution(
                feature=t.feature,
                value=t.value,
                typical=t.baseline.typical,
                unusual=f"{t.side} side, z={t.z:+.1f}, p={t.p:.1g}"
                + (" vs peer group" if t.reference == "peer_group" else ""),
            )
            for t in notable[: cfg.max_contributions]
        )
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=contributions,
            event_ids=window.event_ids,
            keys=tuple(f"rate/{t.feature}" for t in notable),
            extra={
                "status": self.status(window.agent_id),
                "kind": window.kind,
                "tested": len(tests),
                "windows": own.windows if own else 0,
                "raw_p": raw,
            },
        )

    @staticmethod
    def _typical(test: _Test, group: str) -> str:
        b = test.baseline
        if test.feature == "quiet_windows":
            return f"no events; half its silent spells last {fmt(b.typical)} windows or more"
        if test.feature == "idle_windows":
            return f"no actions; half its idle spells last {fmt(b.typical)} windows or more"
        whose = "typical" if test.reference == "own" else f"typical for peer group {group!r}"
        if b.family == "ratio":
            return f"{whose} {b.typical:.1%}"
        if b.family == "count":
            when = " when used" if test.rule.active_only else ""
            return f"{whose}{when} {fmt(b.typical)} (±{fmt(b.high - b.typical)})"
        return f"{whose} {fmt(b.typical)} ({fmt(b.low)}–{fmt(b.high)})"

    def _tests(self, window: WindowFeatures) -> list[_Test]:
        kind = window.kind
        book = self._books.get(kind)
        if book is None:
            return []
        cfg = self.config
        minimum = self._minimum[kind]
        own = self._agents.get(window.agent_id, {}).get(kind)
        own_ready = own is not None and own.windows >= minimum
        group = self._groups.get((kind, window.peer_group))
        model = self._model
        tests: list[_Test] = []
        shifts = self._shifts if kind == "window" else None
        where = window.cohort
        for name, rule, x, trials in _observed(book, window.values):
            stat = own.features.get(name) if own_ready and own is not None else None
            reference = "own"
            if stat is None or stat[2] < minimum:
                stat = group.features.get(name) if group is not None else None
                reference = "peer_group"
                if stat is None or stat[2] < cfg.min_group_windows:
                    continue
            alpha = cfg.alpha if reference == "own" else cfg.group_alpha
            shift = 0.0
            if shifts and reference == "own" and rule.family != "ratio":
                shift = shifts.get((where, name), 0.0)
            if shift > 0.0:  # a busier group: more is expected on either side
                stat = _shifted(rule, stat, shift, cfg.min_count)
            p_high, p_low, z = model.tails(rule, stat, x, trials, alpha)
            if shift < 0.0 and rule.side in ("low", "both"):
                # a quieter group excuses less, never more
                quieter = _shifted(rule, stat, shift, cfg.min_count)
                _, p_low, z_low = model.tails(rule, quieter, x, trials, alpha)
                if p_low <= p_high:
                    stat, z = quieter, z_low
            side = rule.side
            if side == "both":
                p, side = (2.0 * p_high, "high") if p_high <= p_low else (2.0 * p_low, "low")
            elif side == "high":
                p = p_high
            else:
                p = p_low
            tests.append(
                _Test(name, rule, x, min(1.0, p), z, side, model.view(name, rule, stat), reference)
            )
        if tests and own_ready and own is not None and own.quiet is not None and cfg.silence:
            q = own.quiet
            if window.events == 0:
                quiet = self._quiet_test(q, 0, window)
                if quiet is not None:
                    if q[1] >= 1.0:
                        # The agent has a record of silent spells: a silent window is judged
                        # by it, not by count models extrapolated to nothing.
                        tests = [t for t in tests if t.side != "low"]
                    tests.append(quiet)
            elif window.values.get("actions", 0.0) <= 0.0 and q[_SPELL + 1] >= 1.0:
                # Idle but alive (metric samples, session markers) and the agent has a record
                # of idle spells: pausing between tasks is how it works, not news. (Idle
                # spells are too heavy-tailed — pauses, breaks, nights — to test their length.)
                tests = [t for t in tests if t.side != "low"]
        return tests

    def _quiet_test(self, q: list[float], o: int, window: WindowFeatures) -> _Test | None:
        """How rare a spell of this many silent (``o = 0``) or idle (``o = _SPELL``) windows
        is for the agent: ``P(a spell starts) · P(a spell lasts k windows or more)``."""
        if q[o] < self.config.min_windows:
            return None
        consecutive = q[o + _END] == window.start.timestamp()
        k = q[o + _RUN] + 1.0 if consecutive else 1.0
        start = (q[o + 1] + 1.0) / (q[o] + 2.0)  # Laplace: never seen is not impossible
        p = min(1.0, start * _spell_survival(q, o, k))
        typical = _spell_survival_median(q, o)
        name = "quiet_windows" if o == 0 else "idle_windows"
        view = Baseline(name, "count", typical, 1.0, typical, int(q[o]))
        z = -math.sqrt(2.0 * max(0.0, -math.log(max(p, 1e-300))))
        return _Test(name, _QUIET_RULE, k, p, z, "low", view, "own")

    def prepare(self, windows: Iterable[WindowFeatures]) -> None:
        """Peer groups' current levels from the windows that close together.

        Per peer group and feature, the median over the group's agents of ``log(value /
        the agent's own typical value)`` (counts: ``log((x + 1) / (m + 1))``; volumes, on
        windows with any: ``log(x + offset) -`` the log location). When it is positive —
        the whole group is busier right now, e.g. at its daily peak — each agent's own
        baseline is scaled up by it before its window is tested: a group three times busier
        has a median agent three times busier, and being as busy as one's peers is not news.
        When it is negative (the group is quieter), only the low side is tested against the
        scaled-down baseline. One runaway agent moves a median by one rank at most.
        """
        cfg = self.config
        self._shifts = {}
        if not cfg.group_relative:
            return
        book = self._books["window"]
        rows: list[tuple[str, str, float]] = []
        for window in windows:
            if window.kind != "window":
                continue
            own = self._agents.get(window.agent_id, {}).get("window")
            if own is None or own.windows < cfg.min_windows:
                continue
            where = window.cohort
            features = own.features
            for name, rule, x, _ in _observed(book, window.values):
                stat = features.get(name)
                if stat is None or stat[2] < cfg.min_windows or rule.family == "ratio":
                    continue
                if rule.family == "count":
                    r = math.log((x + 1.0) / (max(stat[0], 0.0) + 1.0))
                else:
                    r = math.log(x + rule.offset) - stat[0]
                rows.append((where, name, r))
        # A busier group excuses more (and makes less more surprising); a quieter one only
        # excuses less: most agents idle at night must not make the few active ones look
        # busier than they are.
        self._shifts = group_shifts(rows, cfg.min_peers, cfg.max_shift)

    def _quiet_update(self, window: WindowFeatures, learn: bool) -> None:
        """Fold a tumbling window into its agent's spell records (silent: no events; idle:
        no actions).

        The run length follows every window. A spell is learned only once it is over (the
        agent sent, or worked, again) and only if none of its windows was flagged: a silence
        in progress must not teach itself that silence is usual.
        """
        if window.kind != "window" or not self.config.silence:
            return
        own = self._owner(window.agent_id, "window")
        q = own.quiet
        if q is None:
            q = own.quiet = _new_spells()
        end = window.end.timestamp()
        consecutive = q[_END] == window.start.timestamp()
        d = self._quiet_decay
        idle = window.values.get("actions", 0.0) <= 0.0
        for o, quiet in ((0, window.events == 0), (_SPELL, idle)):
            run, clean = q[o + _RUN], q[o + _CLEAN]
            if run > 0 and (not quiet or not consecutive) and clean >= run:  # a spell is over
                q[o + 1] += 1.0
                for j, level in enumerate(SPELL_LEVELS):
                    if run >= level:
                        q[o + 2 + j] += 1.0
            if consecutive and learn and (not quiet or run == 0):
                # one more active window that could have been followed by a spell
                for i in range(o, o + 2 + len(SPELL_LEVELS)):
                    q[i] *= d
                q[o] += 1.0
            if quiet:
                q[o + _RUN] = run + 1.0 if consecutive else 1.0
                q[o + _CLEAN] = (clean if consecutive else 0.0) + (1.0 if learn else 0.0)
            else:
                q[o + _RUN] = q[o + _CLEAN] = 0.0
            q[o + _END] = end

    # -- calibration --------------------------------------------------------------------------

    def _remember(self, window: WindowFeatures, raw: float) -> None:
        pending = self._pending
        if pending is not None and pending[0] is not window:
            self._count(*pending)
        self._pending = (window, raw)

    def _settle(self, window: WindowFeatures) -> None:
        pending = self._pending
        if pending is not None and pending[0] is window:
            self._pending = None
            self._count(*pending)

    def _count(self, window: WindowFeatures, raw: float) -> None:
        own = self._owner(window.agent_id, window.kind)
        if own.cal is None:
            own.cal = self._calibrator.new()
        self._calibrator.count(own.cal, raw)

    def _owner(self, agent_id: str, kind: str) -> _Baselines:
        kinds = self._agents.get(agent_id)
        if kinds is None:
            kinds = self._agents[agent_id] = {}
        own = kinds.get(kind)
        if own is None:
            own = kinds[kind] = _Baselines()
        return own

    def observe(self, window: WindowFeatures) -> None:
        """A scored window that is not learned (it was flagged).

        It is counted for calibration, and its volumes widen the agent's volume scales
        (winsorised at ``clip_k + 2`` scales, as any update) — never the locations: a
        baseline that never sees its own tail thinks its tail is thinner than it is, but
        what is typical must not follow what was flagged.
        """
        self._settle(window)
        self._quiet_update(window, learn=False)
        kind = window.kind
        own = self._agents.get(window.agent_id, {}).get(kind)
        if own is None or own.windows < self._minimum.get(kind, 1):
            return
        book = self._books[kind]
        cfg = self.config
        for name, x in window.values.items():
            rule = book.get(name)
            stat = own.features.get(name)
            if rule is None or stat is None or rule.family != "volume" or x <= 0.0:
                continue
            if rule.given is not None and window.values.get(rule.given, 0.0) <= 0.0:
                continue
            spread = [stat[0], stat[1], stat[2]]
            a = max(cfg.alpha, 1.0 / (stat[2] + 1.0))
            ew_update(spread, math.log(x + rule.offset), a, cfg.clip_k, cfg.min_log_scale)
            stat[1] = spread[1]

    # -- learning ---------------------------------------------------------------------------

    def learn(self, window: WindowFeatures) -> None:
        """Fold the window into its agent's and its peer group's baselines (winsorised)."""
        kind = window.kind
        if kind not in self._books:
            return
        self._settle(window)
        self._quiet_update(window, learn=True)
        cfg = self.config
        own = self._owner(window.agent_id, kind)
        key = (kind, window.peer_group)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Baselines()
            while len(self._groups) > cfg.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(key)
        self._fold(kind, own, window.values, cfg.alpha, cfg.max_features, group)
        self._fold(kind, group, window.values, cfg.group_alpha, cfg.max_group_features, None)

    def _fold(
        self,
        kind: str,
        owner: _Baselines,
        values: Mapping[str, float],
        alpha: float,
        max_features: int,
        seed: _Baselines | None,
    ) -> None:
        cfg = self.config
        model = self._model
        book = self._books[kind]
        prior = cfg.prior_windows
        features = owner.features
        first = owner.windows == 0
        # Features the owner tracks but the window lacks count as zero.
        for name in [n for n in features if n not in values]:
            rule = book.get(name)
            if rule is None or rule.given is not None or rule.positive_only:
                continue
            stat = features[name]
            model.update(rule, stat, 0.0, 0.0, alpha, stat[2] >= prior)
        for name, rule, x, trials in _observed(book, values):
            found = features.get(name)
            if found is None:
                if (x == 0.0 and not first) or len(features) >= max_features:
                    continue
                found = features[name] = self._new_stat(name, rule, seed)
            model.update(rule, found, x, trials, alpha, found[2] >= prior)
        owner.windows = min(owner.windows + 1, N_CAP)

    def _new_stat(self, name: str, rule: FeatureRule, seed: _Baselines | None) -> list[float]:
        """A fresh baseline, seeded from the peer group's when it has one."""
        cfg = self.config
        if seed is not None:
            source = seed.features.get(name)
            if source is not None and source[2] >= cfg.min_group_windows:
                return [source[0], source[1], float(cfg.prior_windows)]
        if rule.family == "volume":
            return [math.log(rule.offset), 0.0, 0.0]
        return [0.0, 1.0, 0.0]

    # -- baselines ---------------------------------------------------------------------------

    def baseline(self, agent_id: str, feature: str, kind: str = "window") -> Baseline | None:
        """The agent's own baseline of ``feature`` (``None`` if it has none)."""
        own = self._agents.get(agent_id, {}).get(kind)
        rule = self.rule_for(kind, feature)
        stat = own.features.get(feature) if own else None
        return None if stat is None or rule is None else self._model.view(feature, rule, stat)

    def group_baseline(self, group: str, feature: str, kind: str = "window") -> Baseline | None:
        """The peer group's baseline of ``feature``."""
        owner = self._groups.get((kind, group))
        rule = self.rule_for(kind, feature)
        stat = owner.features.get(feature) if owner else None
        return None if stat is None or rule is None else self._model.view(feature, rule, stat)

    def rebaseline(self, agent_id: str) -> None:
        """Start a new baseline (new ``agent_version``) seeded from the previous one.

        Locations are kept; variances and dispersions are multiplied by
        ``rebaseline_inflation``; observation counts drop to ``prior_windows`` so the
        baseline adapts quickly; the agent is ``warming_up`` (scored against its peer group)
        for ``min_windows`` windows.
        """
        for kind, owner in self._agents.get(agent_id, {}).items():
            owner.windows = 0
            self._inflate(kind, owner, list(owner.features))

    def accept_keys(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: ``rate/<feature>`` keys of a finding are benign for this agent.

        Those features get the rebaseline treatment (wider scale, quick adaptation). The
        method is not called ``accept`` so that the engine keeps treating this detector as
        a window detector.
        """
        chosen = {k[5:] for k in keys if k.startswith("rate/")}
        for kind, owner in self._agents.get(agent_id, {}).items():
            self._inflate(kind, owner, [f for f in owner.features if f in chosen])

    def _inflate(self, kind: str, owner: _Baselines, names: list[str]) -> None:
        cfg = self.config
        for name in names:
            stat = owner.features[name]
            rule = self.rule_for(kind, name)
            if rule is None:
                continue
            if rule.family == "volume":
                stat[1] = max(stat[1], cfg.min_log_scale**2) * cfg.rebaseline_inflation
            else:
                stat[1] = min(cfg.max_dispersion, max(stat[1], 1.0) * cfg.rebaseline_inflation)
            stat[2] = float(min(stat[2], cfg.prior_windows))

    # -- snapshots ---------------------------------------------------------------------------

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self._agents.pop(agent_id, None)
        if self._pending is not None and self._pending[0].agent_id == agent_id:
            self._pending = None

    def state_of(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's baselines as plain data (msgpack-able), or ``None``.

        A scored window not counted for calibration yet counts, as it will be.
        """
        kinds = self._agents.get(agent_id)
        pending = self._pending
        if pending is not None and pending[0].agent_id == agent_id:
            self._pending = None
            self._count(*pending)
            kinds = self._agents.get(agent_id)
        if not kinds:
            return None
        return {kind: owner.state(self._calibrator) for kind, owner in kinds.items()}

    def load_state(self, agent_id: str, state: Any) -> None:
        """Restore what :meth:`state_of` returned."""
        if not state:
            return
        if self._pending is not None and self._pending[0].agent_id == agent_id:
            self._pending = None
        self._agents[agent_id] = {
            str(kind): _Baselines.from_state(owner, self._calibrator)
            for kind, owner in state.items()
        }

    def group_state_of(self, group: str) -> dict[str, Any] | None:
        """A peer group's baselines as plain data, or ``None``."""
        kinds = {k: o.state(self._calibrator) for (k, g), o in self._groups.items() if g == group}
        return kinds or None

    def load_group_state(self, group: str, state: Any) -> None:
        """Restore what :meth:`group_state_of` returned."""
        for kind, owner in (state or {}).items():
            self._groups[(str(kind), group)] = _Baselines.from_state(owner, self._calibrator)


@register("rate")
def _build(settings: DetectSettings) -> RateDetector:
    overrides = settings_overrides(settings, "rate_", RateConfig)
    sides = getattr(settings, "rate_sides", None)
    if isinstance(sides, Mapping) and sides:
        overrides["window_rules"] = with_sides(WINDOW_RULES, sides)
    return RateDetector(RateConfig(**overrides))
