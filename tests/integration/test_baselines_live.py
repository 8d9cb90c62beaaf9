"""Baselines on real parts: poisoning resistance with analyst feedback, and a worker killed
mid-stream that comes back with its baselines (broker + worker subprocess + chDB + CLI)."""

from __future__ import annotations

import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pytest

from agentwatch.config import (
    DetectSettings,
    KafkaSettings,
    LimitSettings,
    Settings,
    WorkerSettings,
)
from agentwatch.embedded.stack import Stack, WorkerProcess
from agentwatch.schemas.anomaly import Anomaly, decode_anomaly
from agentwatch.schemas.events import Destination, Event
from agentwatch.sdk import Emitter
from tests.integration.pipeline_support import (
    read_topic,
    run_cli,
    wait_for,
    worker_api,
    worker_idle,
    worker_stats,
)

pytestmark = pytest.mark.integration

KNOWN = ["api.crm.example.com", "mail.example.com", "files.example.com"]
# One session: the same three steps, twice (transitions ^→search, search→http_post, …).
FLOW = [("search", KNOWN[2]), ("http_post", KNOWN[0]), ("send_email", KNOWN[1])] * 2
SNAPSHOT_INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("baselines")
    settings = Settings(
        data_dir=data_dir,
        kafka=KafkaSettings(partitions=4, session_timeout_ms=6000, heartbeat_interval_ms=2000),
        limits=LimitSettings(max_message_bytes=256 * 1024),
        worker=WorkerSettings(batch_within_s=0.05, snapshot_interval_s=SNAPSHOT_INTERVAL_S),
        # Event time runs about 100 times faster than the clock here (minutes of traffic in
        # seconds), so the tolerance for events arriving out of order across partitions
        # (lateness, 10 s of event time by default: 10 s of delivery jitter live) is scaled
        # along: 120 s of event time are about a second of jitter at this pace.
        detect=DetectSettings(warmup_events=20, lateness_s=120),
    )
    with Stack(settings, log_dir=data_dir / "logs") as running:
        running.start(workers=1)
        yield running


_seq = itertools.count()


def event(agent: str, step: int, *, host: str | None = None, group: str, at: datetime) -> Event:
    """Step ``step`` of the agent's routine (sessions of len(FLOW) steps), or ``host``."""
    tool, usual = FLOW[step % len(FLOW)]
    return Event(
        schema_version="1",
        event_id=f"{agent}-{next(_seq)}",
        ts=at,
        agent_id=agent,
        agent_type=group,
        type="tool_call",
        session_id=f"{agent}-s{step // len(FLOW)}",
        tool_name=tool,
        destinations=[Destination(kind="host", value=host or usual)],
    )


def send(stack: Stack, events: list[Event]) -> None:
    with Emitter(
        bootstrap=stack.bootstrap, max_batch=100, linger_ms=20, buffer_size=len(events) + 1
    ) as emitter:
        for e in events:
            emitter.emit(e)
        assert emitter.flush(timeout=60)
        assert emitter.stats.sent == len(events)


def send_paced(stack: Stack, events: list[Event], per_s: float) -> None:
    """Send ``events`` at about ``per_s`` events a second."""
    with Emitter(
        bootstrap=stack.bootstrap, max_batch=50, linger_ms=20, buffer_size=len(events) + 1
    ) as emitter:
        started = time.monotonic()
        for n, e in enumerate(events):
            emitter.emit(e)
            ahead = n / per_s - (time.monotonic() - started)
            if ahead > 0.005:
                time.sleep(ahead)
        assert emitter.flush(timeout=60)
        assert emitter.stats.sent == len(events)


def anomalies_of(stack: Stack, agents: set[str]) -> list[Anomaly]:
    records = read_topic(stack.bootstrap, "agentwatch.anomalies.v1", timeout_s=30)
    found = [decode_anomaly(r.value) for r in records]
    return [a for a in found if a.agent_id in agents]


def event_anomalies(stack: Stack, agents: set[str]) -> list[Anomaly]:
    """The anomalies raised by single events (not by windows) of ``agents``."""
    return [a for a in anomalies_of(stack, agents) if "window" not in a.labels]


def processed(stack: Stack, before: int, count: int) -> None:
    worker = stack.workers[0]
    wait_for(
        lambda: worker_stats(worker)["events_valid"] - before >= count,
        60,
        f"the worker to consume {count} events",
    )


