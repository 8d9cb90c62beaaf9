"""The simulator's scenarios: each instance's ground truth matches what it emitted.

One run with every scenario (12 agents, 6 h) is checked record by record: listed events
exist, belong to the agent and lie within [start, end], and the scenario's signature is in
the data. A second, multi-day run checks that slow poisoning ramps up day after day.
"""

from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.schemas.decode import Limits, decode_message
from agentwatch.schemas.events import Destination, Event, encode_events
from agentwatch.sim import (
    ATTACKS,
    BENIGN,
    PROFILE_BY_GROUP,
    SCENARIOS,
    SimConfig,
    Simulation,
    TruthRecord,
    select,
)
from agentwatch.sim.scenarios.credential_theft import CROWN_JEWELS
from agentwatch.sim.scenarios.slow_poisoning import uses_in_period

SCENARIO_NAMES = {
    "prompt_injection_exfiltration",
    "credential_theft",
    "runaway_loop",
    "excessive_agency",
    "lateral_movement",
    "slow_poisoning",
    "agent_silent",
    "resource_abuse",
    "version_deploy",
    "new_shared_destination",
    "daily_peak",
}
BENIGN_NAMES = {"version_deploy", "new_shared_destination", "daily_peak"}


@dataclass
class Run:
    config: SimConfig
    events: list[Event]
    truth: list[TruthRecord]
    by_id: dict[str, Event] = field(init=False)
    position: dict[str, int] = field(init=False)
    per_agent: dict[str, list[Event]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {e.event_id: e for e in self.events}
        self.per_agent = defaultdict(list)
        self.position = {}
        for event in self.events:
            self.position[event.event_id] = len(self.per_agent[event.agent_id])
            self.per_agent[event.agent_id].append(event)

    def listed(self, record: TruthRecord) -> list[Event]:
        return [self.by_id[i] for i in record.event_ids]

    def before(self, record: TruthRecord) -> list[Event]:
        """The agent's events before the scenario's first event (or its start)."""
        agent_events = self.per_agent[record.agent_id]
        if record.event_ids:
            return agent_events[: self.position[record.event_ids[0]]]
        return [e for e in agent_events if e.ts < record.start]

    def used_before(self, record: TruthRecord) -> set[tuple[str, str]]:
        return {(d.kind, d.value) for e in self.before(record) for d in e.destinations or []}


def simulate(config: SimConfig) -> Run:
    sim = Simulation(config)
    events = list(sim)
    return Run(config, events, sim.truth())


@pytest.fixture(scope="module")
def run() -> Run:
    return simulate(SimConfig(agents=12, hours=6, seed=5, scenarios=select("all")))


@pytest.fixture(scope="module")
def days() -> Run:
    """Five days of four finance assistants with slow poisoning only."""
    config = SimConfig(
        agents=4,
        hours=5 * 24,
        seed=2,
        groups=("finance-assistant",),
        warmup_hours=12,
        scenarios={"slow_poisoning": 1},
    )
    return simulate(config)


# -- the registry ---------------------------------------------------------------------------------


def test_the_registry_holds_exactly_the_fixed_names() -> None:
    assert set(SCENARIOS) == SCENARIO_NAMES
    assert set(BENIGN) == BENIGN_NAMES
    assert set(ATTACKS) == SCENARIO_NAMES - BENIGN_NAMES
    for name, cls in SCENARIOS.items():
        assert cls.attack is (name not in BENIGN_NAMES)
        assert cls.summary
        module = Path(__file__).parents[2] / "src/agentwatch/sim/scenarios" / f"{name}.py"
        assert module.is_file(), f"one module per scenario: {module}"
        assert cls.__module__ == f"agentwatch.sim.scenarios.{name}"


def test_select_parses_names_groups_and_counts() -> None:
    assert select("all") == dict.fromkeys([*ATTACKS, *BENIGN], 1)
    assert select("none") == {}
    assert set(select("benign", count=2)) == BENIGN_NAMES
    assert select("attacks,credential_theft=0", 3)["runaway_loop"] == 3
    assert "credential_theft" not in select("attacks,credential_theft=0", 3)
    assert select(" credential_theft = 2 , agent_silent ") == {
        "credential_theft": 2,
        "agent_silent": 1,
    }
    with pytest.raises(ValueError, match="unknown scenario 'exfil'"):
        select("exfil")
    with pytest.raises(ValueError, match="bad count"):
        select("agent_silent=x")


# -- every record ---------------------------------------------------------------------------------


def test_every_scenario_happened_and_ids_follow_start_order(run: Run) -> None:
    assert {r.scenario for r in run.truth} == SCENARIO_NAMES
    ids = [r.scenario_id for r in run.truth]
    assert ids == [f"s{n:04d}" for n in range(1, len(ids) + 1)]
    starts = [r.start for r in run.truth]
    assert starts == sorted(starts)
    for scenario in ATTACKS:  # one placement each, benign ones one record per agent
        assert sum(r.scenario == scenario for r in run.truth) == 1


def test_listed_events_exist_belong_to_the_agent_and_lie_within_the_interval(run: Run) -> None:
    start, end = run.config.start, run.config.end
    for record in run.truth:
        assert record.attack is SCENARIOS[record.scenario].attack
        assert start <= record.start <= record.end < end
        assert record.start.tzinfo is not None
        assert record.description
        assert len(set(record.event_ids)) == len(record.event_ids)
        events = run.listed(record)  # KeyError: an id that is not in the output
        assert all(e.agent_id == record.agent_id for e in events), record.scenario
        assert all(e.agent_type == record.agent_type for e in events)
        assert all(record.start <= e.ts <= record.end for e in events), record.scenario
        sessions = list(dict.fromkeys(e.session_id for e in events if e.session_id))
        if record.scenario == "agent_silent":
            assert record.event_ids == []
            assert len(record.session_ids) <= 1
        else:
            assert record.event_ids, record.scenario
            assert record.session_ids == sessions, record.scenario


def test_hard_negatives_are_labelled_benign(run: Run) -> None:
    benign = [r for r in run.truth if r.scenario in BENIGN_NAMES]
    assert {r.scenario for r in benign} == BENIGN_NAMES
    assert all(r.attack is False for r in benign)
    assert all(r.attack is True for r in run.truth if r.scenario not in BENIGN_NAMES)
    assert all("benign" in r.description for r in benign)


def test_scenario_events_are_valid_and_the_stream_is_ordered(run: Run) -> None:
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(run.events))
    assert len(run.by_id) == len(run.events)
    limits = Limits(max_age_s=0)
    now = run.config.end
    for agent_id, events in run.per_agent.items():
        for i in range(0, len(events), 500):
            raw = encode_events(events[i : i + 500])
            result = decode_message(raw, key=agent_id.encode(), limits=limits, now=now)
            assert result.rejects == []
            assert len(result.events) == len(events[i : i + 500])


