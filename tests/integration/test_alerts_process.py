"""`agentwatch alerts run` as a process: killed mid-delivery and restarted, and the CLI
talking to it through its API while it runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaProducer

from agentwatch.alerts.sink import RecordingSink, Reply
from agentwatch.config import KafkaSettings
from agentwatch.embedded.broker import EmbeddedBroker, free_port
from agentwatch.schemas.anomaly import Anomaly, encode_anomaly
from agentwatch.streams.topics import ensure_topics

pytestmark = pytest.mark.integration

AGENTS = 24


class Dispatcher:
    """One ``agentwatch alerts run`` child process."""

    def __init__(self, env: dict[str, str], config: Path, log_path: Path, api_port: int) -> None:
        self.env = env
        self.config = config
        self.log_path = log_path
        self.api = f"http://127.0.0.1:{api_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentwatch", "alerts", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
            )
        finally:
            log.close()

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"dispatcher exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.api}/healthz", timeout=1).json()["ready"]:
                    return
            except (httpx.HTTPError, ValueError, KeyError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"dispatcher not ready:\n{self.log_path.read_text()[-3000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(30)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agentwatch", "alerts", *args, "--api", self.api],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env,
            check=False,
        )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("alerts-process")
    with EmbeddedBroker() as broker, RecordingSink() as sink:
        kafka = KafkaSettings(
            bootstrap=broker.bootstrap,
            partitions=2,
            session_timeout_ms=6000,
            heartbeat_interval_ms=2000,
        )
        ensure_topics(broker.bootstrap, kafka)
        api_port = free_port()
        config = {
            "defaults": {"group_wait": 0, "group_interval": "1s", "resolve_timeout": "1h"},
            "delivery": {"concurrency": 1, "backoff_initial": "0.05s", "backoff_max": "0.2s"},
            "receivers": [{"name": "slow", "type": "webhook", "url": sink.url("/slow")}],
            "routes": [{"name": "all", "receivers": ["slow"]}],
            "api": {"port": api_port},
        }
        path = tmp / "alerting.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update(
            AGENTWATCH_KAFKA__BOOTSTRAP=broker.bootstrap,
            AGENTWATCH_KAFKA__PARTITIONS="2",
            AGENTWATCH_KAFKA__SESSION_TIMEOUT_MS="6000",
            AGENTWATCH_KAFKA__HEARTBEAT_INTERVAL_MS="2000",
            AGENTWATCH_DATA_DIR=str(tmp),
            AGENTWATCH_STORAGE__DATABASE=f"t_{uuid.uuid4().hex[:10]}",
        )
        dispatcher = Dispatcher(env, path, tmp / "dispatcher.log", api_port)
        try:
            yield {"broker": broker, "sink": sink, "dispatcher": dispatcher}
        finally:
            dispatcher.kill()


def anomaly(agent: str) -> Anomaly:
    now = datetime.now(UTC)
    return Anomaly(
        schema_version="1",
        anomaly_id=uuid.uuid4().hex,
        agent_id=agent,
        ts=now,
        detected_at=now,
        detector="new_destination",
        score=88.0,
        severity="high",
        title=f"{agent}: new destination",
        explanation="never seen before",
    )


def test_killed_mid_delivery_and_restarted_delivers_everything(setup: dict[str, Any]) -> None:
    sink: RecordingSink = setup["sink"]
    dispatcher: Dispatcher = setup["dispatcher"]
    sink.default("/slow", Reply(200, delay_s=0.25))  # one at a time: ~6 s for all
    dispatcher.start()
    dispatcher.wait_ready()
    agents = [f"kill-{i:02d}" for i in range(AGENTS)]
    producer = KafkaProducer(bootstrap_servers=setup["broker"].bootstrap)
    for agent in agents:
        producer.send(
            "agentwatch.anomalies.v1", key=agent.encode(), value=encode_anomaly(anomaly(agent))
        )
    producer.flush()
    producer.close()
    sink.wait_for(lambda r: len(r) >= 6, 30, "first deliveries", path="/slow")
    dispatcher.kill()  # SIGKILL in the middle of delivering
    before = len(sink.received("/slow"))
    assert before < AGENTS, "everything was delivered before the kill; slow the receiver down"

    dispatcher.start()
    dispatcher.wait_ready()

    def every_alert(requests: list[Any]) -> bool:
        return {r.json()["groupLabels"]["agent_id"] for r in requests} == set(agents)

    requests = sink.wait_for(every_alert, 60, "every alert after the restart", path="/slow")
    time.sleep(1.0)
    requests = sink.received("/slow")
    # Every alert arrived; a duplicate is a notification the receiver already has (same
    # notification id and dedup key), i.e. one in flight at the kill.
    ids = Counter(r.headers["Idempotency-Key"] for r in requests)
    assert len(ids) == AGENTS
    by_id: dict[str, set[str]] = {}
    for r in requests:
        by_id.setdefault(r.headers["Idempotency-Key"], set()).add(
            r.headers["X-Agentwatch-Dedup-Key"]
        )
    assert all(len(keys) == 1 for keys in by_id.values())
    duplicates = sum(n - 1 for n in ids.values())
    assert duplicates <= 2, ids  # concurrency 1: at most the request in flight (and its retry)
    # Notifications delivered before the kill and consumed again were skipped, not resent.
    status = httpx.get(f"{dispatcher.api}/api/v1/status", timeout=5).json()
    assert status["notifications"]["in_flight"] == 0


def test_cli_lists_shows_acks_and_silences_through_the_api(setup: dict[str, Any]) -> None:
    dispatcher: Dispatcher = setup["dispatcher"]
    if dispatcher.proc is None or dispatcher.proc.poll() is not None:
        dispatcher.start()
        dispatcher.wait_ready()
    listed = dispatcher.cli("list", "--status", "firing", "--json")
    assert listed.returncode == 0, listed.stderr
    alerts = json.loads(listed.stdout)
    assert len(alerts) >= AGENTS
    alert = next(a for a in alerts if a["group_labels"]["agent_id"] == "kill-03")
    shown = dispatcher.cli("show", alert["id"], "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert body["anomalies"][0]["agent_id"] == "kill-03"
    assert any(n["outcome"] == "delivered" for n in body["notification_attempts"])
    table = dispatcher.cli("list")
    assert table.returncode == 0, table.stderr
    assert alert["id"] in table.stdout

    acked = dispatcher.cli("ack", alert["id"], "--by", "oncall-ana", "-m", "on it")
    assert acked.returncode == 0, acked.stderr
    assert "acknowledged by oncall-ana" in acked.stderr
    again = json.loads(dispatcher.cli("show", alert["id"], "--json").stdout)
    assert again["acked_by"] == "oncall-ana"
    assert dispatcher.cli("ack", "no-such-alert").returncode == 3

    added = dispatcher.cli(
        "silence",
        "add",
        'agent_id="kill-05"',
        'detector=~"new_.*"',
        "--duration",
        "1h",
        "--comment",
        "planned test",
        "--by",
        "ana",
        "--json",
    )
    assert added.returncode == 0, added.stderr
    silence = json.loads(added.stdout)
    assert silence["state"] == "active"
    listed_silences = json.loads(dispatcher.cli("silence", "list", "--json").stdout)
    assert [s["id"] for s in listed_silences] == [silence["id"]]
    refused = dispatcher.cli("silence", "add", 'team!="x"', "--comment", "everything")
    assert refused.returncode == 1
    assert "empty label" in refused.stderr
    expired = dispatcher.cli("silence", "expire", silence["id"])
    assert expired.returncode == 0, expired.stderr
    assert json.loads(dispatcher.cli("silence", "list", "--json").stdout) == []
    assert len(json.loads(dispatcher.cli("silence", "list", "--all", "--json").stdout)) == 1


def test_cli_uses_storage_directly_when_no_dispatcher_runs(setup: dict[str, Any]) -> None:
    dispatcher: Dispatcher = setup["dispatcher"]
    dispatcher.kill(signal.SIGTERM)
    assert dispatcher.proc is not None
    assert dispatcher.proc.returncode == 0, dispatcher.log_path.read_text()[-2000:]
    listed = dispatcher.cli("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "using the alert storage directly" in listed.stderr
    alerts = json.loads(listed.stdout)
    acked = [a for a in alerts if a["acked_by"] == "oncall-ana"]
    assert len(acked) == 1
    silences = dispatcher.cli("silence", "list", "--all", "--json")
    assert silences.returncode == 0, silences.stderr
    assert len(json.loads(silences.stdout)) == 1
