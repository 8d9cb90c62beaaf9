"""Detection quality from scored signals and labels. Pure: no I/O, no clock.

A **signal** is one score a system produced in event time: for agentwatch, an event's own
score or a closed window's or session's score; for the static baseline, one rule alert. A
signal is an **alert** when the system raised it (agentwatch: an anomaly, score ≥
``flag_score``; static: every rule hit). Sub-threshold signals only serve the ranking
metrics (average precision, PR curve).

Units of evaluation (docs/evaluation.md has the full rationale):

* **scenario instances** (:func:`evaluate_scenarios`): a signal *matches* an instance when
  one of its events is among the instance's ``event_ids``, or when it belongs to the
  instance's agent and its time is in ``[start, end + grace]`` (a window or session signal
  must also end after ``start``: one ending at ``start`` holds nothing of the instance).
  Positives are attack
  instances, scored by the highest matched signal; negatives are per-agent time slices
  (``slice_s``, epoch-aligned, clipped to the agent's observed span) with the attack
  intervals ``[start, end + grace]`` of that agent taken out (a slice wholly covered by them
  is dropped), scored by the highest signal in them that matches no attack. An alert that
  matches no attack instance is a false alert; those matching a benign scenario instance
  are also counted per hard-negative scenario.
* **sessions** (:func:`evaluate_sessions`): a session's score is the highest signal covering
  it (its events and the windows and sessions they fall in); positive = the label.

Operating point: a unit is *flagged* when an alert matches it. ``precision`` = flagged
positives / flagged units, ``recall`` = flagged positives / positives — both on units, so
the operating point lies on the PR curve of the same units. ``false alerts per 1,000
agent-hours`` counts alerts (not units) over the agents' observed spans (first to last
event). Time to detect = the first matched alert's time − the unit's start (≥ 0).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from agentwatch.evaluation.labels import Scenario, SessionLabel
from agentwatch.evaluation.metrics import average_precision

Span = tuple[float, float]  # first and last event time of an agent, epoch seconds


@dataclass(frozen=True, slots=True)
class Signal:
    """One score a system produced, at event time ``t`` (epoch seconds).

    ``start`` is where the evidence of a signal about a span (a window, a session) begins;
    ``None`` for a signal about one event.
    """

    agent_id: str
    t: float
    score: float
    detectors: tuple[str, ...]
    alert: bool
    event_ids: tuple[str, ...] = ()
    session_ids: tuple[str, ...] = ()
    start: float | None = None

    def overlaps(self, start: float, end: float) -> bool:
        """Its time is in ``[start, end]``; a span must also reach past ``start``.

        A window that ends exactly when a scenario starts holds nothing of it.

        >>> Signal("a", 60, 1, (), True).overlaps(60, 120)
        True
        >>> Signal("a", 60, 1, (), True, start=0).overlaps(60, 120)
        False
        """
        if not start <= self.t <= end:
            return False
        return self.start is None or self.start >= self.t or self.t > start


@dataclass(frozen=True, slots=True)
class Matched:
    """A signal with the units it counts for."""

    signal: Signal
    pos: tuple[int, ...]  # positive units it matches
    neg: tuple[int, ...]  # negative units it falls in
    benign: tuple[int, ...] = ()  # benign scenario instances it matches (scenarios only)
    hit: bool | None = None  # matches a positive unit (default: ``pos`` is not empty)

    @property
    def true_alert(self) -> bool:
        return self.signal.alert and (bool(self.pos) if self.hit is None else self.hit)

    @property
    def false_alert(self) -> bool:
        return self.signal.alert and not self.true_alert


@dataclass(frozen=True)
class Units:
    """Positive and negative units: keys, groups and start times of the positives."""

    pos_keys: list[str]
    pos_groups: list[str]
    pos_agents: list[str]
    pos_start: list[float | None]
    neg_agents: list[str]


@dataclass(frozen=True)
class Metrics:
    positives: int
    negatives: int
    detected: int  # positives with a matched alert
    flagged_negatives: int  # negatives with an alert in them
    alerts: int
    false_alerts: int
    hours: float  # agent-hours observed
    average_precision: float | None  # None without positives
    ttd_s: tuple[float, ...] = ()  # time to detect of each detected positive

    @property
    def precision(self) -> float | None:
        flagged = self.detected + self.flagged_negatives
        return self.detected / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.positives if self.positives else None

    @property
    def alert_precision(self) -> float | None:
        """Share of alerts that match a positive unit."""
        return (self.alerts - self.false_alerts) / self.alerts if self.alerts else None

    @property
    def false_alerts_per_1000h(self) -> float | None:
        return self.false_alerts / self.hours * 1000 if self.hours > 0 else None

    @property
    def ttd_median_s(self) -> float | None:
        return quantile(self.ttd_s, 0.5)

    @property
    def ttd_p90_s(self) -> float | None:
        return quantile(self.ttd_s, 0.9)


@dataclass(frozen=True)
class HardNegative:
    """Alerts inside the instances of one benign scenario (none of them is a true alert)."""

    scenario: str
    instances: int
    alerted: int  # instances with at least one false alert in them
    alerts: int
    hours: float  # total duration of the instances

    @property
    def alerts_per_1000h(self) -> float | None:
        return self.alerts / self.hours * 1000 if self.hours > 0 else None


@dataclass(frozen=True)
class SystemResult:
    """Everything measured for one system (agentwatch or the static baseline)."""

    system: str
    overall: Metrics
    groups: dict[str, Metrics]  # per scenario (scenario units) or per agent (session units)
    detectors: dict[str, Metrics]
    hard_negatives: dict[str, HardNegative] = field(default_factory=dict)
    pos_scores: tuple[float, ...] = ()
    neg_scores: tuple[float, ...] = ()


def quantile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolation quantile (numpy's default); None when empty.

    >>> quantile([10.0, 20.0, 40.0], 0.5), quantile([10.0, 20.0], 0.9), quantile([], 0.5)
    (20.0, 19.0, None)
    """
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def agent_hours(spans: dict[str, Span]) -> float:
    return sum(last - first for first, last in spans.values()) / 3600