def test_sessions_are_well_formed_except_the_one_a_silence_dropped(run: Run) -> None:
    dropped = {s for r in run.truth if r.scenario == "agent_silent" for s in r.session_ids}
    for events in run.per_agent.values():
        current: str | None = None
        for event in events:
            if event.type == "session_start":
                assert current is None or current in dropped
                current = event.session_id
            elif event.type == "session_end":
                assert event.session_id == current
                current = None
            elif event.type != "metric":
                assert event.session_id == current is not None


# -- signatures -----------------------------------------------------------------------------------


def one(run: Run, scenario: str) -> TruthRecord:
    return next(r for r in run.truth if r.scenario == scenario)


def test_prompt_injection_exfiltration(run: Run) -> None:
    record = one(run, "prompt_injection_exfiltration")
    events = run.listed(record)
    profile = PROFILE_BY_GROUP[record.agent_type]
    assert events[0].type == "tool_call"
    assert events[0].tool_name in profile.untrusted_tools
    assert events[1].type == "llm_call"
    assert (events[1].tokens_in or 0) >= 6000
    assert all(e.type != "secret_access" for e in events)
    send = events[-1]
    assert send.type in ("tool_call", "network")
    assert send.status == "ok"
    assert (send.bytes_out or 0) >= 200
    assert send.destinations is not None
    assert len(send.destinations) == 1
    new = send.destinations[0]
    assert (new.kind, new.value) not in run.used_before(record)
    assert len(record.session_ids) == 1
    assert len({e.trace_id for e in events}) == 1
    assert new.value in record.description


