"""The static rule baseline: hand-written thresholds, evaluated over the same events.

The rules are data (``static_rules.yaml`` next to this module; the format is described at
its top). :func:`load_static_rules` reads a file; :func:`parse_static_rules` and
:func:`evaluate_static` are pure. Every rule hit is an alert
(:class:`~agentwatch.evaluation.scoring.Signal` with ``alert=True``) named after its rule,
so the evaluation measures the baseline exactly as it measures agentwatch.

>>> [r.name for r in load_static_rules()][:3]
['tool_call_rate', 'secret_then_external_send', 'large_upload']
"""

from __future__ import annotations

import bisect
import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from agentwatch.evaluation.scoring import Signal
from agentwatch.schemas.events import Event

FIELDS = ("bytes_in", "bytes_out", "tokens_in", "tokens_out", "cost_usd", "duration_ms")
MATCH_KEYS = frozenset(
    {"type", "tool_name", "status", "secret_name", "destination_kind", "external_destination"}
)
KINDS = frozenset({"event", "sequence", "window"})
_RULE_KEYS = frozenset(
    {
        "name",
        "description",
        "kind",
        "where",
        "first",
        "then",
        "field",
        "aggregate",
        "window_s",
        "step_s",
        "within_s",
        "above",
        "min_events",
        "score",
        "score_per_doubling",
    }
)
_EXTERNAL_KINDS = frozenset({"host", "ip", "url", "email"})


class StaticRuleError(ValueError):
    """A static rules file that does not follow the format."""


def _patterns(want: Any) -> tuple[str, ...]:
    return tuple(str(p) for p in (want if isinstance(want, list) else [want]))


def _glob(value: str | None, patterns: tuple[str, ...]) -> bool:
    return value is not None and any(fnmatch.fnmatchcase(value, p) for p in patterns)


def destination_host(kind: str, value: str) -> str:
    """The host part of a destination, lower case.

    >>> destination_host("url", "https://API.example.com:8443/x")
    'api.example.com'
    >>> destination_host("email", "ap@Customer.example")
    'customer.example'
    """
    if kind == "url":
        try:
            host = urlsplit(value).hostname
        except ValueError:
            host = None
        return (host or value).lower()
    if kind == "email":
        return value.rpartition("@")[2].lower()
    return value.lower()


@dataclass(frozen=True, slots=True)
class Matcher:
    """All conditions must hold; an empty matcher matches every event."""

    conditions: tuple[tuple[str, Any], ...] = ()
    internal_hosts: tuple[str, ...] = ()

    def __call__(self, event: Event) -> bool:
        for key, want in self.conditions:
            if key == "type":
                ok = _glob(event.type, want)
            elif key == "tool_name":
                ok = _glob(event.tool_name, want)
            elif key == "status":
                ok = _glob(event.status, want)
            elif key == "secret_name":
                ok = _glob(event.secret_name, want)
            elif key == "destination_kind":
                ok = any(_glob(d.kind, want) for d in event.destinations or ())
            else:  # external_destination
                ok = self.external(event) == want
            if not ok:
                return False
        return True

    def external(self, event: Event) -> bool:
        return any(
            d.kind in _EXTERNAL_KINDS
            and not _glob(destination_host(d.kind, d.value), self.internal_hosts)
            for d in event.destinations or ()
        )


@dataclass(frozen=True, slots=True)
class StaticRule:
    name: str
    description: str
    kind: str  # event, sequence, window
    where: Matcher
    score: float
    score_per_doubling: float
    above: float = 0.0
    field: str | None = None  # event rules
    first: Matcher | None = None  # sequence rules
    then: Matcher | None = None
    within_s: float = 0.0
    aggregate: str = "count"  # window rules: count, sum, share
    aggregate_field: str | None = None
    share: Matcher | None = None
    window_s: float = 60.0
    step_s: float = 60.0
    min_events: int = 1

    def score_for(self, value: float) -> float:
        """``score`` at the threshold, ``score_per_doubling`` more per doubling, ≤ 100.

        >>> StaticRule("r", "", "event", Matcher(), 60, 10, above=100).score_for(400)
        80.0
        """
        if self.above <= 0 or value <= self.above:
            return min(100.0, self.score)
        return min(100.0, self.score + self.score_per_doubling * math.log2(value / self.above))


# -- loading --------------------------------------------------------------------------------


def load_static_rules(path: Path | None = None) -> list[StaticRule]:
    """The rules of ``path``, or the built-in baseline."""
    if path is None:
        text = (
            resources.files("agentwatch.evaluation")
            .joinpath("static_rules.yaml")
            .read_text(encoding="utf-8")
        )
    else:
        text = path.read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StaticRuleError(f"not YAML: {exc}") from exc
    return parse_static_rules(doc)