# -- measuring ------------------------------------------------------------------------------


def measure(
    matched: Iterable[Matched],
    units: Units,
    hours: float,
    *,
    pos_only: Sequence[int] | None = None,
    keep: Callable[[Signal], bool] | None = None,
) -> tuple[Metrics, list[float], list[float]]:
    """Metrics over ``matched`` signals, with the positive and negative unit scores.

    ``pos_only`` restricts the positives (negatives stay all); ``keep`` filters signals
    (e.g. by detector).
    """
    n_pos, n_neg = len(units.pos_keys), len(units.neg_agents)
    pos_score = [0.0] * n_pos
    neg_score = [0.0] * n_neg
    first_alert: list[float | None] = [None] * n_pos
    neg_flagged = [False] * n_neg
    alerts = false_alerts = 0
    for m in matched:
        s = m.signal
        if keep is not None and not keep(s):
            continue
        for i in m.pos:
            if s.score > pos_score[i]:
                pos_score[i] = s.score
            if s.alert:
                seen = first_alert[i]
                first_alert[i] = s.t if seen is None else min(seen, s.t)
        for j in m.neg:
            if s.score > neg_score[j]:
                neg_score[j] = s.score
            if s.alert:
                neg_flagged[j] = True
        if s.alert:
            alerts += 1
            false_alerts += m.false_alert
    chosen = range(n_pos) if pos_only is None else pos_only
    p_scores = [pos_score[i] for i in chosen]
    ttd: list[float] = []
    detected = 0
    for i in chosen:
        found = first_alert[i]
        if found is not None:
            detected += 1
            start = units.pos_start[i]
            if start is not None:
                ttd.append(max(0.0, found - start))
    ranked = p_scores + neg_score
    truth = [1] * len(p_scores) + [0] * n_neg
    metrics = Metrics(
        positives=len(p_scores),
        negatives=n_neg,
        detected=detected,
        flagged_negatives=sum(neg_flagged),
        alerts=alerts,
        false_alerts=false_alerts,
        hours=hours,
        average_precision=average_precision(ranked, truth) if p_scores else None,
        ttd_s=tuple(sorted(ttd)),
    )
    return metrics, p_scores, neg_score


def _detectors(matched: Sequence[Matched]) -> list[str]:
    names = {d for m in matched for d in m.signal.detectors if m.signal.alert or m.signal.score}
    return sorted(names)


def _per_detector(matched: Sequence[Matched], units: Units, hours: float) -> dict[str, Metrics]:
    def uses(name: str) -> Callable[[Signal], bool]:
        return lambda s: name in s.detectors

    return {
        name: measure(matched, units, hours, keep=uses(name))[0] for name in _detectors(matched)
    }


# -- scenario instances ---------------------------------------------------------------------


def negative_slices(
    spans: dict[str, Span], attacks: Sequence[Scenario], grace_s: float, slice_s: float
) -> dict[tuple[str, int], int]:
    """Index of each negative slice ``(agent, slice number)``, in agent then time order.

    A slice is the agent's observed span cut at multiples of ``slice_s``; it is dropped
    when the agent's attack intervals ``[start, end + grace]`` cover all of it.
    """
    busy: dict[str, list[list[float]]] = defaultdict(list)
    for a in sorted(attacks, key=lambda a: a.start):
        merged = busy[a.agent_id]
        if merged and a.start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], a.end + grace_s)
        else:
            merged.append([a.start, a.end + grace_s])
    index: dict[tuple[str, int], int] = {}
    for agent in sorted(spans):
        first, last = spans[agent]
        intervals = busy.get(agent, [])
        starts = [iv[0] for iv in intervals]
        low, high = slice_range(first, last, slice_s)
        for k in range(low, high + 1):
            lo, hi = max(k * slice_s, first), min((k + 1) * slice_s, last)
            at = bisect.bisect_right(starts, lo) - 1
            if at >= 0 and intervals[at][1] >= hi:
                continue  # wholly attack time
            index[(agent, k)] = len(index)
    return index


