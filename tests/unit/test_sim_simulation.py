"""The scenario simulation as a whole: determinism, pacing, files, configuration, speed."""

from __future__ import annotations

import gzip
import itertools
import json
import random
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agentwatch.schemas.events import encode_event
from agentwatch.sim import (
    DEFAULT_START,
    PROFILES,
    Fleet,
    SimConfig,
    Simulation,
    generate,
    read_truth,
    select,
    truth_path,
    write_truth,
)
from agentwatch.sim.output import JsonlSink, drive, parse_speed

CONFIG = SimConfig(agents=10, hours=2, seed=7, scenarios=select("all"))


def write_run(config: SimConfig, out: Path, speed: float | None = None) -> tuple[bytes, bytes]:
    sim = Simulation(config)
    sink = JsonlSink(out)
    drive(sim, [sink], speed=speed)
    sink.close()
    truth = truth_path(out)
    write_truth(truth, sim.truth())
    return out.read_bytes(), truth.read_bytes()


# -- determinism ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_same_seed_and_options_give_byte_identical_files(tmp_path: Path, name: str) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_run(CONFIG, tmp_path / "a" / name)
    second = write_run(CONFIG, tmp_path / "b" / name)
    assert first == second
    data, truth = first
    assert len(data) > 100_000
    assert truth.count(b"\n") >= 11


def test_a_different_seed_gives_different_output() -> None:
    a_events, a_truth = generate(CONFIG)
    b_events, b_truth = generate(replace(CONFIG, seed=8))
    assert {e.event_id for e in a_events}.isdisjoint({e.event_id for e in b_events})
    assert [(e.agent_id, e.type) for e in a_events] != [(e.agent_id, e.type) for e in b_events]
    assert [(r.scenario, r.agent_id, r.start) for r in a_truth] != [
        (r.scenario, r.agent_id, r.start) for r in b_truth
    ]


def test_other_options_change_the_output_and_the_fleet_matches_the_demo_fleet() -> None:
    quiet, _ = generate(SimConfig(agents=10, hours=2, seed=7))
    busy, _ = generate(CONFIG)
    assert len(busy) > len(quiet)
    # Without scenarios, agents are the demo fleet's agents: same ids, versions, zones.
    fleet = Fleet(10, seed=7, start=DEFAULT_START, attack_every_s=0)
    sim = Simulation(SimConfig(agents=10, hours=2, seed=7))
    assert [(s.agent_id, s.agent_version, s.utc_offset_h, s.destinations) for s in sim.specs] == [
        (s.agent_id, s.agent_version, s.utc_offset_h, s.destinations) for s in fleet.agents
    ]


def test_output_does_not_depend_on_how_the_run_is_paced(tmp_path: Path) -> None:
    whole = [encode_event(e) for e in Simulation(CONFIG)]
    stepped = Simulation(CONFIG)
    rng = random.Random(1)
    pieces: list[bytes] = []
    t = CONFIG.start
    while not stepped.done:
        t += timedelta(milliseconds=rng.randint(1, 400_000))
        pieces.extend(encode_event(e) for e in stepped.events_until(t))
    assert pieces == whole
    full = Simulation(CONFIG)
    list(full)
    assert stepped.truth() == full.truth()
    # A paced driver (simulated time 20 000× the wall clock) writes the same bytes.
    short = SimConfig(agents=6, hours=0.5, seed=3, scenarios=select("all"))
    for name in ("jsonl", "jsonl.gz"):
        fast = write_run(short, tmp_path / f"fast.{name}")
        paced = write_run(short, tmp_path / f"paced.{name}", speed=20_000.0)
        assert paced == fast


def test_the_run_covers_start_to_end_in_time_order() -> None:
    sim = Simulation(CONFIG)
    assert sim.last_t == CONFIG.start
    assert sim.events_until(CONFIG.start) == []
    events = list(sim)
    assert sim.done
    assert sim.emitted == len(events)
    assert CONFIG.start < events[0].ts
    assert events[-1].ts < CONFIG.end
    assert all(a.ts <= b.ts for a, b in itertools.pairwise(events))
    assert sim.events_until(CONFIG.end + timedelta(hours=1)) == []
    assert {e.agent_type for e in events} == {p.group for p in PROFILES}


# -- realism --------------------------------------------------------------------------------------


