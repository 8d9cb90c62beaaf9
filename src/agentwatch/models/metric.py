"""Resource samples (``metric`` events) scored one by one against the agent's baseline.

Pure code. Each value of a ``metric`` event (CPU, memory, queue depth …) is compared, as it
arrives, with a robust exponentially weighted baseline of that metric for that agent: the
location and variance of ``sign(x) · log1p(|x|)`` (relative changes matter, a spike from
30 % to 95 % CPU is as clear as one from 3 GB to 9 GB), or of the raw value for metrics
configured as linear. The tail probability is the normal tail of the z-score on the
configured side (high by default; a Student-t tail, as the scale is itself estimated),
Bonferroni over the metrics of the event.

Updates are winsorised to ``location ± clip_k · scale`` and the engine learns only events it
did not flag. Until an agent has ``min_samples`` samples of a metric (cold start, or after
:meth:`MetricDetector.rebaseline`), the metric is scored against its peer group's baseline
of the same metric.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.features.context import SessionTracker
>>> from agentwatch.schemas.events import Event
>>> t0, tracker = datetime(2026, 1, 1, tzinfo=UTC), SessionTracker()
>>> def sample(i, cpu):
...     e = Event(schema_version="1", event_id=f"m{i}", agent_id="a", type="metric",
...               ts=t0 + timedelta(seconds=30 * i), metrics={"cpu_percent": cpu})
...     return e, tracker.observe(e)
>>> detector = MetricDetector()
>>> for i in range(100):
...     detector.learn(*sample(i, 30.0 + (i * 7) % 9))
>>> detector.score(*sample(100, 36.0)) is None
True
>>> spike = detector.score(*sample(101, 97.0))
>>> spike.p < 1e-6, spike.contributions[0].feature
(True, 'metric.cpu_percent')
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from agentwatch.config import DetectSettings
from agentwatch.features.context import EventContext
from agentwatch.models.base import Finding, fmt, register, settings_overrides
from agentwatch.models.calibration import bonferroni
from agentwatch.models.robust import N_CAP, RuleBook, ew_df, ew_update, ew_z, glob_match, student_sf
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event

__all__ = ["METRIC_RULES", "MetricConfig", "MetricDetector", "MetricRule"]


@dataclass(frozen=True, slots=True)
class MetricRule:
    """How the metrics whose name matches ``pattern`` (a glob) are scored.

    Parameters
    ----------
    pattern
        Metric name or :mod:`fnmatch` glob; the first matching rule wins.
    side
        ``high``, ``low``, ``both`` or ``none`` (not scored).
    log
        Model ``sign(x) · log1p(|x|)`` (relative changes) rather than ``x``.
    min_scale
        Floor of the scale, in model units (log units when ``log``).

    Examples
    --------
    >>> MetricRule("cpu_*").matches("cpu_percent")
    True
    """

    pattern: str
    side: Literal["high", "low", "both", "none"] = "high"
    log: bool = True
    min_scale: float = 0.05

    def __post_init__(self) -> None:
        if self.side not in ("high", "low", "both", "none") or self.min_scale <= 0:
            raise ValueError(f"metric rule {self.pattern!r}: bad side or min_scale")

    def matches(self, name: str) -> bool:
        return glob_match(self.pattern, name)


METRIC_RULES: tuple[MetricRule, ...] = (MetricRule("*", "high"),)
"""Default: every metric on a log scale, high side only."""


@dataclass(frozen=True, slots=True)
class MetricConfig:
    """Tunables of :class:`MetricDetector`.

    Parameters
    ----------
    alpha
        EW weight of one sample in an agent's baseline of a metric.
    group_alpha
        EW weight of one sample in the peer group's baseline.
    clip_k
        Winsorising bound in scales.
    min_samples
        Samples of a metric before the agent's own baseline is used.
    min_group_samples
        Samples of a peer-group metric before it is used for cold start.
    prior_samples
        Weight kept by :meth:`MetricDetector.rebaseline` and by a seed from the peer group.
    rebaseline_inflation
        Factor on the variance of a baseline kept across a rebaseline.
    max_metrics
        Metrics with a baseline per agent.
    max_group_metrics
        Metrics with a baseline per peer group.
    max_groups
        Peer groups kept (least recently used evicted).
    report_p
        Events with a larger tail probability produce no finding.
    rules
        Per-metric sides and scales (:data:`METRIC_RULES`).
    """

    alpha: float = 0.02
    group_alpha: float = 0.005
    clip_k: float = 3.0
    min_samples: int = 20
    min_group_samples: int = 50
    prior_samples: int = 10
    rebaseline_inflation: float = 4.0
    max_metrics: int = 16
    max_group_metrics: int = 64
    max_groups: int = 1024
    report_p: float = 0.01
    rules: tuple[MetricRule, ...] = METRIC_RULES

    def __post_init__(self) -> None:
        if not (0 < self.alpha <= 1 and 0 < self.group_alpha <= 1) or self.clip_k <= 0:
            raise ValueError("alpha and group_alpha must be in (0, 1], clip_k > 0")
        if min(self.min_samples, self.min_group_samples) < 1 or self.max_metrics < 1:
            raise ValueError("min_samples, min_group_samples and max_metrics must be >= 1")


@dataclass(slots=True)
class _Owner:
    """Baselines ``{metric: [location, variance, n]}`` of an agent or a peer group."""

    metrics: dict[str, list[float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Test:
    name: str
    value: float
    p: float
    z: float
    side: str
    typical: float
    low: float
    high: float
    reference: str


class MetricDetector:
    """Per-agent, per-metric baselines scoring every ``metric`` sample (an event detector).

    State per agent: ``{metric: [location, variance, n]}`` — about 40 bytes of msgpack per
    metric, at most ``max_metrics``.
    """

    name = "metric_sample"

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config or MetricConfig()
        self._book: RuleBook[MetricRule] = RuleBook(self.config.rules)
        self._agents: dict[str, _Owner] = {}
        self._groups: OrderedDict[str, _Owner] = OrderedDict()

    def rule_for(self, metric: str) -> MetricRule | None:
        """The rule scoring ``metric`` (``None``: not scored)."""
        return self._book.get(metric)

    @staticmethod
    def _y(rule: MetricRule, x: float) -> float:
        return math.copysign(math.log1p(abs(x)), x) if rule.log else x

    @staticmethod
    def _x(rule: MetricRule, y: float) -> float:
        return math.copysign(math.expm1(abs(y)), y) if rule.log else y

    # -- protocol ---------------------------------------------------------------------------

    def agents(self) -> int:
        return len(self._agents)

    def status(self, agent_id: str) -> Literal["warming_up", "baselined"]:
        """``baselined`` once every metric of the agent has ``min_samples`` samples."""
        owner = self._agents.get(agent_id)
        if not owner or not owner.metrics:
            return "warming_up"
        samples = min(stat[2] for stat in owner.metrics.values())
        return "baselined" if samples >= self.config.min_samples else "warming_up"

    def score(self, event: Event, ctx: EventContext) -> Finding | None:
        """How unusual the event's metric values are for its agent (no state change)."""
        if event.type != "metric" or not event.metrics:
            return None
        cfg = self.config
        own = self._agents.get(ctx.agent_id)
        group = self._groups.get(ctx.peer_group)
        tests: list[_Test] = []
        for name, x in event.metrics.items():
            rule = self.rule_for(name)
            if rule is None or not math.isfinite(x):
                continue
            stat = own.metrics.get(name) if own else None
            reference = "own"
            if stat is None or stat[2] < cfg.min_samples:
                stat = group.metrics.get(name) if group else None
                reference = "peer_group"
                if stat is None or stat[2] < cfg.min_group_samples:
                    continue
            z = ew_z(stat, self._y(rule, x), rule.min_scale)
            df = ew_df(stat[2], cfg.alpha if reference == "own" else cfg.group_alpha)
            if rule.side == "both":
                p, side = 2.0 * student_sf(abs(z), df), "high" if z >= 0 else "low"
            elif rule.side == "high":
                p, side = student_sf(z, df), "high"
            else:
                p, side = student_sf(-z, df), "low"
            sd = max(math.sqrt(max(stat[1], 0.0)), rule.min_scale)
            tests.append(
                _Test(
                    name,
                    x,
                    min(1.0, p),
                    z,
                    side,
                    self._x(rule, stat[0]),
                    self._x(rule, stat[0] - sd),
                    self._x(rule, stat[0] + sd),
                    reference,
                )
            )
        if not tests:
            return None
        tests.sort(key=lambda t: t.p)
        best = tests[0]
        p = bonferroni(best.p, len(tests))
        if p > cfg.report_p:
            return None
        whose = "peer group typical" if best.reference == "peer_group" else "typical"
        explanation = (
            f"{best.name} {fmt(best.value)}; {whose} {fmt(best.typical)} "
            f"({fmt(best.low)}–{fmt(best.high)}), z={best.z:+.1f}, p={p:.1g}"
        )
        notable = [t for t in tests if t.p * len(tests) <= cfg.report_p]
        if len(notable) > 1:
            explanation += "; also unusual: " + ", ".join(t.name for t in notable[1:4])
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=tuple(
                Contribution(
                    feature=f"metric.{t.name}",
                    value=t.value,
                    typical=t.typical,
                    unusual=f"{t.side} side, z={t.z:+.1f}, p={t.p:.1g}"
                    + (" vs peer group" if t.reference == "peer_group" else ""),
                )
                for t in notable[:5]
            ),
            event_ids=(event.event_id,),
            keys=tuple(f"metric/{t.name}" for t in notable),
            extra={"status": self.status(ctx.agent_id)},
        )

    def learn(self, event: Event, ctx: EventContext) -> None:
        """Fold the event's metric values into the agent's and its peer group's baselines."""
        if event.type != "metric" or not event.metrics:
            return
        cfg = self.config
        own = self._agents.get(ctx.agent_id)
        if own is None:
            own = self._agents[ctx.agent_id] = _Owner()
        group = self._groups.get(ctx.peer_group)
        if group is None:
            group = self._groups[ctx.peer_group] = _Owner()
            while len(self._groups) > cfg.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(ctx.peer_group)
        for name, x in event.metrics.items():
            rule = self.rule_for(name)
            if rule is None or not math.isfinite(x):
                continue
            y = self._y(rule, x)
            stat = own.metrics.get(name)
            if stat is None and len(own.metrics) < cfg.max_metrics:
                seed = group.metrics.get(name)
                if seed is not None and seed[2] >= cfg.min_group_samples:
                    stat = [seed[0], seed[1], float(cfg.prior_samples)]
                else:
                    stat = [y, 0.0, 0.0]
                own.metrics[name] = stat
            if stat is not None:
                self._update(rule, stat, y, cfg.alpha)
            shared = group.metrics.get(name)
            if shared is None and len(group.metrics) < cfg.max_group_metrics:
                shared = group.metrics[name] = [y, 0.0, 0.0]
            if shared is not None:
                self._update(rule, shared, y, cfg.group_alpha)

    def _update(self, rule: MetricRule, stat: list[float], y: float, alpha: float) -> None:
        cfg = self.config
        n = stat[2]
        clip = cfg.clip_k if n >= cfg.prior_samples else 0.0
        ew_update(stat, y, max(alpha, 1.0 / (n + 1.0)), clip, rule.min_scale)
        stat[2] = min(n + 1.0, N_CAP)

    # -- baselines --------------------------------------------------------------------------

    def rebaseline(self, agent_id: str) -> None:
        """New ``agent_version``: keep locations, inflate variances, re-learn quickly.

        Each metric drops to ``prior_samples`` samples, so it is scored against the peer
        group until it has ``min_samples`` again.
        """
        owner = self._agents.get(agent_id)
        if owner:
            self._inflate(owner, list(owner.metrics))

    def accept(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: ``metric/<name>`` keys are benign — widen and re-learn them."""
        owner = self._agents.get(agent_id)
        if owner:
            chosen = {k[7:] for k in keys if k.startswith("metric/")}
            self._inflate(owner, [m for m in owner.metrics if m in chosen])

    def _inflate(self, owner: _Owner, names: list[str]) -> None:
        cfg = self.config
        for name in names:
            stat = owner.metrics[name]
            rule = self.rule_for(name)
            floor = rule.min_scale if rule else 0.05
            stat[1] = max(stat[1], floor * floor) * cfg.rebaseline_inflation
            stat[2] = float(min(stat[2], cfg.prior_samples))

    # -- snapshots --------------------------------------------------------------------------

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self._agents.pop(agent_id, None)

    def state_of(self, agent_id: str) -> dict[str, list[float]] | None:
        """The agent's baselines as plain data, or ``None``."""
        owner = self._agents.get(agent_id)
        if not owner or not owner.metrics:
            return None
        return {k: [v[0], v[1], int(v[2])] for k, v in owner.metrics.items()}

    def load_state(self, agent_id: str, state: Any) -> None:
        """Restore what :meth:`state_of` returned."""
        if state:
            self._agents[agent_id] = _Owner(
                {str(k): [float(v[0]), float(v[1]), float(v[2])] for k, v in dict(state).items()}
            )

    def group_state_of(self, group: str) -> dict[str, list[float]] | None:
        """A peer group's metric baselines as plain data, or ``None``."""
        owner = self._groups.get(group)
        return {k: list(v) for k, v in owner.metrics.items()} if owner else None

    def load_group_state(self, group: str, state: Any) -> None:
        """Restore what :meth:`group_state_of` returned."""
        if state:
            self._groups[group] = _Owner(
                {str(k): [float(x) for x in v][:3] for k, v in dict(state).items()}
            )


@register("metric_sample")
def _build(settings: DetectSettings) -> MetricDetector:
    return MetricDetector(MetricConfig(**settings_overrides(settings, "metric_", MetricConfig)))