def _matcher(raw: Any, internal: tuple[str, ...], rule: str, what: str) -> Matcher:
    if raw is None:
        return Matcher((), internal)
    if not isinstance(raw, dict):
        raise StaticRuleError(f"rule {rule!r}: `{what}` must be a mapping")
    unknown = set(raw) - MATCH_KEYS
    if unknown:
        raise StaticRuleError(f"rule {rule!r}: unknown matcher {sorted(unknown)} in `{what}`")
    conditions: list[tuple[str, Any]] = []
    for key, want in raw.items():
        if key == "external_destination":
            if not isinstance(want, bool):
                raise StaticRuleError(f"rule {rule!r}: `external_destination` must be a boolean")
            conditions.append((key, want))
        else:
            conditions.append((key, _patterns(want)))
    return Matcher(tuple(conditions), internal)


def _number(raw: dict[str, Any], key: str, rule: str, default: float | None = None) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise StaticRuleError(f"rule {rule!r}: `{key}` must be a number >= 0")
    return float(value)


def parse_static_rules(doc: Any) -> list[StaticRule]:
    if not isinstance(doc, dict) or doc.get("version") != 1:
        raise StaticRuleError("a static rules file needs `version: 1`")
    defaults = doc.get("defaults") or {}
    internal = _patterns(doc.get("internal_hosts") or [])
    rules: list[StaticRule] = []
    for raw in doc.get("rules") or []:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
            raise StaticRuleError("every rule needs a `name`")
        name: str = raw["name"]
        unknown = set(raw) - _RULE_KEYS
        if unknown:
            raise StaticRuleError(f"rule {name!r}: unknown keys {sorted(unknown)}")
        if name in {r.name for r in rules}:
            raise StaticRuleError(f"rule {name!r} is defined twice")
        merged = {**defaults, **raw}
        kind = merged.get("kind")
        if kind not in KINDS:
            raise StaticRuleError(f"rule {name!r}: `kind` must be one of {sorted(KINDS)}")
        common: dict[str, Any] = {
            "name": name,
            "description": str(merged.get("description") or ""),
            "kind": kind,
            "where": _matcher(merged.get("where"), internal, name, "where"),
            "score": _number(merged, "score", name, 60.0),
            "score_per_doubling": _number(merged, "score_per_doubling", name, 10.0),
        }
        if kind == "event":
            field = merged.get("field")
            if field not in FIELDS:
                raise StaticRuleError(f"rule {name!r}: `field` must be one of {list(FIELDS)}")
            rules.append(StaticRule(**common, field=field, above=_number(merged, "above", name)))
        elif kind == "sequence":
            if "first" not in merged or "then" not in merged:
                raise StaticRuleError(f"rule {name!r}: a sequence needs `first` and `then`")
            rules.append(
                StaticRule(
                    **common,
                    first=_matcher(merged["first"], internal, name, "first"),
                    then=_matcher(merged["then"], internal, name, "then"),
                    within_s=_number(merged, "within_s", name),
                )
            )
        else:
            rules.append(_window_rule(common, merged, internal, name))
    if not rules:
        raise StaticRuleError("no rules")
    return rules


def _window_rule(
    common: dict[str, Any], merged: dict[str, Any], internal: tuple[str, ...], name: str
) -> StaticRule:
    aggregate = merged.get("aggregate", "count")
    agg_field: str | None = None
    share: Matcher | None = None
    if aggregate == "count":
        kind = "count"
    elif isinstance(aggregate, dict) and len(aggregate) == 1 and "sum" in aggregate:
        kind, agg_field = "sum", aggregate["sum"]
        if agg_field not in FIELDS:
            raise StaticRuleError(f"rule {name!r}: `sum` must be one of {list(FIELDS)}")
    elif isinstance(aggregate, dict) and len(aggregate) == 1 and "share" in aggregate:
        kind, share = "share", _matcher(aggregate["share"], internal, name, "share")
    else:
        raise StaticRuleError(
            f"rule {name!r}: `aggregate` is count, {{sum: FIELD}} or {{share: MATCHER}}"
        )
    window_s = _number(merged, "window_s", name)
    step_s = _number(merged, "step_s", name, 60.0)
    if window_s <= 0 or step_s <= 0:
        raise StaticRuleError(f"rule {name!r}: `window_s` and `step_s` must be > 0")
    return StaticRule(
        **common,
        above=_number(merged, "above", name),
        aggregate=kind,
        aggregate_field=agg_field,
        share=share,
        window_s=window_s,
        step_s=step_s,
        min_events=max(1, int(_number(merged, "min_events", name, 1))),
    )


# -- evaluation -----------------------------------------------------------------------------