def test_credential_theft(run: Run) -> None:
    record = one(run, "credential_theft")
    events = run.listed(record)
    secrets = [e for e in events if e.type == "secret_access"]
    assert secrets
    assert any(e.secret_name in CROWN_JEWELS for e in secrets)
    send = events[-1]
    assert send.type == "network"
    assert send.destinations is not None
    host = send.destinations[0]
    assert host.kind == "host"
    assert all(s.ts < send.ts for s in secrets)
    assert ("host", host.value) not in run.used_before(record)
    assert {e.session_id for e in events} == {send.session_id} != {None}
    # A never-used host: no other agent event before it names it either.
    agent_events = run.per_agent[record.agent_id]
    assert sum(host in (e.destinations or []) for e in agent_events) == 1


def test_runaway_loop(run: Run) -> None:
    record = one(run, "runaway_loop")
    events = run.listed(record)
    calls = [e for e in events if e.type == "tool_call"]
    llm = [e for e in events if e.type == "llm_call"]
    assert len(calls) >= 30
    assert len(llm) == len(calls)
    assert len({c.tool_name for c in calls}) == 1
    assert all(c.tool_args == calls[0].tool_args for c in calls)
    tokens = [e.tokens_in or 0 for e in llm]
    assert tokens == sorted(tokens)
    assert tokens[-1] > 5 * tokens[0]
    width = record.end - record.start
    ids = set(record.event_ids)
    others = [e for e in run.per_agent[record.agent_id] if e.event_id not in ids]
    # Far more calls and cost than the agent's busiest stretch of the same length.
    usual_calls = busiest([e.ts for e in others if e.type == "tool_call"], width)
    assert len(calls) > 2 * usual_calls, (len(calls), usual_calls)
    cost = sum(e.cost_usd or 0 for e in llm)
    usual_cost = busiest_sum(
        [(e.ts, e.cost_usd or 0) for e in others if e.type == "llm_call"], width
    )
    assert cost > 10 * usual_cost, (cost, usual_cost)
    assert sum((e.tokens_in or 0) for e in llm) > 1_000_000


def busiest(times: list[datetime], width: timedelta) -> int:
    """Most of ``times`` (sorted) within any interval of ``width``."""
    return int(busiest_sum([(t, 1.0) for t in times], width))


def busiest_sum(values: list[tuple[datetime, float]], width: timedelta) -> float:
    best = total = 0.0
    lo = 0
    for t, v in values:
        total += v
        while values[lo][0] < t - width:
            total -= values[lo][1]
            lo += 1
        best = max(best, total)
    return best


def test_excessive_agency(run: Run) -> None:
    record = one(run, "excessive_agency")
    calls = [e for e in run.listed(record) if e.type == "tool_call"]
    profile = PROFILE_BY_GROUP[record.agent_type]
    privileged = {t.name for t in profile.privileged_tools}
    assert len(calls) >= 2
    assert all(c.tool_name in privileged for c in calls)
    assert not privileged & set(profile.tool_names)
    ids = set(record.event_ids)
    outside = {e.tool_name for e in run.events if e.event_id not in ids and e.type == "tool_call"}
    assert not outside & privileged - {"send_email", "write_file"}  # names other groups use
    same_group = {
        e.tool_name
        for e in run.events
        if e.agent_type == record.agent_type and e.event_id not in ids and e.tool_name
    }
    assert not same_group & privileged