def slice_range(first: float, last: float, slice_s: float) -> tuple[int, int]:
    """First and last slice number of a span (a span ending on a boundary stops there).

    >>> slice_range(0, 7200, 3600), slice_range(10, 10, 3600), slice_range(0, 7201, 3600)
    ((0, 1), (0, 0), (0, 2))
    """
    low = math.floor(first / slice_s)
    return low, max(low, math.ceil(last / slice_s) - 1)


def _clamp_slice(spans: dict[str, Span], agent: str, t: float, slice_s: float) -> int | None:
    """The slice of ``t`` in the agent's span (times outside it go to the nearest slice)."""
    span = spans.get(agent)
    if span is None:
        return None
    low, high = slice_range(span[0], span[1], slice_s)
    return min(max(math.floor(t / slice_s), low), high)


class _ScenarioIndex:
    def __init__(self, scenarios: Sequence[Scenario], grace_s: float) -> None:
        self.grace_s = grace_s
        self.by_event: dict[str, list[int]] = defaultdict(list)
        by_agent: dict[str, list[int]] = defaultdict(list)
        for i, sc in enumerate(scenarios):
            for e in sc.event_ids:
                self.by_event[e].append(i)
            by_agent[sc.agent_id].append(i)
        self.scenarios = scenarios
        self.by_agent = {
            a: sorted(ix, key=lambda i: scenarios[i].start) for a, ix in by_agent.items()
        }
        self.starts = {a: [scenarios[i].start for i in ix] for a, ix in self.by_agent.items()}
        self.longest = max((sc.end - sc.start for sc in scenarios), default=0.0) + grace_s

    def matches(self, s: Signal) -> set[int]:
        hits: set[int] = set()
        for e in s.event_ids:
            hits.update(self.by_event.get(e, ()))
        ix = self.by_agent.get(s.agent_id)
        if ix:
            starts = self.starts[s.agent_id]
            lo = bisect.bisect_left(starts, s.t - self.longest)
            hi = bisect.bisect_right(starts, s.t)
            for i in ix[lo:hi]:
                sc = self.scenarios[i]
                if s.overlaps(sc.start, sc.end + self.grace_s):
                    hits.add(i)
        return hits


def evaluate_scenarios(
    system: str,
    signals: Iterable[Signal],
    scenarios: Sequence[Scenario],
    spans: dict[str, Span],
    *,
    grace_s: float,
    slice_s: float = 3600.0,
) -> SystemResult:
    """Attack instances against per-agent time slices (see the module docstring)."""
    if slice_s <= 0 or grace_s < 0:
        raise ValueError("slice_s must be > 0 and grace_s >= 0")
    attacks = [sc for sc in scenarios if sc.attack]
    benign = [sc for sc in scenarios if not sc.attack]
    attack_pos = {id(sc): i for i, sc in enumerate(attacks)}
    benign_pos = {id(sc): i for i, sc in enumerate(benign)}
    slices = negative_slices(spans, attacks, grace_s, slice_s)
    units = Units(
        pos_keys=[sc.scenario_id for sc in attacks],
        pos_groups=[sc.scenario for sc in attacks],
        pos_agents=[sc.agent_id for sc in attacks],
        pos_start=[sc.start for sc in attacks],
        neg_agents=[agent for agent, _ in slices],
    )
    index = _ScenarioIndex(scenarios, grace_s)
    matched: list[Matched] = []
    for s in signals:
        hits = [index.scenarios[i] for i in index.matches(s)]
        pos = tuple(sorted(attack_pos[id(sc)] for sc in hits if sc.attack))
        neg: tuple[int, ...] = ()
        if not pos:
            k = _clamp_slice(spans, s.agent_id, s.t, slice_s)
            j = slices.get((s.agent_id, k)) if k is not None else None
            neg = (j,) if j is not None else ()
        ben = tuple(sorted(benign_pos[id(sc)] for sc in hits if not sc.attack))
        if pos or neg or ben or s.alert:
            matched.append(Matched(s, pos, neg, ben))
    hours = agent_hours(spans)
    overall, p_scores, n_scores = measure(matched, units, hours)
    groups: dict[str, Metrics] = {}
    for name in sorted(set(units.pos_groups)):
        chosen = [i for i, g in enumerate(units.pos_groups) if g == name]
        groups[name] = measure(matched, units, hours, pos_only=chosen)[0]
    return SystemResult(
        system=system,
        overall=overall,
        groups=groups,
        detectors=_per_detector(matched, units, hours),
        hard_negatives=_hard_negatives(matched, benign),
        pos_scores=tuple(p_scores),
        neg_scores=tuple(n_scores),
    )


