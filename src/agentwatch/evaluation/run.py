"""``evaluate()``: agentwatch and the static baseline against labels, one report::

    from agentwatch.evaluation import evaluate, write_report

    report = evaluate("events.jsonl.gz", "labels.jsonl")
    write_report(report, Path("report"))  # report.md, report.json, PNG plots

The library is quiet; pass ``progress`` (a :class:`ProgressHook`) to follow long runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from agentwatch.config import DetectSettings
from agentwatch.evaluation.labels import DEFAULT_LABEL_FIELD, Labels, read_labels
from agentwatch.evaluation.scoring import (
    HardNegative,
    Metrics,
    Signal,
    SystemResult,
    agent_hours,
    evaluate_scenarios,
    evaluate_sessions,
)
from agentwatch.evaluation.signals import agent_spans, engine_signals, session_starts
from agentwatch.evaluation.static_rules import StaticRule, evaluate_static, load_static_rules
from agentwatch.replay import ReplayReport, read_events
from agentwatch.schemas.events import Event

AGENTWATCH = "agentwatch"
STATIC = "static rules"


class ProgressHook(Protocol):
    def stage(self, name: str, total: int | None) -> None:
        """A new stage of ``total`` steps (None: unknown) begins."""

    def advance(self, steps: int) -> None:
        """``steps`` more steps of the current stage are done."""


class _Quiet:
    def stage(self, name: str, total: int | None) -> None:
        pass

    def advance(self, steps: int) -> None:
        pass


@dataclass(frozen=True)
class ModeResult:
    """One unit of evaluation (scenario instances or sessions), both systems."""

    kind: Literal["scenarios", "sessions"]
    group_label: str  # what the per-group rows are: "scenario" or "agent"
    systems: tuple[SystemResult, ...]

    def system(self, name: str) -> SystemResult:
        return next(s for s in self.systems if s.system == name)


@dataclass
class EvalReport:
    events_path: str
    labels_path: str
    events: int
    invalid_lines: int
    agents: int
    agent_hours: float
    flag_score: float
    grace_s: float
    slice_s: float
    label_field: str
    static_rules: list[tuple[str, str]]  # name, description
    scenarios: ModeResult | None = None
    sessions: ModeResult | None = None
    anomalies: int = 0
    static_alerts: int = 0
    timings_s: dict[str, float] = field(default_factory=dict)

    def modes(self) -> list[ModeResult]:
        return [m for m in (self.scenarios, self.sessions) if m is not None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; metrics carry their derived figures (precision, recall, …)."""
        data = {k: v for k, v in asdict(self).items() if k not in ("scenarios", "sessions")}
        for mode in self.modes():
            data[mode.kind] = {
                "group_label": mode.group_label,
                "systems": {s.system: _system_dict(s) for s in mode.systems},
            }
        return data


def _metrics_dict(m: Metrics) -> dict[str, Any]:
    data = asdict(m)
    data["ttd_s"] = list(m.ttd_s)
    for name in (
        "precision",
        "recall",
        "alert_precision",
        "false_alerts_per_1000h",
        "ttd_median_s",
        "ttd_p90_s",
    ):
        data[name] = getattr(m, name)
    return data


def _hard_dict(h: HardNegative) -> dict[str, Any]:
    return {**asdict(h), "alerts_per_1000h": h.alerts_per_1000h}


def _system_dict(s: SystemResult) -> dict[str, Any]:
    return {
        "overall": _metrics_dict(s.overall),
        "groups": {k: _metrics_dict(v) for k, v in s.groups.items()},
        "detectors": {k: _metrics_dict(v) for k, v in s.detectors.items()},
        "hard_negatives": {k: _hard_dict(v) for k, v in s.hard_negatives.items()},
    }