def test_lateral_movement(run: Run) -> None:
    record = one(run, "lateral_movement")
    events = run.listed(record)
    assert all(e.type == "network" for e in events)
    targets = {d for e in events for d in e.destinations or []}
    assert len(targets) >= 5
    for dest in targets:
        assert (dest.kind == "ip" and dest.value.startswith("10.")) or (
            dest.kind == "host" and dest.value.endswith(".internal")
        )
    assert not {(d.kind, d.value) for d in targets} & run.used_before(record)
    assert sum(e.status != "ok" for e in events) > len(events) / 3


def test_agent_silent(run: Run) -> None:
    record = one(run, "agent_silent")
    events = run.per_agent[record.agent_id]
    assert not [e for e in events if record.start <= e.ts <= record.end]
    assert any(e.ts < record.start for e in events)
    assert any(e.ts > record.end for e in events)
    assert record.end - record.start >= timedelta(minutes=5)
    after = next(e for e in events if e.ts > record.end and e.type != "metric")
    assert after.type == "session_start"


def test_resource_abuse(run: Run) -> None:
    record = one(run, "resource_abuse")
    events = run.listed(record)
    inside = [
        e
        for e in run.per_agent[record.agent_id]
        if e.type == "metric" and record.start <= e.ts <= record.end
    ]
    assert events == inside
    assert len(events) >= 3
    outside = [
        e.metrics
        for e in run.per_agent[record.agent_id]
        if e.type == "metric" and not record.start <= e.ts <= record.end and e.metrics
    ]
    usual_memory = statistics.median(m["memory_mb"] for m in outside)
    usual_threads = statistics.median(m["threads"] for m in outside)
    for event in events:
        assert event.metrics is not None
        assert event.metrics["cpu_pct"] >= 85
        assert event.metrics["memory_mb"] > usual_memory + 300
        assert event.metrics["threads"] > 2 * usual_threads
    memory = [e.metrics["memory_mb"] for e in events if e.metrics]
    assert memory[-1] > memory[0]


def test_version_deploy(run: Run) -> None:
    records = [r for r in run.truth if r.scenario == "version_deploy"]
    group = {r.agent_type for r in records}
    assert len(group) == 1
    agents = {a for a, es in run.per_agent.items() if es[0].agent_type in group}
    assert {r.agent_id for r in records} == agents  # the whole group, one record each
    versions = set()
    for record in records:
        events = run.listed(record)
        window = [e for e in run.per_agent[record.agent_id] if record.start <= e.ts <= record.end]
        assert events == window
        new = {e.agent_version for e in events}
        assert len(new) == 1
        versions |= new
        old = {e.agent_version for e in run.before(record)}
        assert not new & old
        assert record.attack is False
    assert len(versions) == 1
    version = versions.pop()
    assert version in records[0].description
    assert version not in PROFILE_BY_GROUP[group.pop()].versions


def test_new_shared_destination(run: Run) -> None:
    records = [r for r in run.truth if r.scenario == "new_shared_destination"]
    assert len(records) >= 2
    assert len({r.agent_type for r in records}) == 1
    rollout = max(r.start for r in records) - min(r.start for r in records)
    assert rollout <= timedelta(minutes=15)
    shared: set[Destination] | None = None
    for record in records:
        uses = {
            d for e in run.listed(record) if e.type == "tool_call" for d in e.destinations or []
        }
        shared = uses if shared is None else shared & uses
    assert shared is not None
    assert len(shared) == 1
    dest = shared.pop()
    assert dest.value in records[0].description
    assert not [
        e
        for e in run.events
        if dest in (e.destinations or []) and e.ts < min(r.start for r in records)
    ]
    for record in records:
        listed = set(record.event_ids)
        in_window = [
            e
            for e in run.per_agent[record.agent_id]
            if dest in (e.destinations or []) and record.start <= e.ts <= record.end
        ]
        assert in_window
        assert {e.event_id for e in in_window} <= listed