def _hard_negatives(
    matched: Sequence[Matched], benign: Sequence[Scenario]
) -> dict[str, HardNegative]:
    alerts: dict[str, int] = defaultdict(int)
    alerted: dict[str, set[int]] = defaultdict(set)
    for m in matched:
        if not m.false_alert:
            continue
        for i in m.benign:
            name = benign[i].scenario
            alerts[name] += 1
            alerted[name].add(i)
    result: dict[str, HardNegative] = {}
    for name in sorted({sc.scenario for sc in benign}):
        instances = [sc for sc in benign if sc.scenario == name]
        result[name] = HardNegative(
            scenario=name,
            instances=len(instances),
            alerted=len(alerted[name]),
            alerts=alerts[name],
            hours=sum(sc.end - sc.start for sc in instances) / 3600,
        )
    return result


# -- sessions -------------------------------------------------------------------------------


def evaluate_sessions(
    system: str,
    signals: Iterable[Signal],
    labels: Sequence[SessionLabel],
    spans: dict[str, Span],
    session_start: dict[str, float],
    session_agent: dict[str, str] | None = None,
) -> SystemResult:
    """Labelled sessions as units; groups are agents (see the module docstring).

    ``session_start`` holds each session's first event time; ``session_agent`` names the
    agent of sessions whose label has no ``agent_id``.
    """
    session_agent = session_agent or {}
    by_id = {label.session_id: label for label in labels}  # the last label of an id wins
    positives = sorted(i for i, lab in by_id.items() if lab.positive)
    negatives = sorted(i for i, lab in by_id.items() if not lab.positive)

    def agent_of(session: str) -> str:
        return by_id[session].agent_id or session_agent.get(session, "(unknown)")

    pos_index = {s: i for i, s in enumerate(positives)}
    neg_index = {s: i for i, s in enumerate(negatives)}
    units = Units(
        pos_keys=positives,
        pos_groups=[agent_of(s) for s in positives],
        pos_agents=[agent_of(s) for s in positives],
        pos_start=[session_start.get(s) for s in positives],
        neg_agents=[agent_of(s) for s in negatives],
    )
    matched: list[Matched] = []
    for s in signals:
        pos = tuple(sorted({pos_index[x] for x in s.session_ids if x in pos_index}))
        neg = tuple(sorted({neg_index[x] for x in s.session_ids if x in neg_index}))
        if pos or neg or s.alert:
            matched.append(Matched(s, pos, neg))
    overall, p_scores, n_scores = measure(matched, units, agent_hours(spans))
    by_agent: dict[str, list[Matched]] = defaultdict(list)
    for m in matched:
        by_agent[m.signal.agent_id].append(m)
    groups: dict[str, Metrics] = {}
    for agent in sorted(set(units.pos_agents) | set(units.neg_agents)):
        sub_units, sub = _restrict_to_agent(units, by_agent.get(agent, []), agent)
        span = {agent: spans[agent]} if agent in spans else {}
        groups[agent] = measure(sub, sub_units, agent_hours(span))[0]
    return SystemResult(
        system=system,
        overall=overall,
        groups=groups,
        detectors=_per_detector(matched, units, agent_hours(spans)),
        pos_scores=tuple(p_scores),
        neg_scores=tuple(n_scores),
    )


def _restrict_to_agent(
    units: Units, matched: Sequence[Matched], agent: str
) -> tuple[Units, list[Matched]]:
    """The units of ``agent`` and its signals among ``matched`` (unit indices re-mapped)."""
    pos = [i for i, a in enumerate(units.pos_agents) if a == agent]
    neg = [j for j, a in enumerate(units.neg_agents) if a == agent]
    pos_map = {old: new for new, old in enumerate(pos)}
    neg_map = {old: new for new, old in enumerate(neg)}
    sub_units = Units(
        pos_keys=[units.pos_keys[i] for i in pos],
        pos_groups=[units.pos_groups[i] for i in pos],
        pos_agents=[agent] * len(pos),
        pos_start=[units.pos_start[i] for i in pos],
        neg_agents=[agent] * len(neg),
    )
    sub = [
        Matched(
            m.signal,
            tuple(pos_map[i] for i in m.pos if i in pos_map),
            tuple(neg_map[j] for j in m.neg if j in neg_map),
            hit=bool(m.pos),
        )
        for m in matched
        if m.signal.agent_id == agent
    ]
    return sub_units, sub