def evaluate(
    events_path: Path | str,
    labels_path: Path | str,
    *,
    settings: DetectSettings | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
    grace_s: float | None = None,
    slice_s: float = 3600.0,
    static_rules: Path | Sequence[StaticRule] | None = None,
    progress: ProgressHook | None = None,
) -> EvalReport:
    """Replay ``events_path`` through agentwatch and the static rules; measure both.

    ``settings`` default to the built-in detection settings; ``grace_s`` to two windows
    (``2 × settings.window_s``); ``static_rules`` to the built-in baseline.
    """
    progress = progress or _Quiet()
    events_path, labels_path = Path(events_path), Path(labels_path)
    started = time.perf_counter()
    labels = read_labels(labels_path, label_field)
    replay_report = ReplayReport()
    size = None if events_path.suffix == ".gz" else events_path.stat().st_size
    progress.stage("reading events", size)
    events = read_events(events_path, replay_report, progress.advance)
    timings = {"read": time.perf_counter() - started}
    report = evaluate_events(
        events,
        labels,
        settings=settings,
        grace_s=grace_s,
        slice_s=slice_s,
        static_rules=static_rules,
        progress=progress,
        label_field=label_field,
    )
    report.events_path, report.labels_path = str(events_path), str(labels_path)
    report.invalid_lines = replay_report.rejected
    report.timings_s = {**timings, **report.timings_s}
    return report


def evaluate_events(
    events: list[Event],
    labels: Labels,
    *,
    settings: DetectSettings | None = None,
    grace_s: float | None = None,
    slice_s: float = 3600.0,
    static_rules: Path | Sequence[StaticRule] | None = None,
    progress: ProgressHook | None = None,
    label_field: str = DEFAULT_LABEL_FIELD,
) -> EvalReport:
    """:func:`evaluate` on events and labels already in memory."""
    progress = progress or _Quiet()
    settings = settings or DetectSettings()
    grace = 2 * settings.window_s if grace_s is None else grace_s
    if grace < 0 or slice_s <= 0:
        raise ValueError("grace must be >= 0 and slice > 0")
    if not len(labels):
        raise ValueError("no labels")
    rules = (
        load_static_rules(static_rules)
        if static_rules is None or isinstance(static_rules, Path)
        else list(static_rules)
    )
    timings: dict[str, float] = {}

    started = time.perf_counter()
    progress.stage("agentwatch: replaying", len(events))
    ours, replayed = engine_signals(events, settings, progress.advance)
    timings["agentwatch"] = time.perf_counter() - started

    started = time.perf_counter()
    progress.stage("static rules", len(rules))
    static = evaluate_static(rules, events, progress.advance)
    timings["static rules"] = time.perf_counter() - started

    started = time.perf_counter()
    progress.stage("measuring", None)
    spans = agent_spans(events)
    systems: list[tuple[str, list[Signal]]] = [(AGENTWATCH, ours), (STATIC, static)]
    scenarios = sessions = None
    if labels.scenarios:
        scenarios = ModeResult(
            "scenarios",
            "scenario",
            tuple(
                evaluate_scenarios(
                    name, signals, labels.scenarios, spans, grace_s=grace, slice_s=slice_s
                )
                for name, signals in systems
            ),
        )
    if labels.sessions:
        starts, agents = session_starts(events)
        sessions = ModeResult(
            "sessions",
            "agent",
            tuple(
                evaluate_sessions(name, signals, labels.sessions, spans, starts, agents)
                for name, signals in systems
            ),
        )
    timings["measure"] = time.perf_counter() - started
    return EvalReport(
        events_path="",
        labels_path="",
        events=len(events),
        invalid_lines=0,
        agents=len(spans),
        agent_hours=agent_hours(spans),
        flag_score=settings.flag_score,
        grace_s=grace,
        slice_s=slice_s,
        label_field=label_field,
        static_rules=[(r.name, r.description) for r in rules],
        scenarios=scenarios,
        sessions=sessions,
        anomalies=replayed.anomalies,
        static_alerts=len(static),
        timings_s=timings,
    )
