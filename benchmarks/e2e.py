"""End-to-end latency: SDK send → anomaly stored (and published) → webhook received.

Starts the whole production shape on this machine: the embedded broker, one worker
(chDB), the alert dispatcher (``agentwatch alerts run``, its own process and chDB dir,
routed to a webhook with ``group_wait: 0``) and a webhook receiver on 127.0.0.1 (its own
process). A fleet of ``--agents`` agents sends benign tool calls through the SDK at
``--rate`` events/s; first each agent is baselined (``--warm-events`` events each), then,
under the steady load, ``--plants`` times an agent sends data to a host it never used.
For each planted event the benchmark measures the time from the SDK call to

* the anomaly naming it arriving on ``agentwatch.anomalies.v1`` (the worker publishes an
  anomaly after its row and the batch's events are stored in ClickHouse), and
* the webhook that lists that anomaly arriving at the receiver.

The SDK's default batching (``linger_ms`` 200) is part of the figure, as in production;
``--linger-ms`` changes it. Usage::

    .venv/bin/python -m benchmarks.e2e --rate 2000 --plants 40
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from agentwatch.config import KafkaSettings, Settings
from agentwatch.embedded.broker import free_port
from agentwatch.embedded.stack import Stack
from agentwatch.sdk import Emitter
from benchmarks.common import Figure, percentile, start_dispatcher

RECEIVER = """
import json, sys, time
from aiohttp import web
seen = {}
async def hook(request):
    body = json.loads(await request.read())
    now = time.time()
    for alert in body.get("alerts", []):
        seen.setdefault(alert["labels"].get("anomaly_id", ""), now)
    return web.Response(status=200)
async def results(request):
    return web.json_response(seen)
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/results", results)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def _get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def _wait(what: str, ready: Any, timeout_s: float, proc: subprocess.Popen[bytes] | None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            if ready():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{what} not ready after {timeout_s:.0f}s")


