"""The commands as a user runs them, against the real broker and chDB."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from agentwatch.embedded.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agentwatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        check=False,
    )


def test_schema_prints_and_exports_the_published_schema(tmp_path: Path) -> None:
    out = run("schema")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == json.loads((ROOT / "schemas/agent_event.v1.json").read_text())
    exported = run("schema", "anomaly.v1", "--out", str(tmp_path))
    assert exported.returncode == 0, exported.stderr
    assert (tmp_path / "anomaly.v1.json").read_text() == (
        ROOT / "schemas/anomaly.v1.json"
    ).read_text()
    unknown = run("schema", "nope.v9")
    assert unknown.returncode == 2
    assert "unknown schema" in unknown.stderr


def test_init_creates_topics_and_migrations_idempotently(tmp_path: Path) -> None:
    with EmbeddedBroker() as broker:
        env = {
            "AGENTWATCH_KAFKA__BOOTSTRAP": broker.bootstrap,
            "AGENTWATCH_KAFKA__PARTITIONS": "3",
            "AGENTWATCH_DATA_DIR": str(tmp_path),
        }
        first = run("init", env=env)
        assert first.returncode == 0, first.stderr
        assert "agentwatch.events.v1" in first.stderr
        assert "storage migrations applied: 1" in first.stderr
        second = run("init", env=env)
        assert second.returncode == 0, second.stderr
        assert "none (all exist)" in second.stderr
        assert "none (up to date)" in second.stderr
        from kafka import KafkaConsumer

        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap)
        try:
            assert consumer.partitions_for_topic("agentwatch.events.v1") == {0, 1, 2}
            assert consumer.partitions_for_topic("agentwatch.events.dlq.v1") == {0, 1, 2}
        finally:
            consumer.close()


def test_init_and_worker_without_kafka_say_what_to_do(tmp_path: Path) -> None:
    for command in ("init", "worker"):
        out = run(command, env={"AGENTWATCH_DATA_DIR": str(tmp_path)})
        assert out.returncode == 2
        assert "AGENTWATCH_KAFKA__BOOTSTRAP" in out.stderr


def test_bad_configuration_is_reported_not_raised(tmp_path: Path) -> None:
    out = run("init", env={"AGENTWATCH_KAFKA__PARTITIONS": "zero"})
    assert out.returncode == 2
    assert "configuration error" in out.stderr
    assert "Traceback" not in out.stderr


def test_up_demo_runs_the_whole_pipeline_and_stops_cleanly(tmp_path: Path) -> None:
    out = run(
        "up",
        "--demo",
        "--agents",
        "6",
        "--duration",
        "25",
        "--data-dir",
        str(tmp_path),
        env={
            "AGENTWATCH_KAFKA__SESSION_TIMEOUT_MS": "6000",
            "AGENTWATCH_KAFKA__HEARTBEAT_INTERVAL_MS": "2000",
            "COLUMNS": "160",
        },
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "events/s" in out.stderr
    summary = [line for line in out.stderr.splitlines() if line.lstrip("╯ ").startswith("stopped.")]
    assert summary, out.stderr[-3000:]
    match = re.search(r"events stored ([\d,]+)", summary[-1])
    assert match, summary
    assert int(match.group(1).replace(",", "")) > 0
    assert (tmp_path / "clickhouse").is_dir()
