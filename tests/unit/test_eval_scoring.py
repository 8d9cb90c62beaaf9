"""Evaluation metrics on hand-written signals, every expected figure computed by hand."""

from __future__ import annotations

import pytest

from agentwatch.evaluation.labels import Scenario, SessionLabel
from agentwatch.evaluation.scoring import (
    Signal,
    evaluate_scenarios,
    evaluate_sessions,
    negative_slices,
)
from agentwatch.evaluation.sessions import evaluate_sessions as legacy_evaluate_sessions

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of 3600
EXACT = 1e-12


def approx(value: float) -> object:
    return pytest.approx(value, rel=EXACT, abs=EXACT)


def sig(
    agent: str,
    t: float,
    score: float,
    alert: bool,
    detectors: tuple[str, ...] = ("d1",),
    events: tuple[str, ...] = (),
    sessions: tuple[str, ...] = (),
) -> Signal:
    return Signal(agent, T0 + t, score, detectors, alert, events, sessions)


def scenario(
    sid: str, name: str, attack: bool, agent: str, start: float, end: float, *events: str
) -> Scenario:
    return Scenario(sid, name, attack, agent, T0 + start, T0 + end, tuple(events))


# Agent A observed for 2 h, agent B for 1 h: 3 agent-hours. Grace 60 s, slices of 1 h.
SPANS = {"A": (T0, T0 + 7200), "B": (T0, T0 + 3600)}
SCENARIOS = [
    scenario("s1", "credential_theft", True, "A", 600, 900, "a1"),  # matched until 960
    scenario("s2", "runaway_loop", True, "A", 4000, 4300),  # matched until 4360
    scenario("s3", "credential_theft", True, "B", 1000, 1100, "b9"),  # until 1160
    scenario("b1", "version_deploy", False, "B", 2000, 2600),  # benign, 10 min
]
# Negative slices (agent order, then time): (A, 0) = 0, (A, 1) = 1, (B, 0) = 2; none is
# wholly covered by an attack interval, and A's span ends on a boundary (no third slice).
SIGNALS = [
    sig("A", 700, 80, True),  # s1 (time); first alert of s1
    sig("A", 650, 40, False, ("d2",)),  # s1, below the alert threshold
    sig("A", 4500, 30, False),  # after s2's end + grace: slice (A, 1)
    sig("A", 4350, 60, True, ("d2",)),  # s2 (inside end + grace)
    sig("A", 100, 55, True),  # false alert in slice (A, 0)
    sig("B", 2100, 70, True),  # false alert in slice (B, 0), inside benign b1
    sig("B", 3000, 20, False, events=("b9",)),  # s3 by event id (time outside)
    sig("A", 800, 90, True, ("d1", "d2")),  # s1 again
]