class AnomalyWatch(threading.Thread):
    """Notes when the anomaly naming each watched event id arrives on the topic."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            auto_offset_reset="latest",
            group_id=None,
            fetch_max_wait_ms=10,
        )
        self.arrivals: dict[str, tuple[float, str]] = {}  # event id -> (time, anomaly id)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                now = time.time()
                for record in records:
                    anomaly = json.loads(record.value)
                    for event_id in anomaly.get("event_ids", []):
                        self.arrivals.setdefault(event_id, (now, anomaly["anomaly_id"]))
        self.consumer.close()


def run(
    rate: int = 2000,
    agents: int = 200,
    warm_events: int = 120,
    plants: int = 40,
    plant_every_s: float = 0.5,
    linger_ms: float = 200.0,
    partitions: int = 8,
    seed: int = 1,
) -> list[Figure]:
    rng = random.Random(seed)
    plants = min(plants, agents)
    hosts = {
        f"agent-{i:04d}": [f"api{j}.svc{i % 7}.example.com" for j in range(3)]
        for i in range(agents)
    }
    ids = list(hosts)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root / "worker",
            kafka=KafkaSettings(
                partitions=partitions, session_timeout_ms=6000, heartbeat_interval_ms=2000
            ),
        )
        receiver_port = free_port()
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(receiver_port)], start_new_session=True
        )
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        dispatcher: subprocess.Popen[bytes] | None = None
        try:
            with Stack(settings, log_dir=root / "logs") as stack:
                stack.start(workers=1, wait_ready_s=120)
                (root / "alerts").mkdir()
                dispatcher, api = start_dispatcher(
                    root / "alerts", stack.bootstrap, partitions, f"{receiver_url}/hook"
                )
                _wait("receiver", lambda: _get_json(f"{receiver_url}/results") == {}, 30, receiver)
                _wait(
                    "dispatcher", lambda: _get_json(f"{api}/healthz").get("ready"), 90, dispatcher
                )
                worker = stack.workers[0]
                emitter = Emitter(stack.bootstrap, linger_ms=linger_ms, buffer_size=200_000)
                fleet = {a: emitter.agent(a, agent_type=f"svc{i % 7}") for i, a in enumerate(ids)}

                def benign(agent: str) -> None:
                    fleet[agent].tool_call(
                        "http_get",
                        {"path": "/status"},
                        destinations=[rng.choice(hosts[agent])],
                        duration_ms=rng.uniform(5, 200),
                        bytes_out=rng.randrange(100, 2000),
                    )

                print(f"e2e: baselining {agents} agents with {warm_events} events each", flush=True)
                for _ in range(warm_events):
                    for agent in ids:
                        benign(agent)
                emitter.flush(60)
                total = agents * warm_events
                _wait(
                    "worker (baseline)",
                    lambda: int((worker.stats() or {}).get("events_stored", 0)) >= total,
                    300,
                    None,
                )
                watch = AnomalyWatch(stack.bootstrap, settings.kafka.topics.anomalies)
                watch.start()
                time.sleep(1.0)
                planted: dict[str, float] = {}
                victims = rng.sample(ids, plants)
                print(
                    f"e2e: {rate:,} events/s over {agents} agents, {plants} planted exfiltrations",
                    flush=True,
                )
                start = time.time()
                sent = 0
                next_plant = start + 1.0
                while len(planted) < plants or time.time() < next_plant:
                    now = time.time()
                    due = int((now - start) * rate)
                    while sent < due:
                        benign(ids[sent % agents])
                        sent += 1
                    if now >= next_plant and len(planted) < plants:
                        victim = victims[len(planted)]
                        event = fleet[victim].tool_call(
                            "http_post",
                            {"path": "/upload"},
                            destinations=[f"drop-{len(planted)}.exfil-{seed}.example.net"],
                            bytes_out=250_000,
                        )
                        planted[event.event_id if event else ""] = time.time()
                        next_plant += plant_every_s
                    time.sleep(0.002)
                emitter.flush(30)
                deadline = time.time() + 30
                while time.time() < deadline and not all(e in watch.arrivals for e in planted):
                    time.sleep(0.2)
                time.sleep(2.0)
                hooks: dict[str, float] = _get_json(f"{receiver_url}/results")
                watch.stopping.set()
                watch.join(5)
                emitter.close(10)
        finally:
            if dispatcher is not None:
                os.killpg(dispatcher.pid, signal.SIGTERM)
                dispatcher.wait(30)
            receiver.terminate()
            receiver.wait(10)
    stored_ms = [
        (watch.arrivals[e][0] - t) * 1000 for e, t in planted.items() if e in watch.arrivals
    ]
    hook_ms = [
        (hooks[watch.arrivals[e][1]] - t) * 1000
        for e, t in planted.items()
        if e in watch.arrivals and watch.arrivals[e][1] in hooks
    ]
    note = f"{rate:,} events/s, linger {linger_ms:.0f} ms; {len(stored_ms)}/{plants} found"
    hook_note = f"{len(hook_ms)}/{plants} delivered"
    return [
        Figure("e2e", "SDK → anomaly stored: p50", percentile(stored_ms, 0.5), "ms", note),
        Figure("e2e", "SDK → anomaly stored: p99", percentile(stored_ms, 0.99), "ms", note),
        Figure("e2e", "SDK → webhook: p50", percentile(hook_ms, 0.5), "ms", hook_note),
        Figure("e2e", "SDK → webhook: p99", percentile(hook_ms, 0.99), "ms", hook_note),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=2000, help="benign events per second")
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--warm-events", type=int, default=120)
    parser.add_argument("--plants", type=int, default=40)
    parser.add_argument("--linger-ms", type=float, default=200.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    figures = run(
        rate=args.rate,
        agents=args.agents,
        warm_events=args.warm_events,
        plants=args.plants,
        linger_ms=args.linger_ms,
        seed=args.seed,
    )
    for figure in figures:
        print(f"{figure.name}: {figure.formatted()} ({figure.note})")


if __name__ == "__main__":
    main()