def test_daily_peak(run: Run) -> None:
    records = [r for r in run.truth if r.scenario == "daily_peak"]
    assert len({r.agent_type for r in records}) == 1
    inside = outside = 0
    inside_min = outside_min = 0.0
    for record in records:
        window = [
            e
            for e in run.per_agent[record.agent_id]
            if record.start <= e.ts <= record.end and e.type != "metric"
        ]
        assert run.listed(record) == window
        total = sum(e.type != "metric" for e in run.per_agent[record.agent_id])
        minutes = (record.end - record.start).total_seconds() / 60
        inside += len(window)
        inside_min += minutes
        outside += total - len(window)
        outside_min += (run.config.end - run.config.start).total_seconds() / 60 - minutes
    assert inside / inside_min > 1.5 * outside / outside_min


def test_slow_poisoning_within_one_run(run: Run) -> None:
    record = one(run, "slow_poisoning")
    check_poisoning(run, record, periods=4)


def test_slow_poisoning_rises_day_by_day(days: Run) -> None:
    record = one(days, "slow_poisoning")
    assert "successive days" in record.description
    counts = check_poisoning(days, record, periods=4)
    assert counts == [1, 2, 4, 7]


def check_poisoning(run: Run, record: TruthRecord, periods: int) -> list[int]:
    events = run.listed(record)
    calls = [e for e in events if e.type == "tool_call"]
    new = {d for e in calls for d in e.destinations or []}
    assert len(new) == 1
    dest = new.pop()
    assert (dest.kind, dest.value) not in run.used_before(record)
    every_use = [e for e in run.per_agent[record.agent_id] if dest in (e.destinations or [])]
    assert every_use == calls
    begin = run.config.start + run.config.warmup
    length = (run.config.end - begin) / periods
    if length >= timedelta(days=1):
        length = timedelta(days=1)
    counts = [0] * periods
    for call in calls:
        counts[int((call.ts - begin) / length)] += 1
    assert counts == [uses_in_period(k) for k in range(periods)]
    assert all(a < b for a, b in itertools.pairwise(counts))
    return counts


# -- placement ------------------------------------------------------------------------------------


def test_scenarios_wait_for_the_warmup_and_do_not_overlap(run: Run) -> None:
    warm = run.config.start + run.config.warmup
    by_agent: dict[str, list[TruthRecord]] = defaultdict(list)
    for record in run.truth:
        assert record.start >= warm
        by_agent[record.agent_id].append(record)
    for records in by_agent.values():
        for a, b in itertools.pairwise(sorted(records, key=lambda r: r.start)):
            assert a.end < b.start, (a.scenario, b.scenario)


def test_counts_place_several_instances_on_different_agents_and_times() -> None:
    config = SimConfig(
        agents=16, hours=8, seed=9, scenarios={"credential_theft": 3, "lateral_movement": 2}
    )
    sim = Simulation(config)
    list(sim)
    truth = sim.truth()
    assert Counter(r.scenario for r in truth) == {"credential_theft": 3, "lateral_movement": 2}
    assert len({(r.agent_id, r.start) for r in truth}) == 5
    assert sim.skipped == []


def test_no_scenarios_means_no_truth_and_a_short_run_skips_what_does_not_fit() -> None:
    quiet = Simulation(SimConfig(agents=4, hours=1, seed=1))
    assert list(quiet)
    assert quiet.truth() == []
    crowded = Simulation(SimConfig(agents=2, hours=0.5, seed=1, scenarios=select("attacks", 3)))
    list(crowded)
    assert crowded.skipped  # two agents cannot hold 24 non-overlapping attacks
    placed = Counter(r.scenario for r in crowded.truth())
    assert sum(placed.values()) + len(crowded.skipped) <= 24
    assert all(len(r.event_ids) > 0 for r in crowded.truth() if r.scenario != "agent_silent")


def test_truth_of_a_partial_run_covers_only_what_was_emitted() -> None:
    config = SimConfig(agents=12, hours=6, seed=5, scenarios=select("all"))
    sim = Simulation(config)
    events = sim.events_until(config.start + timedelta(hours=3))
    ids = {e.event_id for e in events}
    partial = sim.truth()
    assert partial
    assert len(partial) < len(simulate(config).truth)
    for record in partial:
        assert set(record.event_ids) <= ids
        assert record.end <= sim.last_t