def test_repeated_new_destination_stays_flagged_until_marked_benign(stack: Stack) -> None:
    worker = stack.workers[0]
    agent = f"poisoned-{uuid.uuid4().hex[:6]}"
    # Event time runs forward through the module (the engine's watermark is shared by all
    # agents of the worker): this test's events lie before the next test's.
    start = datetime.now(UTC) - timedelta(hours=4)
    baseline = [
        event(agent, i, group="poison", at=start + timedelta(milliseconds=100 * i))
        for i in range(600)
    ]
    attack_at = start + timedelta(minutes=5)
    attacks = [
        event(
            agent,
            0,
            host="drop.attacker.example",
            group="poison",
            at=attack_at + timedelta(seconds=i),
        )
        for i in range(1000)
    ]
    before = worker_stats(worker)["events_valid"]
    send(stack, baseline + attacks)
    processed(stack, before, len(baseline) + len(attacks))

    flagged = {a.event_ids[0]: a for a in event_anomalies(stack, {agent})}
    assert set(flagged) == {e.event_id for e in attacks}  # every use, the 1,000th too
    last = flagged[attacks[-1].event_id]
    assert "drop.attacker.example" in last.explanation
    assert "destination/host/drop.attacker.example" in last.labels["keys"].split()

    # The analyst's verdict, through the CLI as a user runs it next to the stack: the
    # worker and the broker are found from the data dir.
    out = run_cli(
        "feedback",
        "benign",
        last.anomaly_id,
        "--who",
        "alice",
        "--why",
        "new data-drop partner, ticket SEC-42",
        env={"AGENTWATCH_DATA_DIR": str(stack.settings.data_dir)},
    )
    assert out.returncode == 0, out.stderr
    assert "applied" in out.stderr
    printed = json.loads(out.stdout.strip().splitlines()[-1])
    assert printed["agent_id"] == agent
    assert printed["keys"] == last.labels["keys"].split()

    after = event(
        agent,
        0,
        host="drop.attacker.example",
        group="poison",
        at=attacks[-1].ts + timedelta(seconds=1),
    )
    before = worker_stats(worker)["events_valid"]
    send(stack, [after])
    processed(stack, before, 1)
    time.sleep(1.0)  # anomalies are published before the counters move; be generous
    assert after.event_id not in {a.event_ids[0] for a in event_anomalies(stack, {agent})}

    changes = worker_api(worker, f"/agentwatch/models/{quote(agent, safe='')}/changes/")
    (feedback,) = changes["feedback"]
    assert (feedback["action"], feedback["who"], feedback["why"]) == (
        "benign",
        "alice",
        "new data-drop partner, ticket SEC-42",
    )
    assert feedback["anomaly_id"] == last.anomaly_id
    assert feedback["keys"] == printed["keys"]
    assert [c["kind"] for c in changes["changes"]] == ["benign"]


