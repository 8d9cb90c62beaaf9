"""Unit tests of the simulated fleet (:mod:`agentwatch.sim`)."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from agentwatch.schemas.decode import Limits, decode_message
from agentwatch.schemas.events import Destination, Event, encode_event, encode_events
from agentwatch.sim import PROFILE_BY_GROUP, PROFILES, Fleet, InjectedAttack
from agentwatch.sim.fleet import random_destination
from agentwatch.sim.profiles import (
    CODING_AGENT,
    FINANCE_ASSISTANT,
    DestinationPool,
    LogNormal,
    ToolSpec,
)

START = datetime(2026, 11, 24, 9, 0, 0, 250_000, tzinfo=UTC)
HOURS = 2
WARMUP = 20  # events an agent sends before first-seen destinations count (detector default)
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def run(fleet: Fleet, seconds: float, step: float = 1.0) -> list[Event]:
    out: list[Event] = []
    for _ in range(round(seconds / step)):
        out.extend(fleet.advance(step))
    return out


def by_agent(events: list[Event]) -> dict[str, list[Event]]:
    grouped: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        grouped[event.agent_id].append(event)
    return grouped


def key(destination: Destination) -> tuple[str, str]:
    """Canonical destination: URLs by origin, the rest case-insensitively."""
    if destination.kind == "url":
        parts = urlsplit(destination.value)
        return "url", f"{parts.scheme}://{(parts.hostname or '').lower()}"
    return destination.kind, destination.value.strip().lower()


def attack_ids(fleet: Fleet) -> set[str]:
    return {event_id for attack in fleet.injected for event_id in attack.event_ids}


@pytest.fixture(scope="module")
def sim() -> tuple[Fleet, list[Event]]:
    fleet = Fleet(16, seed=11, start=START)
    return fleet, run(fleet, HOURS * 3600, step=7.5)


# -- determinism ----------------------------------------------------------------------------------


def encoded(events: list[Event]) -> list[bytes]:
    return [encode_event(e) for e in events]


def test_same_seed_gives_identical_events() -> None:
    a = Fleet(12, seed=5, start=START)
    b = Fleet(12, seed=5, start=START)
    first, second = run(a, 900), run(b, 900)
    assert len(first) > 1000
    assert encoded(first) == encoded(second)
    assert a.injected == b.injected


def test_different_seed_gives_different_events() -> None:
    first = run(Fleet(12, seed=5, start=START), 300)
    second = run(Fleet(12, seed=6, start=START), 300)
    assert {e.event_id for e in first}.isdisjoint({e.event_id for e in second})
    assert [(e.agent_id, e.type, e.tool_name) for e in first] != [
        (e.agent_id, e.type, e.tool_name) for e in second
    ]


def test_output_does_not_depend_on_how_calls_are_spaced() -> None:
    one_call = Fleet(10, seed=3, start=START)
    whole = one_call.events_until(START + timedelta(minutes=10))
    real_time = Fleet(10, seed=3, start=START)
    stepped = run(real_time, 600, step=0.1)
    jittered = Fleet(10, seed=3, start=START)
    rng = random.Random(0)
    pieces: list[Event] = []
    t = START
    while t < START + timedelta(minutes=10):
        t = min(t + timedelta(milliseconds=rng.randint(1, 20_000)), START + timedelta(minutes=10))
        pieces.extend(jittered.events_until(t))
    assert encoded(whole) == encoded(stepped) == encoded(pieces)
    assert one_call.injected == real_time.injected == jittered.injected
    assert len(one_call.injected) >= 5


def test_determinism_holds_across_processes() -> None:
    code = (
        "import hashlib; from datetime import datetime, timedelta, UTC;"
        "from agentwatch.sim import Fleet;"
        "from agentwatch.schemas.events import encode_events;"
        "s = datetime(2026, 11, 24, 9, tzinfo=UTC); f = Fleet(6, seed=9, start=s);"
        "print(hashlib.sha256(encode_events(f.events_until(s + timedelta(minutes=3))))"
        ".hexdigest())"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        digests.add(out.stdout.strip())
    fleet = Fleet(6, seed=9, start=START.replace(microsecond=0))
    here = encode_events(fleet.events_until(START.replace(microsecond=0) + timedelta(minutes=3)))
    digests.add(hashlib.sha256(here).hexdigest())
    assert len(digests) == 1


# -- time semantics -------------------------------------------------------------------------------


def test_events_are_in_time_order_within_the_half_open_interval() -> None:
    fleet = Fleet(20, seed=2, start=START)
    assert fleet.last_t == START
    previous = START
    rng = random.Random(1)
    total = 0
    for _ in range(300):
        t = previous + timedelta(microseconds=rng.randint(1, 4_000_000))
        events = fleet.events_until(t)
        assert all(previous < e.ts <= t for e in events)
        assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))
        assert fleet.last_t == t
        previous = t
        total += len(events)
    assert total > 500
    assert fleet.events_until(previous) == []
    assert fleet.events_until(previous - timedelta(seconds=5)) == []
    assert fleet.last_t == previous
    assert fleet.emitted == total


def test_timestamps_are_utc_with_millisecond_precision(sim: tuple[Fleet, list[Event]]) -> None:
    _, events = sim
    assert all(e.ts.tzinfo is UTC and e.ts.microsecond % 1000 == 0 for e in events)


def test_naive_datetimes_are_refused() -> None:
    fleet = Fleet(2, seed=1, start=START)
    with pytest.raises(ValueError, match="timezone-aware"):
        fleet.events_until(datetime(2026, 11, 24, 10, 0))


def test_default_start_is_now() -> None:
    before = datetime.now(UTC)
    fleet = Fleet(2, seed=1)
    assert before <= fleet.last_t <= datetime.now(UTC)
    assert fleet.events_until(fleet.last_t + timedelta(seconds=60))


@pytest.mark.parametrize(
    "kwargs",
    [{"n_agents": 0}, {"attack_every_s": -1.0}, {"baseline_events": -1}, {"profiles": ()}],
)
def test_bad_arguments_are_refused(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"n_agents": 4, "seed": 1, "start": START, **kwargs}
    with pytest.raises(ValueError, match=r"n_agents|must be|profile"):
        Fleet(**args)


# -- validity and identity ------------------------------------------------------------------------


def test_every_event_passes_the_decoder(sim: tuple[Fleet, list[Event]]) -> None:
    _, events = sim
    now = START + timedelta(hours=HOURS)
    limits = Limits(max_age_s=7 * 24 * 3600)
    for event in events:
        raw = encode_event(event)
        result = decode_message(raw, key=event.agent_id.encode(), limits=limits, now=now)
        assert result.rejects == [], (result.rejects, raw)
        assert result.events == [event]
    for agent_id, agent_events in by_agent(events).items():  # as per-agent batches
        for i in range(0, len(agent_events), 200):
            raw = encode_events(agent_events[i : i + 200])
            result = decode_message(raw, key=agent_id.encode(), limits=Limits(), now=now)
            assert result.rejects == []
            assert result.events == agent_events[i : i + 200]


def test_ids_agents_and_versions(sim: tuple[Fleet, list[Event]]) -> None:
    fleet, events = sim
    ids = [e.event_id for e in events]
    assert len(set(ids)) == len(ids)
    assert all(UUID4.match(i) for i in ids)
    assert all(UUID4.match(e.session_id) for e in events if e.session_id is not None)
    assert len(fleet.agents) == 16
    assert {a.agent_type for a in fleet.agents} == {p.group for p in PROFILES}
    for spec in fleet.agents:
        assert re.fullmatch(rf"{spec.agent_type}-\d\d", spec.agent_id)
        assert spec.agent_version in spec.profile.versions
        assert re.fullmatch(r"\d+\.\d+\.\d+", spec.agent_version)
    assert [a.agent_id for a in fleet.agents[:4]] == [f"{p.group}-01" for p in PROFILES]
    for event in events:
        spec = fleet.agent(event.agent_id)
        assert (event.agent_type, event.agent_version) == (spec.agent_type, spec.agent_version)
    assert {e.type for e in events} >= {
        "session_start",
        "session_end",
        "tool_call",
        "llm_call",
        "secret_access",
        "metric",
    }


def test_sessions_are_well_formed(sim: tuple[Fleet, list[Event]]) -> None:
    _, events = sim
    for agent_events in by_agent(events).values():
        current: str | None = None
        for event in agent_events:
            if event.type == "session_start":
                assert current is None
                current = event.session_id
            elif event.type == "session_end":
                assert event.session_id == current
                current = None
            elif event.type == "metric":
                assert event.session_id is None
            else:
                assert event.session_id == current is not None


def test_llm_calls_carry_tokens_and_cost(sim: tuple[Fleet, list[Event]]) -> None:
    fleet, events = sim
    llm = [e for e in events if e.type == "llm_call"]
    assert len(llm) > 1000
    for event in llm:
        profile = fleet.agent(event.agent_id).profile
        model = next(m for m in profile.models if m.name == event.model)
        assert event.tokens_in is not None
        assert event.tokens_out is not None
        expected = (
            event.tokens_in * model.usd_per_1k_in + event.tokens_out * model.usd_per_1k_out
        ) / 1000
        assert event.cost_usd == pytest.approx(expected, abs=1e-6)
        assert event.destinations == [Destination(kind="host", value=model.host)]


# -- benign behaviour stays within the profile ----------------------------------------------------


def test_benign_events_stay_within_the_profile(sim: tuple[Fleet, list[Event]]) -> None:
    fleet, events = sim
    attacks = attack_ids(fleet)
    tools_used: dict[str, set[str]] = defaultdict(set)
    for event in events:
        if event.event_id in attacks:
            continue
        spec = fleet.agent(event.agent_id)
        profile = spec.profile
        if event.type == "tool_call":
            assert event.tool_name in profile.tool_names
            tools_used[profile.group].add(event.tool_name or "")
            tool = next(t for t in profile.tools if t.name == event.tool_name)
            if tool.pool is None:
                assert event.destinations is None
            else:
                assert event.destinations is not None
                assert all(d.value in spec.destinations[tool.pool] for d in event.destinations)
        else:
            assert event.tool_name is None
        assert event.type != "network"
        if event.type == "secret_access":
            assert event.secret_name in profile.secrets
        for d in event.destinations or []:
            assert (d.kind, d.value) in spec.usual_destinations()
    # Over two hours every group uses its whole tool set.
    assert tools_used == {p.group: set(p.tool_names) for p in PROFILES}


def test_usual_destinations_are_shared_by_the_group_plus_a_few_per_agent(
    sim: tuple[Fleet, list[Event]],
) -> None:
    fleet, _ = sim
    for profile in PROFILES:
        specs = [a for a in fleet.agents if a.agent_type == profile.group]
        assert len(specs) == 4
        for pool_name, pool in profile.pools.items():
            sets = [set(a.destinations[pool_name]) for a in specs]
            common = set.intersection(*sets)
            assert len(common) >= len(pool.shared)
            assert {v for v in pool.shared if "{" not in v} <= common
            assert all(len(s) == len(pool.shared) + pool.per_agent for s in sets)
            if pool.per_agent:
                assert len(set.union(*sets)) > len(common)
        for spec in specs:
            assert len(spec.usual_destinations()) <= 14


def test_secrets_are_read_before_the_tools_that_need_them(
    sim: tuple[Fleet, list[Event]],
) -> None:
    fleet, events = sim
    attacks = attack_ids(fleet)
    checked = 0
    for agent_events in by_agent(events).values():
        for i, event in enumerate(agent_events):
            if event.type != "secret_access" or event.event_id in attacks:
                continue
            after = next(e for e in agent_events[i + 1 :] if e.type != "metric" and e.trace_id)
            assert after.trace_id == event.trace_id
            assert after.type == "tool_call"
            tool = next(
                t for t in fleet.agent(event.agent_id).profile.tools if t.name == after.tool_name
            )
            assert tool.secret == event.secret_name
            checked += 1
    assert checked > 100


def test_no_benign_first_seen_destination_after_the_warmup(
    sim: tuple[Fleet, list[Event]],
) -> None:
    """Every usual destination is used within an agent's first 20 events, so the only
    destinations first seen later are the injected ones."""
    fleet, events = sim
    flagged: set[str] = set()
    for agent_events in by_agent(events).values():
        seen: set[tuple[str, str]] = set()
        for i, event in enumerate(agent_events):
            new = {key(d) for d in event.destinations or []} - seen
            if not new:
                continue
            if i >= WARMUP:
                flagged.add(event.event_id)
            else:
                seen |= new
    assert flagged == {attack.event_ids[-1] for attack in fleet.injected}


# -- injected attacks -----------------------------------------------------------------------------


def test_injected_exfiltrations_go_to_never_used_destinations(
    sim: tuple[Fleet, list[Event]],
) -> None:
    fleet, events = sim
    index = {e.event_id: i for i, e in enumerate(events)}
    per_agent = by_agent(events)
    # Every ~60 s of event time across the fleet, the first after ~30 s.
    assert 0.7 * HOURS * 60 <= len(fleet.injected) <= 1.3 * HOURS * 60
    assert fleet.injected[0].start >= START + timedelta(seconds=30)
    assert fleet.injected[0].start <= START + timedelta(seconds=90)
    assert [a.start for a in fleet.injected] == sorted(a.start for a in fleet.injected)
    assert len({a.agent_id for a in fleet.injected}) >= 8
    channels: set[str] = set()
    for attack in fleet.injected:
        assert isinstance(attack, InjectedAttack)
        assert attack.kind == "exfiltration"
        secret, send = (events[index[i]] for i in attack.event_ids)
        assert secret.ts == attack.start
        assert secret.type == "secret_access"
        assert secret.secret_name is not None
        assert secret.agent_id == send.agent_id == attack.agent_id
        assert secret.session_id == send.session_id == attack.session_id is not None
        assert secret.trace_id == send.trace_id
        assert send.ts > secret.ts
        assert send.destinations == [attack.destination]
        profile = PROFILE_BY_GROUP[attack.agent_type]
        assert secret.secret_name in profile.secrets
        if send.type == "tool_call":
            assert send.tool_name == attack.channel
            assert send.tool_name in profile.tool_names
        else:
            assert (send.type, attack.channel) == ("network", "network")
        if attack.destination.kind != "account":
            assert (send.bytes_out or 0) >= 100_000
        channels.add(f"{attack.agent_type}:{attack.channel}")
        # Only once the agent has a baseline, and never to a destination it used before.
        agent_events = per_agent[attack.agent_id]
        position = agent_events.index(secret)
        assert position >= fleet.baseline_events
        before = {key(d) for e in agent_events[:position] for d in e.destinations or []}
        assert key(attack.destination) not in before
        spec = fleet.agent(attack.agent_id)
        assert (attack.destination.kind, attack.destination.value) not in (
            spec.usual_destinations()
        )
    assert len(channels) >= 6


def test_attack_rate_and_first_attack_are_configurable() -> None:
    fleet = Fleet(16, seed=4, start=START, attack_every_s=20.0, first_attack_s=120.0)
    events = run(fleet, 1800)
    assert fleet.injected[0].start >= START + timedelta(seconds=120)
    assert 0.7 * 1680 / 20 <= len(fleet.injected) <= 1.3 * 1800 / 20
    assert len(attack_ids(fleet) & {e.event_id for e in events}) == 2 * len(fleet.injected)


def test_attacks_can_be_disabled() -> None:
    fleet = Fleet(16, seed=4, start=START, attack_every_s=0)
    events = run(fleet, 1800)
    assert fleet.injected == []
    assert all(e.type != "network" for e in events)


def test_attacks_wait_for_a_baseline() -> None:
    fleet = Fleet(4, seed=4, start=START, first_attack_s=0, baseline_events=60)
    events = run(fleet, 1800)
    assert fleet.injected
    per_agent = by_agent(events)
    for attack in fleet.injected:
        ids = [e.event_id for e in per_agent[attack.agent_id]]
        assert ids.index(attack.event_ids[0]) >= 60


def test_an_attack_is_recorded_when_its_first_event_is_returned() -> None:
    fleet = Fleet(8, seed=21, start=START)
    returned: set[str] = set()
    for _ in range(6000):
        returned |= {e.event_id for e in fleet.advance(0.1)}
        for attack in fleet.injected:
            assert attack.event_ids[0] in returned


def test_random_destinations_are_fresh() -> None:
    rng = random.Random(0)
    for kind in ("host", "ip", "url", "email", "account", "user", "path"):
        values = {random_destination(rng, kind) for _ in range(500)}
        assert len(values) >= 495
        Destination(kind=kind, value=next(iter(values)))
    iban = random_destination(rng, "account")
    digits = iban[4:] + "".join(str(ord(c) - 55) for c in iban[:2]) + iban[2:4]
    assert int(digits) % 97 == 1


# -- rates ----------------------------------------------------------------------------------------


def test_in_session_event_rate_follows_the_profile(sim: tuple[Fleet, list[Event]]) -> None:
    fleet, events = sim
    observed: dict[str, float] = defaultdict(float)
    expected: dict[str, float] = defaultdict(float)
    for agent_id, agent_events in by_agent(events).items():
        spec = fleet.agent(agent_id)
        profile = spec.profile
        sessions = 0
        opened: datetime | None = None
        count = 0
        for event in agent_events:
            if event.type == "session_start":
                opened, count = event.ts, 0
            elif event.type == "session_end" and opened is not None:
                sessions += 1
                if sessions > 1:  # the first session opens with a quick burst
                    minutes = (event.ts - opened).total_seconds() / 60
                    hour = (opened.hour + spec.utc_offset_h) % 24
                    observed[profile.group] += count
                    expected[profile.group] += (
                        minutes * profile.events_per_minute * profile.daily_curve[hour]
                    )
                opened = None
            elif opened is not None and event.type != "metric":
                count += 1
    for profile in PROFILES:
        ratio = observed[profile.group] / expected[profile.group]
        assert 0.75 <= ratio <= 1.25, (profile.group, ratio)


def test_rate_follows_the_daily_curve() -> None:
    day = datetime(2026, 11, 24, tzinfo=UTC)
    fleet = Fleet(8, seed=8, start=day, profiles=(FINANCE_ASSISTANT,), attack_every_s=0)
    events = run(fleet, 24 * 3600, step=60)
    per_hour = [0] * 24
    for event in events:
        if event.type != "metric":
            per_hour[(event.ts.hour + fleet.agent(event.agent_id).utc_offset_h) % 24] += 1
    night = sum(per_hour[1:5])
    day_time = sum(per_hour[9:12] + per_hour[13:17]) * 4 / 7
    assert night / day_time < 0.5


def test_metrics_every_30_seconds(sim: tuple[Fleet, list[Event]]) -> None:
    _, events = sim
    for agent_events in by_agent(events).values():
        metrics = [e for e in agent_events if e.type == "metric"]
        gaps = [(b.ts - a.ts).total_seconds() for a, b in itertools.pairwise(metrics)]
        assert all(28 <= g <= 32 for g in gaps)
        assert len(metrics) >= HOURS * 3600 / 32
        for m in metrics:
            assert m.metrics is not None
            assert set(m.metrics) == {"cpu_pct", "memory_mb"}
            assert 0 <= m.metrics["cpu_pct"] <= 100
            assert m.metrics["memory_mb"] > 0


def test_error_rates_follow_the_profile(sim: tuple[Fleet, list[Event]]) -> None:
    fleet, events = sim
    attacks = attack_ids(fleet)
    for profile in PROFILES:
        calls = [
            e
            for e in events
            if e.type == "tool_call" and e.agent_type == profile.group and e.event_id not in attacks
        ]
        rates = {t.name: t.error_rate for t in profile.tools}
        expected = sum(rates[e.tool_name or ""] for e in calls)
        errors = sum(e.status == "error" for e in calls)
        assert 0.6 * expected - 5 <= errors <= 1.4 * expected + 5, (profile.group, errors)
        for event in calls:
            if event.status != "ok":
                assert event.attributes is not None
                assert "error.type" in event.attributes


def test_tool_mix_follows_weights_and_transitions(sim: tuple[Fleet, list[Event]]) -> None:
    fleet, events = sim
    attacks = attack_ids(fleet)
    for agent_events in by_agent(events).values():
        calls = [
            e.tool_name for e in agent_events if e.type == "tool_call" and e.event_id not in attacks
        ]
        profile = fleet.agent(agent_events[0].agent_id).profile
        pairs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for a, b in itertools.pairwise(calls[30:]):
            pairs[a or ""][b or ""] += 1
        for source, row in profile.transitions.items():
            if sum(pairs[source].values()) < 40:
                continue
            favourite = max(row, key=lambda name: row[name])
            least = min(
                profile.tool_names,
                key=lambda n: (
                    row.get(n, 0) + 0.01 * (next(t.weight for t in profile.tools if t.name == n))
                ),
            )
            assert pairs[source][favourite] > pairs[source][least]


# -- profiles as data -----------------------------------------------------------------------------


def test_profiles_validate_their_data() -> None:
    tool = CODING_AGENT.tools[0]
    with pytest.raises(ValueError, match="unknown tools"):
        replace(CODING_AGENT, transitions={"read_file": {"rm_rf": 1.0}})
    with pytest.raises(ValueError, match="daily_curve"):
        replace(CODING_AGENT, daily_curve=(1.0,) * 23)
    with pytest.raises(ValueError, match="duplicate"):
        replace(CODING_AGENT, tools=(tool, tool))
    bad_tool = ToolSpec("x", 1.0, LogNormal(1), LogNormal(1), LogNormal(1), pool="nope")
    with pytest.raises(ValueError, match="unknown pool"):
        replace(CODING_AGENT, tools=(*CODING_AGENT.tools, bad_tool))
    with pytest.raises(ValueError, match="unknown tool"):
        replace(CODING_AGENT, exfil=(replace(CODING_AGENT.exfil[0], tool="teleport"),))
    with pytest.raises(ValueError, match="unknown field"):
        replace(
            CODING_AGENT,
            tools=(replace(tool, args=(("path", "{no_such_word}"),)), *CODING_AGENT.tools[1:]),
        )
    with pytest.raises(ValueError, match=r"unknown field \{dest\}"):
        replace(
            CODING_AGENT, tools=(replace(tool, args=(("path", "{dest}"),)), *CODING_AGENT.tools[1:])
        )
    with pytest.raises(ValueError, match="bad weight"):
        replace(CODING_AGENT, tools=(replace(tool, error_rate=1.5), *CODING_AGENT.tools[1:]))
    with pytest.raises(ValueError, match="template"):
        DestinationPool("host", per_agent=2)
    with pytest.raises(ValueError, match="median"):
        LogNormal(0)


def test_a_custom_profile_runs() -> None:
    tiny = replace(
        CODING_AGENT,
        group="tiny-agent",
        tools=CODING_AGENT.tools[:2],
        transitions={},
        exfil=CODING_AGENT.exfil[1:],
        untrusted_tools=("read_file",),
        sensitive_tools=(),
        privileged_tools=CODING_AGENT.privileged_tools[:1],
        rollout_destinations={},
    )
    fleet = Fleet(3, seed=1, start=START, profiles=(tiny,))
    events = run(fleet, 600)
    assert [a.agent_id for a in fleet.agents] == ["tiny-agent-01", "tiny-agent-02", "tiny-agent-03"]
    assert {e.tool_name for e in events if e.type == "tool_call"} == {"read_file", "write_file"}
    assert all(e.destinations is None for e in events if e.type == "tool_call")


def test_lognormal_median_and_cap() -> None:
    rng = random.Random(1)
    dist = LogNormal(100, 0.5, cap=300)
    samples = sorted(dist.sample(rng) for _ in range(4001))
    assert samples[2000] == pytest.approx(100, rel=0.1)
    assert samples[-1] == 300


# -- speed ----------------------------------------------------------------------------------------


def test_generation_is_fast() -> None:
    fleet = Fleet(400, seed=1, start=START)
    fleet.advance(60)  # past the opening burst
    began = time.perf_counter()
    total = sum(len(fleet.advance(1.0)) for _ in range(900))
    rate = total / (time.perf_counter() - began)
    assert total > 50_000
    # ~120k events/s on a developer laptop; the bound leaves room for a loaded CI machine.
    assert rate >= 30_000, f"{rate:,.0f} events/s"
