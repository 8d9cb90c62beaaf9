"""Slow drift of a baseline: a fast and a slow average that walk apart (gradual manipulation).

Pure code. A patient attacker raises a value a little every window — each window alone is
unremarkable, and the rate baselines follow it (within their per-window clipping bound).
This detector keeps, per agent and feature, exponentially weighted statistics of
``log(value + offset)``:

* a **fast** mean (``fast_alpha``: the last ten or so windows) — the current level,
* a **slow** mean (``slow_alpha``: the last few hundred windows) — the long-run level,
* the **noise** variance of single windows around the fast mean, and
* the **gap** variance: how far the fast mean usually strays from the slow one. Real agents
  work in sessions and daily cycles, so consecutive windows are correlated and the gap
  strays much further than independent noise would suggest; it is learned, with the
  independent-noise value ``sd · sqrt(fast_alpha / (2 - fast_alpha))`` as its floor.

The gap measured in its own scale is a z-score. A ``baseline_drift`` finding is raised when
it stays beyond ``z_threshold`` (on a side the feature's rule tests) for ``sustain``
consecutive windows, the levels differ by at least ``min_change`` (relative) and the
feature is not too sparse to have a level (at least ``min_level`` times its offset per
window, e.g. one event); its tail probability is that of the current gap, Bonferroni over
the features tested. Learned values are winsorised around the slow mean, gap updates are
clipped at the threshold, and flagged windows only move the fast mean (:meth:`observe`),
so neither the slow mean nor the scales can be dragged along.

**Peer-relative levels** (``group_relative``): real agents follow daily cycles, and a
group of agents doing the same job is busy at the same hours. Before the windows that
close together are scored, :meth:`DriftDetector.prepare` takes, per peer group and
feature, the median of the agents' ``log value - slow mean`` (at least ``min_peers``
agents, bounded by ``max_shift``) and, when it is positive, every agent's value is
measured relative to it: a
group that is three times busier at its daily peak has a median agent three times busier,
and nobody drifts; one agent walking away from its peers does.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.features.windows import WindowFeatures
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> def window(i, calls):
...     start = t0 + timedelta(minutes=i)
...     return WindowFeatures("a", "g", "window", start.isoformat(), start,
...                           start + timedelta(minutes=1), {"tool_calls": calls}, int(calls))
>>> drift = DriftDetector()
>>> for i in range(100):
...     drift.learn(window(i, 20.0 + (i % 3)))
>>> drift.score(window(100, 21.0)) is None
True
>>> level, found = 21.0, None
>>> for i in range(101, 200):  # +3 % per window: each window alone looks ordinary
...     level *= 1.03
...     found = drift.score(window(i, round(level)))
...     if found:
...         break
...     drift.learn(window(i, round(level)))
>>> found.detector, found.contributions[0].feature, i - 100 < 30
('baseline_drift', 'tool_calls', True)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from agentwatch.config import DetectSettings
from agentwatch.features.windows import WindowFeatures
from agentwatch.models.base import Finding, fmt, register, settings_overrides
from agentwatch.models.calibration import bonferroni, normal_sf
from agentwatch.models.rate import FeatureRule
from agentwatch.models.robust import N_CAP, RuleBook, group_shifts
from agentwatch.schemas.anomaly import Contribution

__all__ = ["DRIFT_RULES", "DriftConfig", "DriftDetector"]

DRIFT_RULES: tuple[FeatureRule, ...] = (
    FeatureRule("events", "volume", "high", offset=1.0),
    FeatureRule("tool_calls", "volume", "high", offset=1.0),
    FeatureRule("distinct_tools", "volume", "high", offset=1.0),
    FeatureRule("distinct_destinations", "volume", "high", offset=1.0),
    FeatureRule("new_destinations", "volume", "high", offset=1.0),
    FeatureRule("secret_accesses", "volume", "high", offset=1.0),
    FeatureRule("error_rate", "volume", "high", offset=0.05, given="actions"),
    FeatureRule("denied_rate", "volume", "high", offset=0.05, given="actions"),
    FeatureRule("bytes_in", "volume", "high", offset=1024.0),
    FeatureRule("bytes_out", "volume", "high", offset=1024.0),
    FeatureRule("tokens_in", "volume", "high", offset=100.0),
    FeatureRule("tokens_out", "volume", "high", offset=100.0),
    FeatureRule("cost_usd", "volume", "high", offset=0.001),
    FeatureRule("duration_p95_ms", "volume", "high", offset=10.0, given="actions"),
)
"""Default drift rules: every feature on ``log(value + offset)``; only ``pattern``,
``side``, ``offset`` and ``given`` of a rule are used here."""


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """Tunables of :class:`DriftDetector`.

    Parameters
    ----------
    fast_alpha, slow_alpha
        EW weights of the fast and the slow mean.
    noise_alpha
        EW weight of the single-window noise variance.
    gap_alpha
        EW weight of the fast-vs-slow gap variance.
    z_threshold
        Gap, in units of the fast mean's own noise, that counts as walked away.
    sustain
        Consecutive windows beyond ``z_threshold`` before a finding.
    min_windows
        Observations of a feature before it is tested.
    min_change
        Smallest relative difference between the levels worth a finding (0.25 = 25 %).
    min_level
        A feature is tested only when its recent or long-run level is at least
        ``min_level · offset`` per window (sparse features have no level to drift).
    min_scale
        Floor of the noise scale in log units.
    clip_k
        Learned values are clipped to ``slow ± clip_k · scale``.
    prior_windows
        Observations kept by :meth:`DriftDetector.rebaseline` (the rest is re-learned).
    max_features
        Features tracked per agent.
    report_p
        Findings with a larger tail probability are not reported.
    group_relative
        Measure each window relative to its peer group's current level (see the module
        documentation): what the whole group does at once is not one agent's drift.
    min_peers
        Agents of a group, in windows that close together, needed for a group level.
    max_shift
        Bound of the group level's shift, in log units (7 ≈ a thousandfold).
    rules
        Which features are watched and on which side (:data:`DRIFT_RULES`).
    """

    fast_alpha: float = 0.1
    slow_alpha: float = 0.01
    noise_alpha: float = 0.02
    gap_alpha: float = 0.005
    z_threshold: float = 3.0
    sustain: int = 3
    min_windows: int = 50
    min_change: float = 0.25
    min_level: float = 1.0
    min_scale: float = 0.05
    clip_k: float = 4.0
    prior_windows: int = 10
    max_features: int = 32
    report_p: float = 0.01
    group_relative: bool = True
    min_peers: int = 3
    max_shift: float = 7.0
    rules: tuple[FeatureRule, ...] = DRIFT_RULES

    def __post_init__(self) -> None:
        if not 0 < self.slow_alpha < self.fast_alpha <= 1:
            raise ValueError("need 0 < slow_alpha < fast_alpha <= 1")
        if not (0 < self.noise_alpha <= 1 and 0 < self.gap_alpha <= 1):
            raise ValueError("noise_alpha and gap_alpha must be in (0, 1]")
        if self.sustain < 1 or self.min_windows < 1 or self.z_threshold <= 0:
            raise ValueError("sustain, min_windows and z_threshold must be positive")


# Per feature: [fast, slow, noise variance, gap variance, n, run]; run > 0 counts windows
# above the slow mean beyond the threshold, run < 0 windows below it.
_FAST, _SLOW, _VAR, _GAP, _N, _RUN = range(6)


@dataclass(frozen=True, slots=True)
class _Gap:
    feature: str
    rule: FeatureRule
    value: float
    fast: float
    slow: float
    sd: float
    z: float
    run: int
    p: float


class DriftDetector:
    """Fast-vs-slow baselines per agent and feature; see the module documentation.

    State per agent: ``{feature: [fast, slow, noise variance, gap variance, n, run]}`` —
    about 60 bytes of msgpack per feature, 14 features with the default rules.
    """

    name = "baseline_drift"

    def __init__(self, config: DriftConfig | None = None) -> None:
        self.config = cfg = config or DriftConfig()
        # The fast mean's standard deviation, in units of the single-window noise.
        self._fast_sd = math.sqrt(cfg.fast_alpha / (2.0 - cfg.fast_alpha))
        # E[(y - fast)^2] = noise variance · (1 + fast variance factor): undo it.
        self._residual_factor = 1.0 + cfg.fast_alpha / (2.0 - cfg.fast_alpha)
        self._min_change = math.log1p(cfg.min_change)
        self._book: RuleBook[FeatureRule] = RuleBook(cfg.rules)
        self._agents: dict[str, dict[str, list[float]]] = {}
        # The last scored window per agent, with its (peer-relative) observations.
        self._pending: dict[str, tuple[WindowFeatures, list[Any]]] = {}
        self._shifts: dict[tuple[str, str], float] = {}

    def rule_for(self, feature: str) -> FeatureRule | None:
        """The rule watching ``feature`` (``None``: not watched)."""
        return self._book.get(feature)

    def agents(self) -> int:
        return len(self._agents)

    def _observations(
        self, values: Mapping[str, float]
    ) -> Iterable[tuple[str, FeatureRule, float, float]]:
        """``(feature, rule, value, log value)`` of the watched features of a window."""
        for name, x in values.items():
            rule = self.rule_for(name)
            if rule is None:
                continue
            if rule.given is not None and values.get(rule.given, 0.0) <= 0.0:
                continue
            yield name, rule, x, math.log(max(0.0, x) + rule.offset)

    def _relative(self, window: WindowFeatures) -> list[tuple[str, FeatureRule, float, float]]:
        """:meth:`_observations` with the log values taken relative to the peer group's
        current level (when :meth:`prepare` found one for the window)."""
        shifts = self._shifts
        obs = list(self._observations(window.values))
        if not shifts:
            return obs
        group = window.cohort
        return [(n, r, x, y - shifts.get((group, n), 0.0)) for n, r, x, y in obs]

    def prepare(self, windows: Iterable[WindowFeatures]) -> None:
        """Peer groups' current levels from the windows that close together."""
        cfg = self.config
        self._shifts = {}
        if not cfg.group_relative:
            return
        rows: list[tuple[str, str, float]] = []
        for window in windows:
            if window.kind != "window":
                continue
            features = self._agents.get(window.agent_id)
            if not features:
                continue
            group = window.cohort
            for name, _, _, y in self._observations(window.values):
                stat = features.get(name)
                if stat is not None and stat[_N] >= cfg.min_windows:
                    rows.append((group, name, y - stat[_SLOW]))
        # Only a busier group excuses a higher level: every drift rule tests the high side,
        # and a quiet group (most agents idle at night) must not make the few active
        # agents look like they drift up.
        shifts = group_shifts(rows, cfg.min_peers, cfg.max_shift)
        self._shifts = {k: v for k, v in shifts.items() if v > 0.0}

    def group_shift(self, window: WindowFeatures, feature: str) -> float:
        """The peer group's current shift (log units) applied to ``feature`` of ``window``."""
        return self._shifts.get((window.cohort, feature), 0.0)

    def _step(self, stat: list[float], y: float) -> tuple[float, float, float, float]:
        """``(fast, slow, variance, y clipped)`` after folding in ``y`` (pure)."""
        cfg = self.config
        n = stat[_N]
        sd = max(math.sqrt(max(stat[_VAR], 0.0)), cfg.min_scale)
        if n >= cfg.prior_windows:
            bound = cfg.clip_k * sd
            y = min(max(y, stat[_SLOW] - bound), stat[_SLOW] + bound)
        warm = 1.0 / (n + 1.0)
        a_fast = max(cfg.fast_alpha, warm)
        a_slow = max(cfg.slow_alpha, warm)
        a_noise = max(cfg.noise_alpha, warm)
        residual = (y - stat[_FAST]) ** 2 / self._residual_factor if n > 0 else 0.0
        var = (1.0 - a_noise) * stat[_VAR] + a_noise * residual
        fast = stat[_FAST] + a_fast * (y - stat[_FAST])
        slow = stat[_SLOW] + a_slow * (y - stat[_SLOW])
        return fast, slow, var, y

    def _scale(self, stat: list[float]) -> float:
        """The usual size of the fast-vs-slow gap (log units)."""
        noise = max(math.sqrt(max(stat[_VAR], 0.0)), self.config.min_scale) * self._fast_sd
        return max(math.sqrt(max(stat[_GAP], 0.0)), noise)

    def _gap(self, stat: list[float], fast: float) -> float:
        """The fast mean's distance from the slow one, in units of its usual size."""
        return (fast - stat[_SLOW]) / self._scale(stat)

    def _run(self, rule: FeatureRule, stat: list[float], fast: float) -> int:
        """The run length after a window that moves the fast mean to ``fast``."""
        cfg = self.config
        slow = stat[_SLOW]
        run = int(stat[_RUN])
        level = math.log((1.0 + cfg.min_level) * rule.offset)
        if abs(fast - slow) < self._min_change or max(fast, slow) < level:
            return 0
        z = self._gap(stat, fast)
        if z >= cfg.z_threshold and rule.side in ("high", "both"):
            return max(run, 0) + 1
        if z <= -cfg.z_threshold and rule.side in ("low", "both"):
            return min(run, 0) - 1
        return 0

    def score(self, window: WindowFeatures) -> Finding | None:
        """Whether the window extends a sustained walk of a fast mean away from its slow one.

        Remembers the window as seen: if it is never learned (the engine flagged it), it is
        folded into the fast mean only — not the slow one — when the agent's next window is
        scored (see :meth:`observe`).
        """
        if window.kind != "window":
            return None
        features = self._agents.get(window.agent_id)
        if not features:
            return None
        self._catch_up(window.agent_id, window.key)
        cfg = self.config
        tested = 0
        gaps: list[_Gap] = []
        observations = self._relative(window)
        for name, rule, x, y in observations:
            stat = features.get(name)
            if stat is None or stat[_N] < cfg.min_windows:
                continue
            tested += 1
            fast, _, _, _ = self._step(stat, y)
            run = self._run(rule, stat, fast)
            if abs(run) >= cfg.sustain:
                z = self._gap(stat, fast)
                sd = max(math.sqrt(max(stat[_VAR], 0.0)), cfg.min_scale)
                gaps.append(_Gap(name, rule, x, fast, stat[_SLOW], sd, z, run, normal_sf(abs(z))))
        self._pending[window.agent_id] = (window, observations)
        if not gaps:
            return None
        gaps.sort(key=lambda g: g.p)
        best = gaps[0]
        p = bonferroni(best.p, tested)
        if p > cfg.report_p:
            return None

        def raw(g: _Gap, y: float) -> float:
            return max(0.0, math.exp(y) - g.rule.offset)

        direction = "up" if best.z > 0 else "down"
        explanation = (
            f"{best.feature} drifting {direction} for {abs(best.run)} windows: recent level "
            f"{fmt(raw(best, best.fast))} vs long-run {fmt(raw(best, best.slow))} "
            f"({fmt(raw(best, best.slow - best.sd))}–{fmt(raw(best, best.slow + best.sd))} "
            f"per window), z={best.z:+.1f}, p={p:.1g}"
        )
        shift = self.group_shift(window, best.feature)
        if abs(shift) >= 0.1:
            explanation += (
                f" (levels relative to peer group {window.peer_group!r}, "
                f"currently ×{math.exp(shift):.2g} its usual level)"
            )
        if len(gaps) > 1:
            explanation += "; also drifting: " + ", ".join(g.feature for g in gaps[1:4])
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=tuple(
                Contribution(
                    feature=g.feature,
                    value=raw(g, g.fast),
                    typical=raw(g, g.slow),
                    unusual=f"recent level {g.z:+.1f} noise units from the long-run level "
                    f"for {abs(g.run)} windows, p={g.p:.1g}",
                )
                for g in gaps[:5]
            ),
            event_ids=window.event_ids,
            keys=tuple(f"baseline_drift/{g.feature}" for g in gaps),
            extra={"tested": tested, "current_value": best.value},
        )

    def _catch_up(self, agent_id: str, key: str) -> None:
        """Fold the agent's last scored window into the fast mean if it was never learned."""
        pending = self._pending.get(agent_id)
        if pending is not None and pending[0].key != key:
            del self._pending[agent_id]
            self._fold(pending[0], slow=False, observations=pending[1])

    def learn(self, window: WindowFeatures) -> None:
        """Fold the window into the agent's fast, slow and noise statistics."""
        if window.kind != "window":
            return
        self._catch_up(window.agent_id, window.key)
        pending = self._pending.pop(window.agent_id, None)
        seen = pending[1] if pending is not None and pending[0] is window else None
        self._fold(window, slow=True, observations=seen)

    def observe(self, window: WindowFeatures) -> None:
        """Fold a window that is not learned (it was flagged) into the fast mean only.

        The fast mean follows what the agent does now, flagged or not, so one excursion
        cannot freeze it away from the slow mean; the slow mean and the noise scale — the
        baseline — never see flagged windows. :meth:`score` calls this itself for a scored
        window that was not learned once the agent's next window arrives; an engine may call
        it directly instead.
        """
        if window.kind != "window":
            return
        pending = self._pending.get(window.agent_id)
        seen = None
        if pending is not None and pending[0].key == window.key:
            del self._pending[window.agent_id]
            seen = pending[1]
        self._fold(window, slow=False, observations=seen)

    def _fold(
        self, window: WindowFeatures, slow: bool, observations: list[Any] | None = None
    ) -> None:
        features = self._agents.get(window.agent_id)
        if features is None:
            if not slow:
                return
            features = self._agents[window.agent_id] = {}
        self._fold_into(features, window, slow, observations)

    def _fold_into(
        self,
        features: dict[str, list[float]],
        window: WindowFeatures,
        slow: bool,
        observations: list[Any] | None = None,
    ) -> None:
        cfg = self.config
        if observations is None:
            observations = self._relative(window)
        for name, rule, _, y in observations:
            stat = features.get(name)
            if stat is None:
                if not slow or len(features) >= cfg.max_features:
                    continue
                stat = features[name] = [y, y, 0.0, 0.0, 0.0, 0.0]
            fast, slow_mean, var, _ = self._step(stat, y)
            tested = stat[_N] >= cfg.min_windows
            stat[_RUN] = float(self._run(rule, stat, fast) if tested else 0)
            if slow:
                # The gap's scale learns from calm gaps only: clipped at the threshold.
                bound = cfg.z_threshold * self._scale(stat)
                gap = min(max(fast - slow_mean, -bound), bound)
                a = max(cfg.gap_alpha, 1.0 / (stat[_N] + 1.0))
                stat[_GAP] = (1.0 - a) * stat[_GAP] + a * gap * gap
                stat[_SLOW], stat[_VAR] = slow_mean, var
                stat[_N] = min(stat[_N] + 1.0, N_CAP)
            stat[_FAST] = fast

    def rebaseline(self, agent_id: str) -> None:
        """New ``agent_version``: keep the levels, re-learn them quickly, untested for a while.

        Each feature keeps ``prior_windows`` observations' worth of weight and is tested
        again after ``min_windows``.
        """
        for stat in self._agents.get(agent_id, {}).values():
            stat[_N] = float(min(stat[_N], self.config.prior_windows))
            stat[_RUN] = 0.0

    def accept_keys(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: the new level of ``baseline_drift/<feature>`` is legitimate.

        The slow mean jumps to the fast one. (Not called ``accept``: that name marks event
        detectors for the engine.)
        """
        prefix = f"{self.name}/"
        features = self._agents.get(agent_id, {})
        for key in keys:
            if key.startswith(prefix) and key[len(prefix) :] in features:
                stat = features[key[len(prefix) :]]
                stat[_SLOW] = stat[_FAST]
                stat[_RUN] = 0.0

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self._agents.pop(agent_id, None)
        self._pending.pop(agent_id, None)

    def state_of(self, agent_id: str) -> dict[str, list[float]] | None:
        """The agent's statistics as plain data, or ``None``.

        A scored window not learned yet counts as observed (fast mean only), as it will
        once the agent's next window is scored.
        """
        features = self._agents.get(agent_id)
        if not features:
            return None
        pending = self._pending.get(agent_id)
        if pending is not None:
            features = {k: list(v) for k, v in features.items()}
            self._fold_into(features, pending[0], slow=False, observations=pending[1])
        return {
            k: [v[_FAST], v[_SLOW], v[_VAR], v[_GAP], int(v[_N]), int(v[_RUN])]
            for k, v in features.items()
        }

    def load_state(self, agent_id: str, state: Any) -> None:
        """Restore what :meth:`state_of` returned."""
        if state:
            self._pending.pop(agent_id, None)
            self._agents[agent_id] = {
                str(k): [float(x) for x in v][:6] for k, v in dict(state).items()
            }


@register("baseline_drift")
def _build(settings: DetectSettings) -> DriftDetector:
    return DriftDetector(DriftConfig(**settings_overrides(settings, "drift_", DriftConfig)))
