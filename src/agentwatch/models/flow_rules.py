"""Flow rules: sequences within a session, written as data (YAML), not code.

A rule says: an earlier event in the same session matched ``first``, and this event
matches ``then`` within ``within_s`` seconds of event time. ``then`` may require novelty
findings on the event (``new: [destination]``), so "secret read, then a new destination"
is one line of YAML. Teams add their own rules file (``AGENTWATCH_DETECT__RULES_FILE``).

>>> rules = load_rules()
>>> [r.name for r in rules][:1]
['secret_then_new_destination']
"""

from __future__ import annotations

import fnmatch
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from agentwatch.features.context import EventContext
from agentwatch.models.base import Finding
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event

NOVELTY_FAMILIES = {
    "destination": "new_destination",
    "tool": "new_tool",
    "transition": "new_transition",
    "tool_destination": "new_tool_destination",
    "argument": "new_argument",
    "argument_size": "argument_size",
    "payload_size": "payload_size",
}
MATCH_KEYS = {
    "type",
    "tool_name",
    "secret_name",
    "status",
    "destination_kind",
    "min_bytes_out",
    "new",
}


class RuleError(ValueError):
    """A rules file that does not follow the format."""


@dataclass(frozen=True, slots=True)
class Matcher:
    conditions: dict[str, Any]
    # The event types a plain (glob-free) ``type`` condition allows: a quick first test.
    types: frozenset[str] | None = None

    def matches(self, event: Event, fired: set[str]) -> bool:
        if self.types is not None and event.type not in self.types:
            return False
        return all(_CHECKS[key](event, want, fired) for key, want in self.conditions.items())


def _glob(value: str | None, want: Any) -> bool:
    patterns = want if isinstance(want, list) else [want]
    return value is not None and any(fnmatch.fnmatchcase(value, str(p)) for p in patterns)


_CHECKS: dict[str, Any] = {
    "type": lambda e, w, f: _glob(e.type, w),
    "tool_name": lambda e, w, f: _glob(e.tool_name, w),
    "secret_name": lambda e, w, f: _glob(e.secret_name, w),
    "status": lambda e, w, f: _glob(e.status, w),
    "destination_kind": lambda e, w, f: any(_glob(d.kind, w) for d in e.destinations or ()),
    "min_bytes_out": lambda e, w, f: (e.bytes_out or 0) >= float(w),
    "new": lambda e, w, f: all(
        NOVELTY_FAMILIES[x] in f for x in (w if isinstance(w, list) else [w])
    ),
}


@dataclass(frozen=True, slots=True)
class FlowRule:
    name: str
    description: str
    first: Matcher
    then: Matcher
    within_s: float
    score: float


def _matcher(rule: str, part: str, raw: Any) -> Matcher:
    if not isinstance(raw, dict) or not raw:
        raise RuleError(f"rule {rule!r}: `{part}` must be a non-empty mapping")
    unknown = set(raw) - MATCH_KEYS
    if unknown:
        raise RuleError(f"rule {rule!r}: unknown matcher(s) {sorted(unknown)} in `{part}`")
    news = raw.get("new", [])
    for family in news if isinstance(news, list) else [news]:
        if family not in NOVELTY_FAMILIES:
            raise RuleError(f"rule {rule!r}: `new` must name {sorted(NOVELTY_FAMILIES)}")
    wanted = raw.get("type")
    names = wanted if isinstance(wanted, list) else [wanted] if wanted is not None else []
    plain = names and not any(set(str(n)) & set("*?[") for n in names)
    return Matcher(dict(raw), frozenset(str(n) for n in names) if plain else None)


def parse_rules(data: Any) -> list[FlowRule]:
    if not isinstance(data, dict) or data.get("version") != 1:
        raise RuleError("rules file must be a mapping with `version: 1`")
    rules = []
    for raw in data.get("rules") or []:
        name = str(raw.get("name", ""))
        if not name:
            raise RuleError("every rule needs a `name`")
        score = float(raw.get("score", 90))
        if not 0 <= score <= 100:
            raise RuleError(f"rule {name!r}: score must be within 0–100")
        rules.append(
            FlowRule(
                name=name,
                description=str(raw.get("description", name)),
                first=_matcher(name, "first", raw.get("first")),
                then=_matcher(name, "then", raw.get("then")),
                within_s=float(raw.get("within_s", 600)),
                score=score,
            )
        )
    return rules


def load_rules(path: Path | None = None) -> list[FlowRule]:
    """The rules of ``path``, or the built-in default rules."""
    if path is None:
        text = resources.files("agentwatch.models").joinpath("rules/default.yaml").read_text()
    else:
        text = Path(path).read_text(encoding="utf-8")
    return parse_rules(yaml.safe_load(text))


@dataclass(slots=True)
class _SessionMarks:
    first_seen: dict[str, tuple[datetime, str]] = field(default_factory=dict)


class FlowRuleEngine:
    """Evaluates the rules on each event, after the novelty detectors ran on it."""

    name = "flow_rule"

    def __init__(self, rules: list[FlowRule], max_sessions: int = 100_000) -> None:
        self.rules = rules
        self.max_sessions = max_sessions
        self._sessions: OrderedDict[tuple[str, str], _SessionMarks] = OrderedDict()

    def evaluate(self, event: Event, ctx: EventContext, fired: set[str]) -> list[Finding]:
        key = (ctx.agent_id, ctx.session_key)
        marks = self._sessions.get(key)
        findings = []
        if marks is not None:
            for rule in self.rules:
                seen = marks.first_seen.get(rule.name)
                if seen is None or not rule.then.matches(event, fired):
                    continue
                elapsed = (event.ts - seen[0]).total_seconds()
                if 0 <= elapsed <= rule.within_s:
                    findings.append(self._finding(rule, event, seen, elapsed))
        for rule in self.rules:
            if rule.first.matches(event, fired):
                if marks is None:
                    marks = self._sessions[key] = _SessionMarks()
                marks.first_seen[rule.name] = (event.ts, event.event_id)
        if marks is not None:
            self._sessions.move_to_end(key)
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
        if event.type == "session_end":
            self._sessions.pop(key, None)
        return findings

    def _finding(
        self, rule: FlowRule, event: Event, seen: tuple[datetime, str], elapsed: float
    ) -> Finding:
        where = ", ".join(f"{d.kind} {d.value}" for d in (event.destinations or ())[:3])
        return Finding(
            detector=f"{self.name}:{rule.name}",
            p=1.0,
            min_score=rule.score,
            explanation=f"{rule.description} ({elapsed:.0f} s apart"
            + (f"; {where})" if where else ")"),
            contributions=(
                Contribution(
                    feature=f"rule.{rule.name}",
                    value=f"{elapsed:.0f} s after {seen[1]}",
                    typical=f"never within {rule.within_s:.0f} s",
                    unusual="matches a flow rule",
                ),
            ),
            event_ids=(seen[1], event.event_id),
        )
