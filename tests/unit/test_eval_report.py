"""``evaluate`` end to end on a tiny hand-written events file, with both label formats.

The static baseline's figures are computed by hand below; agentwatch's scores come from
the real engine, so they are checked against ``agentwatch replay`` (the same code path
the AgentDojo benchmark scores) rather than by hand.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest

from agentwatch.config import DetectSettings
from agentwatch.evaluation import evaluate, write_report
from agentwatch.evaluation.labels import LabelError
from agentwatch.evaluation.run import AGENTWATCH, STATIC
from agentwatch.evaluation.sessions import session_scores
from agentwatch.replay import ReplayReport, read_events, replay

EXACT = 1e-12


def approx(value: float) -> object:
    return pytest.approx(value, rel=EXACT, abs=EXACT)


def at(s: float) -> str:
    """RFC 3339 time ``s`` seconds after 2026-01-01T00:00:00Z (a multiple of one hour)."""
    return f"2026-01-01T{int(s // 3600):02d}:{int(s % 3600 // 60):02d}:{s % 60:06.3f}Z"


def event(n: str, s: float, agent: str, session: str, kind: str, **kw: Any) -> dict[str, Any]:
    return {
        "schema_version": "1",
        "event_id": n,
        "ts": at(s),
        "agent_id": agent,
        "session_id": session,
        "type": kind,
        **kw,
    }


EXFIL = [{"kind": "url", "value": "https://paste.example/up"}]
EVENTS = [
    # bot-a, observed 0 s → 3600 s (1 h)
    event("a1-start", 0, "bot-a", "a1", "session_start"),
    event("a1-search", 10, "bot-a", "a1", "tool_call", tool_name="search"),
    event("a1-end", 20, "bot-a", "a1", "session_end"),
    event("a2-start", 600, "bot-a", "a2", "session_start"),
    event("a2-secret", 610, "bot-a", "a2", "secret_access", secret_name="vault:kv/api-key"),
    event(
        "a2-post",
        620,
        "bot-a",
        "a2",
        "tool_call",
        tool_name="http_post",
        destinations=EXFIL,
        bytes_out=20_000_000,
    ),
    event("a2-end", 630, "bot-a", "a2", "session_end"),
    event("a3-start", 3000, "bot-a", "a3", "session_start"),
    *[
        event(f"a3-call{i}", 3001 + i, "bot-a", "a3", "tool_call", tool_name="fetch")
        for i in range(31)
    ],
    event("a3-end", 3600, "bot-a", "a3", "session_end"),
    # bot-b, observed 0 s → 7200 s (2 h)
    event("b1-start", 0, "bot-b", "b1", "session_start"),
    event("b1-search", 60, "bot-b", "b1", "tool_call", tool_name="search"),
    event("b1-end", 120, "bot-b", "b1", "session_end"),
    event("b2-start", 7000, "bot-b", "b2", "session_start"),
    event(
        "b2-upload",
        7100,
        "bot-b",
        "b2",
        "tool_call",
        tool_name="upload",
        destinations=[{"kind": "url", "value": "https://files.example/in"}],
        bytes_out=20_000_000,
    ),
    event("b2-end", 7200, "bot-b", "b2", "session_end"),
]
SESSION_LABELS = [
    {"session_id": "a1", "agent_id": "bot-a", "malicious_action": False},
    {"session_id": "a2", "agent_id": "bot-a", "malicious_action": True},
    {"session_id": "a3", "agent_id": "bot-a", "malicious_action": False},
    {"session_id": "b1", "agent_id": "bot-b", "malicious_action": False},
    {"session_id": "b2", "agent_id": "bot-b", "malicious_action": True, "attack_success": False},
]
SCENARIO_LABELS = [
    {
        "scenario_id": "s1",
        "scenario": "credential_theft",
        "attack": True,
        "agent_id": "bot-a",
        "agent_type": "assistant",
        "start": at(600),
        "end": at(630),
        "event_ids": ["a2-secret", "a2-post"],
        "session_ids": ["a2"],
        "description": "key out",
    },
    {
        "scenario_id": "s2",
        "scenario": "prompt_injection_exfiltration",
        "attack": True,
        "agent_id": "bot-b",
        "start": at(7000),
        "end": at(7200),
        "event_ids": [],
        "session_ids": ["b2"],
        "description": "",
    },
    {
        "scenario_id": "s3",
        "scenario": "daily_peak",
        "attack": False,
        "agent_id": "bot-a",
        "start": at(3000),
        "end": at(3600),
        "event_ids": [],
        "session_ids": ["a3"],
    },
]

# The static baseline's alerts (built-in rules), by hand:
#   620 s  bot-a  large_upload (20 MB = one doubling of 10 MB: 60 + 10 = 70)       → a2 / s1
#   620 s  bot-a  secret_then_external_send (a2-secret at 610, external url: 90)   → a2 / s1
#   3060 s bot-a  tool_call_rate (31 calls in (3000, 3060]: 60 + 10·log2(31/30))   → a3 / s3
#   7100 s bot-b  large_upload (70)                                                → b2 / s2
RATE_SCORE = 60 + 10 * math.log2(31 / 30)


def write_inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    events = tmp_path / "events.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in EVENTS) + "not json\n")
    sessions = tmp_path / "sessions.jsonl"
    sessions.write_text("".join(json.dumps(x) + "\n" for x in SESSION_LABELS))
    scenarios = tmp_path / "scenarios.jsonl"
    scenarios.write_text("".join(json.dumps(x) + "\n" for x in SCENARIO_LABELS))
    return events, sessions, scenarios


def test_session_labels_static_baseline_by_hand(tmp_path: Path) -> None:
    events, sessions, _ = write_inputs(tmp_path)
    report = evaluate(events, sessions)
    assert (report.events, report.invalid_lines, report.agents) == (len(EVENTS), 1, 2)
    assert report.agent_hours == approx(3.0)
    assert report.scenarios is None
    assert report.sessions is not None
    static = report.sessions.system(STATIC)
    m = static.overall
    # Sessions: a2 = 90 (first alert 620 − session start 600 = 20 s), b2 = 70
    # (7100 − 7000 = 100 s); a3 = 60 + 10·log2(31/30) (flagged), a1 = b1 = 0.
    assert static.pos_scores == (90.0, 70.0)
    assert static.neg_scores == (0.0, approx(RATE_SCORE), 0.0)  # a1, a3, b1
    assert (m.positives, m.detected, m.negatives, m.flagged_negatives) == (2, 2, 3, 1)
    assert (m.recall, m.precision) == (1.0, approx(2 / 3))
    assert (m.alerts, m.false_alerts) == (4, 1)
    assert m.false_alerts_per_1000h == approx(1 / 3 * 1000)  # 1 false alert in 3 agent-hours
    assert m.average_precision == 1.0  # both positives rank above every negative
    assert m.ttd_s == (20, 100)
    assert m.ttd_median_s == approx(60)
    assert static.groups["bot-a"].false_alerts_per_1000h == approx(1000)  # 1 in 1 h
    assert static.groups["bot-b"].false_alerts_per_1000h == 0.0
    rules = static.detectors
    assert (rules["large_upload"].alerts, rules["large_upload"].recall) == (2, 1.0)
    assert rules["secret_then_external_send"].recall == 0.5
    assert (rules["tool_call_rate"].false_alerts, rules["tool_call_rate"].precision) == (1, 0.0)


def test_scenario_labels_static_baseline_by_hand(tmp_path: Path) -> None:
    events, _, scenarios = write_inputs(tmp_path)
    report = evaluate(events, scenarios)
    assert report.grace_s == 120  # two 60 s windows
    assert report.sessions is None
    assert report.scenarios is not None
    static = report.scenarios.system(STATIC)
    m = static.overall
    # s1 = 90 (620 − 600 = 20 s), s2 = 70 (7100 − 7000 = 100 s).
    # Negative slices: bot-a hour 0 (s1 covers only 600–750 s of it), bot-b hours 0 and 1
    # (s2 covers 7000–7320 s, part of hour 1): the tool-call-rate alert at 3060 s falls in
    # bot-a's hour 0, which scores 60 + 10·log2(31/30); the others score 0.
    assert static.pos_scores == (90.0, 70.0)
    assert static.neg_scores == (approx(RATE_SCORE), 0.0, 0.0)
    assert (m.detected, m.flagged_negatives, m.recall, m.precision) == (2, 1, 1.0, approx(2 / 3))
    assert (m.alerts, m.false_alerts) == (4, 1)
    assert m.false_alerts_per_1000h == approx(1000 / 3)
    assert m.average_precision == 1.0
    assert m.ttd_s == (20, 100)
    assert static.groups["credential_theft"].ttd_s == (20,)
    assert static.groups["prompt_injection_exfiltration"].ttd_s == (100,)
    peak = static.hard_negatives["daily_peak"]
    # The false alert at 3060 s is inside s3 (3000–3600 s, 10 min): 1 / (1/6 h) · 1000.
    assert (peak.instances, peak.alerted, peak.alerts) == (1, 1, 1)
    assert peak.alerts_per_1000h == approx(6000)


def test_agentwatch_figures_are_the_replay_scores(tmp_path: Path) -> None:
    events_path, sessions, _ = write_inputs(tmp_path)
    settings = DetectSettings(warmup_events=5)
    report = evaluate(events_path, sessions, settings=settings)
    events = read_events(events_path, ReplayReport())
    lines = io.StringIO()
    replayed = replay(events, settings, lines, all_events=True)
    scores = session_scores(json.loads(x) for x in lines.getvalue().splitlines())
    assert report.sessions is not None
    ours = report.sessions.system(AGENTWATCH)
    assert report.anomalies == replayed.anomalies
    assert ours.pos_scores == tuple(scores.get(s, 0.0) for s in ("a2", "b2"))
    assert ours.neg_scores == tuple(scores.get(s, 0.0) for s in ("a1", "a3", "b1"))
    assert ours.overall.alerts >= 1


def test_report_files_are_written(tmp_path: Path) -> None:
    events, sessions, scenarios = write_inputs(tmp_path)
    both = tmp_path / "both.jsonl"
    both.write_text(sessions.read_text() + scenarios.read_text())  # kinds detected per line
    report = evaluate(events, both)
    assert report.scenarios is not None
    assert report.sessions is not None
    written = write_report(report, tmp_path / "out")
    names = sorted(p.name for p in written)
    assert names == sorted(
        [
            "report.md",
            "report.json",
            "pr_curve.png",
            "score_distributions.png",
            "time_to_detect.png",
            "sessions_pr_curve.png",
            "sessions_score_distributions.png",
            "sessions_time_to_detect.png",
        ]
    )
    for path in written:
        assert path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "out/report.md").read_text()
    assert "| | agentwatch | static rules |" in md.replace("|  |", "| |")
    assert "| average precision | " in md
    assert "### Hard negatives (benign scenarios)" in md
    assert "| `daily_peak` | 1 |" in md
    assert "![precision-recall curves](pr_curve.png)" in md
    assert "![precision-recall curves](sessions_pr_curve.png)" in md
    data = json.loads((tmp_path / "out/report.json").read_text())
    static = data["scenarios"]["systems"][STATIC]["overall"]
    assert (static["recall"], static["alerts"], static["ttd_s"]) == (1.0, 4, [20, 100])


def test_bad_labels_are_refused_with_the_line(tmp_path: Path) -> None:
    events, sessions, _ = write_inputs(tmp_path)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(sessions.read_text() + '{"what": 1}\n')
    with pytest.raises(LabelError, match=r"bad\.jsonl:6: neither"):
        evaluate(events, bad)
    with pytest.raises(LabelError, match="without `compromised`"):
        evaluate(events, sessions, label_field="compromised")