def test_resource_metrics_sessions_llm_usage_and_weekly_rhythm() -> None:
    config = SimConfig(agents=2, hours=7 * 24, seed=4, groups=("coding-agent", "finance-assistant"))
    events = list(Simulation(config))
    metrics = [e.metrics for e in events if e.type == "metric" and e.metrics]
    assert {k for m in metrics for k in m} == {"cpu_pct", "memory_mb", "threads", "open_fds"}
    assert all(0 <= m["cpu_pct"] <= 100 for m in metrics)
    ends = [e for e in events if e.type == "session_end"]
    assert ends
    assert all(e.cost_usd is not None for e in ends)
    assert sum(e.cost_usd or 0 for e in ends) > 0
    per_day = [0] * 7
    for event in events:
        if event.type not in ("metric",):
            per_day[(event.ts - config.start).days] += 1
    weekdays, weekend = sum(per_day[:5]) / 5, sum(per_day[5:]) / 2
    assert weekend < 0.5 * weekdays, per_day  # coding agents and finance rest on weekends
    by_hour = [0] * 24
    for event in events:
        if event.type == "tool_call" and event.agent_type == "finance-assistant":
            by_hour[event.ts.hour] += 1
    assert sum(by_hour[9:17]) > 2 * sum(by_hour[0:8])


# -- files ----------------------------------------------------------------------------------------


def test_truth_file_format_is_exact(tmp_path: Path) -> None:
    _, truth = generate(CONFIG)
    path = tmp_path / "t.jsonl"
    write_truth(path, truth)
    lines = path.read_text().splitlines()
    assert len(lines) == len(truth)
    for line in lines:
        row = json.loads(line)
        assert list(row) == [
            "scenario_id",
            "scenario",
            "attack",
            "agent_id",
            "agent_type",
            "start",
            "end",
            "event_ids",
            "session_ids",
            "description",
        ]
        for key in ("start", "end"):
            assert row[key].endswith("Z")
            assert datetime.fromisoformat(row[key]).tzinfo is not None
        assert isinstance(row["attack"], bool)
    assert read_truth(path) == truth


def test_default_truth_path_sits_beside_the_events() -> None:
    assert truth_path(Path("/d/events.jsonl.gz")) == Path("/d/events.truth.jsonl")
    assert truth_path(Path("run.jsonl")) == Path("run.truth.jsonl")


def test_gzip_output_is_plain_jsonl_compressed(tmp_path: Path) -> None:
    config = SimConfig(agents=4, hours=0.25, seed=1)
    plain, _ = write_run(config, tmp_path / "e.jsonl")
    packed, _ = write_run(config, tmp_path / "e.jsonl.gz")
    assert gzip.decompress(packed) == plain
    assert packed[4:8] == b"\0\0\0\0"  # gzip mtime 0: reproducible


def test_speed_parsing() -> None:
    assert parse_speed("max") is None
    assert parse_speed("realtime") == 1.0
    assert parse_speed("60") == 60.0
    assert parse_speed("2.5x") == 2.5
    for bad in ("0", "-1", "fast-ish"):
        with pytest.raises(ValueError, match="speed"):
            parse_speed(bad)


# -- configuration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"agents": 0}, "agents"),
        ({"hours": 0}, "hours"),
        ({"start": datetime(2026, 1, 5)}, "timezone"),
        ({"warmup_hours": 5.0}, "warmup"),
        ({"scenarios": {"teleport": 1}}, "unknown scenarios"),
        ({"scenarios": {"agent_silent": -1}}, "counts"),
        ({"groups": ("accountants",)}, "unknown groups"),
    ],
)
def test_bad_configurations_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimConfig(**{"hours": 2.0, **changes})  # type: ignore[arg-type]


def test_defaults() -> None:
    config = SimConfig()
    assert (config.agents, config.hours, config.start) == (50, 24.0, DEFAULT_START)
    assert DEFAULT_START.weekday() == 0
    assert DEFAULT_START.tzinfo is UTC
    assert config.warmup == timedelta(hours=2)
    assert SimConfig(hours=1).warmup == timedelta(minutes=12)
    only = Simulation(SimConfig(agents=3, hours=0.1, groups=("research-crawler",)))
    assert {s.agent_type for s in only.specs} == {"research-crawler"}


# -- speed ----------------------------------------------------------------------------------------


def test_generation_to_a_file_is_fast(tmp_path: Path) -> None:
    config = SimConfig(agents=50, hours=2, seed=1, start=DEFAULT_START + timedelta(hours=8))
    sim = Simulation(config)
    sink = JsonlSink(tmp_path / "fast.jsonl.gz")
    began = time.perf_counter()
    total = drive(sim, [sink])
    sink.close()
    rate = total / (time.perf_counter() - began)
    assert total > 50_000
    # ~90k events/s on an idle core (one simulated day of 50 agents, ~740k events, in
    # ~9 s); the bound leaves room for a loaded CI machine and still means a day < 1 min.
    assert rate >= 15_000, f"{rate:,.0f} events/s"