def evaluate_static(
    rules: Sequence[StaticRule],
    events: Sequence[Event],
    progress: Callable[[int], None] | None = None,
) -> list[Signal]:
    """Every rule alert over ``events`` (any order; processed in event-time order)."""
    ordered = sorted(events, key=lambda e: e.ts)
    times = [e.ts.timestamp() for e in ordered]
    by_agent: dict[str, list[int]] = {}
    for i, e in enumerate(ordered):
        by_agent.setdefault(e.agent_id, []).append(i)
    signals: list[Signal] = []
    for rule in rules:
        if rule.kind == "event":
            signals += _event_rule(rule, ordered, times)
        elif rule.kind == "sequence":
            signals += _sequence_rule(rule, ordered, times)
        else:
            for agent in sorted(by_agent):
                signals += _window_rule_alerts(rule, agent, ordered, times, by_agent[agent])
        if progress is not None:
            progress(1)
    signals.sort(key=lambda s: (s.t, s.agent_id, s.detectors))
    return signals


def _sessions(events: Sequence[Event]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(e.session_id for e in events if e.session_id))


def _event_rule(rule: StaticRule, events: Sequence[Event], times: Sequence[float]) -> list[Signal]:
    assert rule.field is not None
    out: list[Signal] = []
    for event, t in zip(events, times, strict=True):
        value = getattr(event, rule.field)
        if value is not None and value > rule.above and rule.where(event):
            out.append(
                Signal(
                    event.agent_id,
                    t,
                    rule.score_for(float(value)),
                    (rule.name,),
                    True,
                    (event.event_id,),
                    _sessions([event]),
                )
            )
    return out


def _sequence_rule(
    rule: StaticRule, events: Sequence[Event], times: Sequence[float]
) -> list[Signal]:
    assert rule.first is not None
    assert rule.then is not None
    last_first: dict[tuple[str, str | None], tuple[float, Event]] = {}
    out: list[Signal] = []
    for event, t in zip(events, times, strict=True):
        if not rule.where(event):
            continue
        scope = (event.agent_id, event.session_id)
        if rule.then(event):
            seen = last_first.get(scope)
            if seen is not None and t - seen[0] <= rule.within_s:
                out.append(
                    Signal(
                        event.agent_id,
                        t,
                        min(100.0, rule.score),
                        (rule.name,),
                        True,
                        (seen[1].event_id, event.event_id),
                        _sessions([seen[1], event]),
                    )
                )
        if rule.first(event):
            last_first[scope] = (t, event)
    return out


def _window_rule_alerts(
    rule: StaticRule,
    agent: str,
    events: Sequence[Event],
    times: Sequence[float],
    indices: Sequence[int],
) -> list[Signal]:
    chosen: list[Event] = []
    ts: list[float] = []
    values: list[float] = []
    for i in indices:
        event = events[i]
        if not rule.where(event):
            continue
        if rule.aggregate == "sum":
            assert rule.aggregate_field is not None
            raw = getattr(event, rule.aggregate_field)
            if raw is None:
                continue
            value = float(raw)
        elif rule.aggregate == "share":
            assert rule.share is not None
            value = 1.0 if rule.share(event) else 0.0
        else:
            value = 1.0
        chosen.append(event)
        ts.append(times[i])
        values.append(value)
    if not chosen:
        return []
    step, width = rule.step_s, rule.window_s
    prefix = [0.0]  # sums of values (counts and shares: exact, they are integers)
    for v in values:
        prefix.append(prefix[-1] + v)
    out: list[Signal] = []
    episode: list[Any] | None = None  # [first t, last k, max value, lo, hi]

    def close() -> None:
        if episode is not None:
            t0, _, peak, lo, hi = episode
            window_events = chosen[lo:hi]
            out.append(
                Signal(
                    agent,
                    t0,
                    rule.score_for(peak),
                    (rule.name,),
                    True,
                    tuple(e.event_id for e in window_events),
                    _sessions(window_events),
                    start=t0 - width,
                )
            )

    for k in _evaluation_steps(ts, step, width):
        end = k * step
        lo = bisect.bisect_right(ts, end - width)
        hi = bisect.bisect_right(ts, end)
        n = hi - lo
        if n < rule.min_events:
            continue
        if rule.aggregate == "sum":
            value = prefix[hi] - prefix[lo]
            if abs(value - rule.above) <= 1e-9 * max(abs(prefix[hi]), 1.0):
                value = math.fsum(values[lo:hi])  # exact where rounding could decide
        elif rule.aggregate == "share":
            value = (prefix[hi] - prefix[lo]) / n
        else:
            value = float(n)
        if value <= rule.above:
            continue
        if episode is not None and episode[1] == k - 1:
            episode[1] = k
            episode[2] = max(episode[2], value)
            episode[4] = hi
        else:
            close()
            episode = [end, k, value, lo, hi]
    close()
    return out


def _evaluation_steps(ts: Sequence[float], step: float, width: float) -> list[int]:
    """Step numbers ``k`` whose window ``(k·step − width, k·step]`` holds an event."""
    steps: list[int] = []
    high = -(2**62)
    for t in ts:  # sorted
        first = max(math.ceil(t / step), high + 1)
        last = math.ceil((t + width) / step) - 1
        if last >= first:
            steps.extend(range(first, last + 1))
            high = last
    return steps
