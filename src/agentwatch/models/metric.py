"""Resource samples (``metric`` events) scored one by one against the agent's baseline.

Pure code. Each value of a ``metric`` event (CPU, memory, queue depth …) is compared, as it
arrives, with a robust exponentially weighted baseline of that metric for that agent: the
location and variance of ``sign(x) · log1p(|x|)`` (relative changes matter, a spike from
30 % to 95 % CPU is as clear as one from 3 GB to 9 GB), or of the raw value for metrics
configured as linear. The scale never falls below the rule's ``min_scale`` (in log units a
relative floor: 0.05 ≈ 5 % of the level) nor, for integer-valued samples (threads, file
descriptors), below half a step of the series, so a smooth or quantised series does not
make its next wobble a 10-sigma event.

**Persistence.** A resource spike that lasts one sample is ordinary (a GC pause, a burst of
work); abuse lasts. A metric is news only when ``persist`` consecutive samples are beyond
its baseline on the configured side (high by default), and the run is scored by its
*weakest* sample: the Student-t tail (at most ``tail_df`` degrees of freedom — resource
series are heavier-tailed than normal) of the smallest z-score of the run. Bonferroni over
the metrics of the event. Scoring the weakest sample as if it were alone is deliberately
conservative: for independent samples a run of ``k`` at ``p`` has probability ``p^k``.

**Calibration.** The event's tail probability is then recalibrated per agent
(:class:`~agentwatch.models.robust.TailCalibrator`): the rate at which the agent's own
samples actually reached it, so a bimodal busy/idle agent and a flat one mean the same by a
score of 75.

**Learning.** Updates are winsorised to ``location ± clip_k · scale`` and the engine learns
only events it did not flag; a sample whose own z-score is beyond ``hold_k`` (a spike not yet
confirmed as a run) does not move the baseline either. Until an agent has ``min_samples``
samples of a metric (cold start, or after :meth:`MetricDetector.rebaseline` on a new
``agent_version``), the metric is scored against its peer group's baseline of the same
metric, and the agent's own baseline learns every sample — flagged ones included
(:meth:`MetricDetector.witness`) — so an agent unlike its peers gets a baseline of its own
instead of being compared with them for ever.

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
>>> detector.score(*sample(101, 97.0)) is None  # one sample: not yet a run
True
>>> detector.witness(*sample(101, 97.0))
>>> spike = detector.score(*sample(102, 96.0))
>>> spike.p < 1e-6, spike.contributions[0].feature
(True, 'metric.cpu_percent')
>>> spike.explanation.split(",")[0]
'cpu_percent 96 (typical 33.8 ± 2.6)'
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentwatch.config import DetectSettings
from agentwatch.features.context import EventContext
from agentwatch.models.base import Finding, fmt, register, settings_overrides
from agentwatch.models.calibration import bonferroni
from agentwatch.models.robust import (
    N_CAP,
    RuleBook,
    TailCalibrator,
    ew_df,
    ew_update,
    glob_match,
    student_sf,
)
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
        Floor of the scale, in model units (log units when ``log``: a relative floor).

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
    hold_k
        A sample whose own z-score is beyond this is not learned (an unconfirmed spike).
    persist
        Consecutive samples beyond the baseline before a metric is reported; the run is
        scored by its weakest sample (1: every sample on its own).
    tail_df
        Most degrees of freedom of the Student-t tail (heavier tails than the normal's).
    min_samples
        Samples of a metric before the agent's own baseline is used.
    min_group_samples
        Samples of a peer-group metric before it is used for cold start.
    prior_samples
        Weight kept by :meth:`MetricDetector.rebaseline` and by a seed from the peer group.
    rebaseline_inflation
        Factor on the variance of a baseline kept across a rebaseline.
    calibration_memory
        Samples over which the per-agent tail calibration forgets.
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
    hold_k: float = 6.0
    persist: int = 2
    tail_df: float = 10.0
    min_samples: int = 20
    min_group_samples: int = 50
    prior_samples: int = 10
    rebaseline_inflation: float = 4.0
    calibration_memory: float = 10_000.0
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
        if self.persist < 1 or self.tail_df < 1 or self.hold_k <= 0:
            raise ValueError("persist and tail_df must be >= 1, hold_k > 0")


_LOC, _VAR, _N = 0, 1, 2  # a baseline: [location, variance, n, z of previous samples …]


@dataclass(slots=True)
class _Owner:
    """Baselines ``{metric: [location, variance, n, previous z …]}`` of an agent or a peer
    group, and (agents) the tail calibration of its events."""

    metrics: dict[str, list[float]] = field(default_factory=dict)
    tail: list[float] | None = None
    flagged: bool = False  # the last sample was flagged (witnessed, not learned)


def _num(x: float) -> str:
    """:func:`fmt`, with thousands written out (``3,882`` MB rather than ``3.88e+03``)."""
    return f"{x:,.0f}" if 1e3 <= abs(x) < 1e9 else fmt(x)


@dataclass(frozen=True, slots=True)
class _Test:
    name: str
    value: float
    p: float
    z: float  # this sample's
    run: float  # weakest z of the run, on the rule's side
    side: str
    typical: float
    spread: float
    reference: str


class MetricDetector:
    """Per-agent, per-metric baselines scoring every ``metric`` sample (an event detector).

    State per agent: ``{metric: [location, variance, n, z₁ …]}`` (``persist - 1`` previous
    z-scores) — about 50 bytes of msgpack per metric, at most ``max_metrics`` — and the
    agent's tail calibration (7 numbers).
    """

    name = "metric_sample"

    def __init__(self, config: MetricConfig | None = None) -> None:
        self.config = config or MetricConfig()
        self._book: RuleBook[MetricRule] = RuleBook(self.config.rules)
        self._agents: dict[str, _Owner] = {}
        self._groups: OrderedDict[str, _Owner] = OrderedDict()
        self._calibrator = TailCalibrator(memory=self.config.calibration_memory)

    def rule_for(self, metric: str) -> MetricRule | None:
        """The rule scoring ``metric`` (``None``: not scored)."""
        return self._book.get(metric)

    @staticmethod
    def _y(rule: MetricRule, x: float) -> float:
        return math.copysign(math.log1p(abs(x)), x) if rule.log else x

    @staticmethod
    def _x(rule: MetricRule, y: float) -> float:
        return math.copysign(math.expm1(abs(y)), y) if rule.log else y

    def _floor(self, rule: MetricRule, stat: list[float], x: float) -> float:
        """Scale floor: the rule's, or half a step of an integer-valued series."""
        if x != round(x):
            return rule.min_scale
        step = 1.0 / (1.0 + abs(self._x(rule, stat[_LOC]))) if rule.log else 1.0
        return max(rule.min_scale, 0.5 * step)

    # -- protocol ---------------------------------------------------------------------------

    def agents(self) -> int:
        return len(self._agents)

    def status(self, agent_id: str) -> Literal["warming_up", "baselined"]:
        """``baselined`` once every metric of the agent has ``min_samples`` samples."""
        owner = self._agents.get(agent_id)
        if not owner or not owner.metrics:
            return "warming_up"
        samples = min(stat[_N] for stat in owner.metrics.values())
        return "baselined" if samples >= self.config.min_samples else "warming_up"

    def _tests(self, event: Event, ctx: EventContext) -> list[_Test]:
        """Every scored metric of the event (no state change)."""
        cfg = self.config
        own = self._agents.get(ctx.agent_id)
        group = self._groups.get(ctx.peer_group)
        tests: list[_Test] = []
        for name, x in (event.metrics or {}).items():
            rule = self.rule_for(name)
            if rule is None or not math.isfinite(x):
                continue
            mine = own.metrics.get(name) if own else None
            stat, reference = mine, "own"
            if stat is None or stat[_N] < cfg.min_samples:
                stat = group.metrics.get(name) if group else None
                reference = "peer_group"
                if stat is None or stat[_N] < cfg.min_group_samples:
                    continue
            sd = max(math.sqrt(max(stat[_VAR], 0.0)), self._floor(rule, stat, x))
            z = (self._y(rule, x) - stat[_LOC]) / sd
            run = [z, *(mine[3 : 2 + cfg.persist] if mine else ())]
            run += [0.0] * (cfg.persist - len(run))  # no history yet: not a run
            high, low = min(run), min(-r for r in run)
            if rule.side == "high":
                weakest, side = high, "high"
            elif rule.side == "low":
                weakest, side = low, "low"
            else:
                weakest, side = max(high, low), "high" if high >= low else "low"
            df = ew_df(stat[_N], cfg.alpha if reference == "own" else cfg.group_alpha)
            p = student_sf(weakest, min(df, cfg.tail_df))
            if rule.side == "both":
                p = 2.0 * p
            typical = self._x(rule, stat[_LOC])
            spread = 0.5 * (self._x(rule, stat[_LOC] + sd) - self._x(rule, stat[_LOC] - sd))
            tests.append(_Test(name, x, min(1.0, p), z, weakest, side, typical, spread, reference))
        return tests

    def _raw_p(self, tests: list[_Test]) -> float:
        return bonferroni(min(t.p for t in tests), len(tests)) if tests else 1.0

    def score(self, event: Event, ctx: EventContext) -> Finding | None:
        """How unusual the event's metric values are for its agent (no state change)."""
        if event.type != "metric" or not event.metrics:
            return None
        cfg = self.config
        tests = self._tests(event, ctx)
        if not tests:
            return None
        tests.sort(key=lambda t: t.p)
        best = tests[0]
        raw = self._raw_p(tests)
        if raw > cfg.report_p:
            return None
        own = self._agents.get(ctx.agent_id)
        p = self._calibrator.p(own.tail if own else None, raw)
        if p > cfg.report_p:
            return None
        whose = "peer group typical" if best.reference == "peer_group" else "typical"
        run = f"{cfg.persist} samples running, " if cfg.persist > 1 else ""
        explanation = (
            f"{best.name} {_num(best.value)} ({whose} {_num(best.typical)} ± {_num(best.spread)}), "
            f"{run}z={best.run:+.1f}, p={p:.1g}"
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
                    unusual=f"{t.side} side, z={t.run:+.1f} over {cfg.persist} samples, "
                    f"p={t.p:.1g}" + (" vs peer group" if t.reference == "peer_group" else ""),
                )
                for t in notable[:5]
            ),
            event_ids=(event.event_id,),
            keys=tuple(f"metric/{t.name}" for t in notable),
            extra={"status": self.status(ctx.agent_id)},
        )

    def learn(self, event: Event, ctx: EventContext) -> None:
        """Fold the event's metric values into the agent's and its peer group's baselines."""
        self._see(event, ctx, learned=True)

    def witness(self, event: Event, ctx: EventContext) -> None:
        """An event the engine flagged: counted by the calibration and the runs; learned only
        by baselines still warming up."""
        self._see(event, ctx, learned=False)

    def _see(self, event: Event, ctx: EventContext, learned: bool) -> None:
        if event.type != "metric" or not event.metrics:
            return
        cfg = self.config
        tests = {t.name: t for t in self._tests(event, ctx)}
        own = self._agents.get(ctx.agent_id)
        if own is None:
            own = self._agents[ctx.agent_id] = _Owner()
        if tests and (learned or not own.flagged):  # a flagged streak counts once
            if own.tail is None:
                own.tail = self._calibrator.new()
            self._calibrator.count(own.tail, self._raw_p(list(tests.values())))
        own.flagged = not learned
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
            test = tests.get(name)
            stat = own.metrics.get(name)
            if stat is None and len(own.metrics) < cfg.max_metrics:
                seed = group.metrics.get(name)
                if seed is not None and seed[_N] >= cfg.min_group_samples:
                    stat = [seed[_LOC], seed[_VAR], float(cfg.prior_samples)]
                else:
                    stat = [y, 0.0, 0.0]
                own.metrics[name] = stat
            if stat is not None:
                warming = stat[_N] < cfg.min_samples
                spike = test is not None and abs(test.z) > cfg.hold_k and not warming
                if (learned or warming) and not spike:
                    self._update(rule, stat, y, x, cfg.alpha)
                self._push(stat, test.z if test else 0.0)
            if not learned:
                continue
            shared = group.metrics.get(name)
            if shared is None and len(group.metrics) < cfg.max_group_metrics:
                shared = group.metrics[name] = [y, 0.0, 0.0]
            if shared is not None:
                self._update(rule, shared, y, x, cfg.group_alpha)

    def _push(self, stat: list[float], z: float) -> None:
        """Remember this sample's z-score for the runs of the next ones."""
        keep = self.config.persist - 1
        if keep <= 0:
            del stat[3:]
            return
        history = [round(z, 3), *stat[3 : 2 + keep]]
        stat[3:] = history[:keep]

    def _update(self, rule: MetricRule, stat: list[float], y: float, x: float, a: float) -> None:
        cfg = self.config
        n = stat[_N]
        clip = cfg.clip_k if n >= cfg.prior_samples else 0.0
        ew_update(stat, y, max(a, 1.0 / (n + 1.0)), clip, self._floor(rule, stat, x))
        stat[_N] = min(n + 1.0, N_CAP)

    # -- baselines --------------------------------------------------------------------------

    def rebaseline(self, agent_id: str) -> None:
        """New ``agent_version``: keep locations, inflate variances, re-learn quickly.

        Each metric drops to ``prior_samples`` samples, so it is scored against the peer
        group (and learns every sample) until it has ``min_samples`` again; runs restart.
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
            stat[_VAR] = max(stat[_VAR], floor * floor) * cfg.rebaseline_inflation
            stat[_N] = float(min(stat[_N], cfg.prior_samples))
            del stat[3:]

    # -- snapshots --------------------------------------------------------------------------

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self._agents.pop(agent_id, None)

    def state_of(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's baselines and tail calibration as plain data, or ``None``."""
        owner = self._agents.get(agent_id)
        if not owner or not owner.metrics:
            return None
        state: dict[str, Any] = {
            "metrics": {k: [v[0], v[1], int(v[2]), *v[3:]] for k, v in owner.metrics.items()}
        }
        if owner.tail is not None:
            state["tail"] = self._calibrator.state(owner.tail)
        if owner.flagged:
            state["flagged"] = True
        return state

    def load_state(self, agent_id: str, state: Any) -> None:
        """Restore what :meth:`state_of` returned (or the ``{metric: [location, variance,
        n]}`` of older versions)."""
        if not state:
            return
        state = dict(state)
        metrics = state.get("metrics")
        if isinstance(metrics, Mapping):
            tail = state.get("tail")
        else:  # older snapshots: the baselines alone
            metrics, tail = state, None
        self._agents[agent_id] = _Owner(
            {str(k): [float(x) for x in v][: 2 + self.config.persist] for k, v in metrics.items()},
            self._calibrator.load(tail) if tail is not None else None,
            bool(state.get("flagged")) if tail is not None else False,
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
