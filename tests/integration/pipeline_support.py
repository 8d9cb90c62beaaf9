"""Support for the pipeline tests: a running stack, reading topics and chDB."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from agentwatch.embedded.stack import Stack, WorkerProcess


def wait_for(
    condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def worker_stats(worker: WorkerProcess) -> dict[str, Any]:
    stats = worker.stats()
    assert stats is not None, f"worker not answering; log:\n{worker.log_path.read_text()[-3000:]}"
    return stats


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record on ``topic`` from the beginning (no consumer group: no join delay)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            if all(consumer.position(tp) >= end[tp] for tp in partitions):
                break
        return records
    finally:
        consumer.close()


def chdb_query(stack: Stack, sql: str) -> list[list[Any]]:
    """Run ``sql`` on the stack's storage in a separate process.

    chDB lets one process open one data directory at a time, and the worker owns it while
    it runs; the stack's workers must be stopped first.
    """
    assert not stack.workers, "stop the workers before reading chDB"
    code = (
        "import json,sys\n"
        "from agentwatch.storage.client import connect\n"
        "client = connect(sys.argv[1])\n"
        "rows = client.query(sys.argv[2]).result_rows\n"
        "print(json.dumps([list(r) for r in rows], default=str))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, stack.settings.storage_dsn, sql],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows: list[list[Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return rows


def worker_idle(worker: WorkerProcess, quiet_s: float = 2.0) -> bool:
    """True when the worker holds partitions, has no lag and consumed nothing for ``quiet_s``."""
    first = worker_stats(worker)
    if not first["partitions"] or first["lag"] != 0:
        return False
    time.sleep(quiet_s)
    return bool(worker_stats(worker)["messages"] == first["messages"])


def worker_api(worker: WorkerProcess, path: str, timeout_s: float = 5.0) -> Any:
    """GET ``path`` of the worker's HTTP API as JSON (``None`` for 404)."""
    url = f"http://127.0.0.1:{worker.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """``agentwatch <args>`` in a subprocess, with only the given AGENTWATCH_* variables."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "agentwatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=full_env,
        check=False,
    )