H0 = int(T0 // 3600)  # slice numbers count hours since the epoch


def test_negative_slices_skip_time_wholly_inside_attacks() -> None:
    assert negative_slices(SPANS, [s for s in SCENARIOS if s.attack], 60, 3600) == {
        ("A", H0): 0,
        ("A", H0 + 1): 1,
        ("B", H0): 2,
    }
    # C is observed 100 s, all of it inside an attack (with grace): no negative slice.
    spans = {"C": (T0 + 7200, T0 + 7300)}
    attack = scenario("c", "agent_silent", True, "C", 7150, 7250)
    assert negative_slices(spans, [attack], 60, 3600) == {}
    assert negative_slices(spans, [attack], 0, 3600) == {("C", H0 + 2): 0}


def test_scenario_metrics_match_the_hand_computation() -> None:
    result = evaluate_scenarios("x", SIGNALS, SCENARIOS, SPANS, grace_s=60, slice_s=3600)
    m = result.overall
    # Positives (attack instances): s1 = max(80, 40, 90) = 90, first alert at 700 → TTD
    # 700 − 600 = 100 s; s2 = 60, TTD 4350 − 4000 = 350 s; s3 = 20 (by event id), no alert.
    assert result.pos_scores == (90, 60, 20)
    # Negatives: (A, 0) = 55 (alert), (A, 1) = 30 (no alert), (B, 0) = 70 (alert).
    assert result.neg_scores == (55, 30, 70)
    assert (m.positives, m.negatives, m.detected, m.flagged_negatives) == (3, 3, 2, 2)
    assert m.recall == approx(2 / 3)
    assert m.precision == approx(2 / 4)  # 2 detected / (2 detected + 2 flagged slices)
    # Alerts: signals at 700, 4350, 100, 2100, 800 = 5; false: 100 and 2100 = 2.
    assert (m.alerts, m.false_alerts) == (5, 2)
    assert m.alert_precision == approx(3 / 5)
    assert m.hours == approx(3.0)
    assert m.false_alerts_per_1000h == approx(2 / 3 * 1000)  # 666.67
    # Ranking 90 P, 70 N, 60 P, 55 N, 30 N, 20 P: precision 1 at recall 1/3, 2/3 at 2/3,
    # 1/2 at 1 → AP = (1 + 2/3 + 1/2) / 3 = 13/18.
    assert m.average_precision == approx(13 / 18)
    assert m.ttd_s == (100, 350)
    assert m.ttd_median_s == approx(225)
    assert m.ttd_p90_s == approx(100 + 0.9 * 250)  # 325

    theft = result.groups["credential_theft"]
    # s1 = 90, s3 = 20 vs negatives 70, 55, 30: 90 P, 70 N, 55 N, 30 N, 20 P
    # → AP = 1/2 · 1 + 1/2 · 2/5 = 0.7; recall 1/2; precision 1 / (1 + 2).
    assert theft.average_precision == approx(0.7)
    assert theft.recall == approx(0.5)
    assert theft.precision == approx(1 / 3)
    assert theft.ttd_s == (100,)
    loop = result.groups["runaway_loop"]
    # s2 = 60 vs 70, 55, 30: 70 N, 60 P → AP = 1/2; precision 1 / (1 + 2).
    assert loop.average_precision == approx(0.5)
    assert (loop.recall, loop.precision, loop.ttd_s) == (1.0, approx(1 / 3), (350,))

    d1, d2 = result.detectors["d1"], result.detectors["d2"]
    # d1: s1 = 90 (first d1 alert at 700 → 100 s), s3 = 20 (the event-id match is a d1
    # signal), s2 = 0; negatives 55 (alert), 30, 70 (alert).
    # 90 P, 70 N, 55 N, 30 N, 20 P, 0 P: precision 1 at recall 1/3, 2/5 at 2/3, 3/6 at 1
    # → AP = 1/3 · (1 + 2/5 + 1/2) = 19/30.
    assert d1.average_precision == approx(19 / 30)
    assert (d1.alerts, d1.false_alerts, d1.detected, d1.flagged_negatives) == (4, 2, 1, 2)
    assert d1.precision == approx(1 / 3)
    assert d1.ttd_s == (100,)
    # d2: s1 = 90 (first d2 alert at 800 → 200 s), s2 = 60 (350 s), s3 = 0; negatives 0.
    # 90 P, 60 P, then 0 for s3 and 3 negatives → AP = 1/3 + 1/3 + 1/3 · 3/6 = 5/6.
    assert d2.average_precision == approx(5 / 6)
    assert (d2.alerts, d2.false_alerts, d2.precision, d2.recall) == (2, 0, 1.0, approx(2 / 3))
    assert d2.ttd_s == (200, 350)

    (deploy,) = result.hard_negatives.values()
    # One alert (B at 2100) inside b1, 10 minutes long: 1 / (1/6 h) · 1000 = 6000 per 1000 h.
    assert (deploy.scenario, deploy.instances, deploy.alerted, deploy.alerts) == (
        "version_deploy",
        1,
        1,
        1,
    )
    assert deploy.alerts_per_1000h == approx(6000)


def test_an_alert_matching_an_attack_by_event_id_is_true_whatever_its_agent() -> None:
    lateral = scenario("l", "lateral_movement", True, "A", 100, 200, "x1")
    other_agent = sig("B", 5000, 75, True, events=("x1",))
    result = evaluate_scenarios("x", [other_agent], [lateral], SPANS, grace_s=0)
    assert result.overall.false_alerts == 0
    assert result.overall.detected == 1
    assert result.overall.ttd_s == (4900,)


def test_a_window_ending_when_a_scenario_starts_does_not_match_it() -> None:
    silent = scenario("q", "agent_silent", True, "A", 3600, 4800)  # matched until 4860
    before = Signal("A", T0 + 3600, 80, ("rate",), True, start=T0 + 3540)  # (3540, 3600]
    first_silent = Signal("A", T0 + 3660, 70, ("rate",), True, start=T0 + 3600)
    point = Signal("A", T0 + 3600, 60, ("new_tool",), True)  # an event at the start
    late = Signal("A", T0 + 4861, 90, ("rate",), True, start=T0 + 4801)  # past end + grace
    result = evaluate_scenarios(
        "x", [before, first_silent, point, late], [silent], SPANS, grace_s=60, slice_s=3600
    )
    m = result.overall
    # Matched: the silent window ending at 3660 s (TTD 60 s) and the event at 3600 s (TTD 0);
    # the window ending at 3600 s and the one ending at 4861 s are false alerts.
    assert result.pos_scores == (70,)
    assert (m.detected, m.alerts, m.false_alerts) == (1, 4, 2)
    assert m.ttd_s == (0,)
    assert result.detectors["rate"].ttd_s == (60,)


SESSIONS = [
    SessionLabel("S1", "A", True),
    SessionLabel("S2", "A", False),
    SessionLabel("S3", "B", True),
    SessionLabel("S4", "B", False),
    SessionLabel("S5", "B", False),
]
STARTS = {"S1": T0, "S2": T0 + 100, "S3": T0 + 1000, "S4": T0 + 1200, "S5": T0 + 1500}
SESSION_SPANS = {"A": (T0, T0 + 3600), "B": (T0 + 1000, T0 + 2800)}  # 1.5 agent-hours
SESSION_SIGNALS = [
    sig("A", 50, 70, True, sessions=("S1",)),  # S1 detected at 50 s
    sig("A", 60, 40, False, ("d2",), sessions=("S1", "S2")),  # a window over S1 and S2
    sig("A", 150, 55, True, sessions=("S2",)),  # false alert, S2 flagged
    sig("B", 1300, 80, True, ("d2",), sessions=("S3", "S4")),  # true (covers S3); S4 flagged
    sig("B", 2000, 52, True, ("d2",)),  # a silent window: covers no session, false alert
    sig("B", 1600, 30, False, sessions=("S5",)),
]


def test_session_metrics_match_the_hand_computation() -> None:
    result = evaluate_sessions("x", SESSION_SIGNALS, SESSIONS, SESSION_SPANS, STARTS)
    m = result.overall
    # S1 = max(70, 40) = 70 (TTD 50 s), S3 = 80 (TTD 1300 − 1000 = 300 s);
    # S2 = max(40, 55) = 55 (flagged), S4 = 80 (flagged), S5 = 30.
    assert result.pos_scores == (70, 80)
    assert result.neg_scores == (55, 80, 30)
    assert (m.detected, m.flagged_negatives, m.recall) == (2, 2, 1.0)
    assert m.precision == approx(0.5)
    assert (m.alerts, m.false_alerts) == (4, 2)  # false: S2's alert and the silent window
    assert m.false_alerts_per_1000h == approx(2 / 1.5 * 1000)  # 1333.33
    # 80 P and 80 N tie (one threshold: precision 1/2 at recall 1/2), then 70 P (2/3 at 1)
    # → AP = 1/2 · 1/2 + 1/2 · 2/3 = 7/12.
    assert m.average_precision == approx(7 / 12)
    assert m.ttd_s == (50, 300)
    assert m.ttd_median_s == approx(175)
    # The same AP as the per-session helper the AgentDojo benchmark uses.
    legacy = legacy_evaluate_sessions(
        {"S1": 70, "S2": 55, "S3": 80, "S4": 80, "S5": 30},
        {label.session_id: label.positive for label in SESSIONS},
    )
    assert legacy.average_precision == approx(7 / 12)

    a, b = result.groups["A"], result.groups["B"]
    # A: S1 = 70 P vs S2 = 55 N → AP 1; alerts 2 (false 1) over 1 h.
    assert (a.average_precision, a.precision, a.recall, a.alerts, a.false_alerts) == (
        1.0,
        0.5,
        1.0,
        2,
        1,
    )
    assert a.false_alerts_per_1000h == approx(1000)
    assert a.ttd_s == (50,)
    # B: S3 = 80 P tied with S4 = 80 N, S5 = 30 N → AP 1/2; alerts 2 (false 1) over 0.5 h.
    assert (b.average_precision, b.precision, b.alerts, b.false_alerts) == (0.5, 0.5, 2, 1)
    assert b.false_alerts_per_1000h == approx(2000)
    assert b.ttd_s == (300,)


def test_no_positives_no_alerts_reports_not_available() -> None:
    result = evaluate_sessions("x", [], [SessionLabel("S", "A", False)], SESSION_SPANS, STARTS)
    m = result.overall
    assert (m.average_precision, m.recall, m.precision, m.alert_precision) == (
        None,
        None,
        None,
        None,
    )
    assert m.false_alerts_per_1000h == 0.0
    assert m.ttd_median_s is None