def test_worker_killed_mid_stream_restores_baselines_without_false_positives(
    stack: Stack,
) -> None:
    agents = [f"steady-{n}-{uuid.uuid4().hex[:4]}" for n in range(6)]
    group = "steady"
    start = datetime.now(UTC) - timedelta(hours=2)
    baseline = [
        event(agent, i, group=group, at=start + timedelta(seconds=i))
        for i in range(480)
        for agent in agents
    ]
    worker = stack.workers[0]
    before = worker_stats(worker)["events_valid"]
    # Paced, as live traffic comes (150 s of event time per second): a flood of minutes of
    # event time at once, in partitions holding different numbers of agents, would be
    # consumed with the partitions minutes apart in event time, and the engine's
    # watermark, shared by all agents, would make the lagging ones' events late.
    send_paced(stack, baseline, per_s=150 * len(agents))
    processed(stack, before, len(baseline))
    wait_for(
        lambda: worker_api(worker, "/agentwatch/models/")["dirty"] == 0,
        10 * SNAPSHOT_INTERVAL_S,
        "the periodic snapshot of the baselines",
    )

    # Normal traffic keeps flowing while the worker is killed (SIGKILL: no revoke, no
    # shutdown snapshot) and restarted: sessions are cut in the middle.
    sent: list[Event] = []
    stop = threading.Event()

    def traffic() -> None:
        step = 480
        with Emitter(bootstrap=stack.bootstrap, max_batch=50, linger_ms=20) as emitter:
            while not stop.is_set() and step < 480 + 600:
                for agent in agents:
                    # Step 480 on: right after the baseline (a gap would be silence,
                    # news of its own).
                    e = event(agent, step, group=group, at=start + timedelta(seconds=step))
                    emitter.emit(e)
                    sent.append(e)
                step += 1
                time.sleep(0.01)
            assert emitter.flush(timeout=30)

    sender = threading.Thread(target=traffic, name="steady-traffic")
    sender.start()
    try:
        wait_for(lambda: len(sent) > 600, 30, "live traffic")
        time.sleep(2 * SNAPSHOT_INTERVAL_S)  # let a periodic snapshot land mid-stream
        stack.stop_worker(worker, kill=True)
        restarted = stack.start_worker()
        stack.wait_workers_ready(60)
        wait_for(
            lambda: (
                (worker_stats(restarted).get("models") or {}).get("agents_restored", 0)
                >= len(agents)
            ),
            60,
            "the restarted worker to restore the baselines",
        )
    except BaseException:
        stop.set()
        raise
    finally:
        sender.join(timeout=60)
    assert len(sent) == 600 * len(agents)
    wait_for(lambda: worker_idle(restarted), 60, "the restarted worker to catch up")

    for agent in agents:
        status = worker_api(restarted, f"/agentwatch/models/{quote(agent, safe='')}/")
        assert status["status"] == "baselined"
        assert status["events"] >= 480

    # The restored models are the learned ones, not empty ones warming up: a new
    # destination is still flagged at once.
    # Right after the traffic in event time (a later one would close the windows of the
    # silence in between, and an agent falling silent is news of its own).
    planted = event(
        agents[0],
        0,
        host="exfil.attacker.example",
        group=group,
        at=max(e.ts for e in sent) + timedelta(seconds=1),
    )
    before = worker_stats(restarted)["events_valid"]
    send(stack, [planted])
    processed(stack, before, 1)
    wait_for(
        lambda: any(planted.event_id in a.event_ids for a in anomalies_of(stack, {agents[0]})),
        20,
        "the planted destination to be flagged",
    )
    false_positives = [
        a for a in anomalies_of(stack, set(agents)) if planted.event_id not in a.event_ids
    ]
    assert false_positives == [], [a.title for a in false_positives]

    models = worker_stats(restarted)["models"]
    print(
        f"\nrestart: {models['agents_restored']} agents restored in "
        f"{models['last_restore_ms']:.0f} ms ({models['restore_bytes'] // len(agents)} "
        f"bytes per agent), {models['caught_up_events']} events caught up, "
        f"{models['backlog_messages']} backlog messages processed in event time, "
        f"{models['redelivered_skipped']} redelivered messages skipped"
    )

    # The snapshots are listed, and a model is rolled back to one of them: a wrong
    # verdict (the planted destination accepted) is undone by a revert.
    cli_env = {"AGENTWATCH_DATA_DIR": str(stack.settings.data_dir)}
    api = f"http://127.0.0.1:{restarted.web_port}"
    listed = list_snapshots(agents[0], api, cli_env)
    assert {row["agent_id"] for row in listed} == {agents[0]}
    assert "periodic" in {row["reason"] for row in listed}
    assert all(row["size_bytes"] > 0 and row["events"] > 0 for row in listed)
    assert listed[0]["events"] >= 480
    good = listed[0]  # the newest: the planted destination is not in it

    (flagged,) = [a for a in anomalies_of(stack, {agents[0]}) if planted.event_id in a.event_ids]
    out = run_cli(
        "feedback", "benign", flagged.anomaly_id, "--who", "mallory", "--why", "looks fine",
        "--worker-url", api, env=cli_env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (accepted,) = [r for r in api_snapshots(restarted, agents[0]) if r["reason"] == "benign"]
    assert accepted["size_bytes"] > good["size_bytes"]  # the accepted keys joined the baseline
    # (Not used now: a use after the verdict would also teach the peer group, which a
    # revert of this agent's model does not undo.)

    out = run_cli(
        "models", "revert", agents[0], "--to", good["snapshot_id"], "--who", "alice",
        "--why", "mallory's verdict was wrong", "--worker-url", api, env=cli_env,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "applied" in out.stderr
    # In a session of its own, opening with its usual first step.
    again = event(agents[0], 6000, host="exfil.attacker.example", group=group, at=planted.ts)
    assert flagged_after_sending(stack, restarted, again, agents[0])  # new again

    newest = api_snapshots(restarted, agents[0])  # the last use made a periodic one
    reasons = [row["reason"] for row in newest]
    assert reasons.index("revert") < reasons.index("benign")
    assert newest[reasons.index("revert")]["events"] == good["events"]
    changes = worker_api(restarted, f"/agentwatch/models/{quote(agents[0], safe='')}/changes/")
    assert [(f["action"], f["who"]) for f in changes["feedback"]] == [
        ("revert", "alice"),
        ("benign", "mallory"),
    ]
    assert changes["feedback"][0]["snapshot_id"] == good["snapshot_id"]
    assert [c["kind"] for c in changes["changes"]][:2] == ["revert", "benign"]


def list_snapshots(agent: str, api: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """``agentwatch models snapshots <agent> --json``, newest first."""
    out = run_cli("models", "snapshots", agent, "--json", "--worker-url", api, env=env)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]


def api_snapshots(worker: WorkerProcess, agent: str) -> list[dict[str, Any]]:
    """The agent's snapshots from the worker's API (what the CLI reads), newest first."""
    found = worker_api(worker, f"/agentwatch/models/{quote(agent, safe='')}/snapshots/")
    return list(found["snapshots"])


def flagged_after_sending(stack: Stack, worker: WorkerProcess, e: Event, agent: str) -> bool:
    """Send ``e``; whether it raised an anomaly of its own once the worker processed it."""
    before = worker_stats(worker)["events_valid"]
    send(stack, [e])
    wait_for(lambda: worker_stats(worker)["events_valid"] > before, 30, "the worker to consume it")
    deadline = time.monotonic() + 3.0  # anomalies are published before the counters move
    while True:
        if any(e.event_id in a.event_ids for a in event_anomalies(stack, {agent})):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.3)
