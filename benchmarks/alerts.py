"""Alerting latency: anomaly on Kafka → webhook received, at a steady anomaly rate.

Starts the embedded broker, a webhook receiver on 127.0.0.1 (an aiohttp app in its own
process, noting each anomaly's latency on arrival) and ``agentwatch alerts run`` as its own
process (its own chDB dir, as in production),
routed to the receiver with no grouping delay (``group_wait: 0``, ``group_interval: 0``:
each anomaly is notified at once, so the figure is the pipeline's own latency, not a
configured wait). Then it produces ``--rate`` anomalies per second for ``--seconds``, each
carrying its send time, and measures, per anomaly, the time from the send to the arrival
of the webhook that lists it. Prints p50/p90/p99/max. Usage::

    .venv/bin/python -m benchmarks.alerts --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from kafka import KafkaProducer

from agentwatch.config import KafkaSettings
from agentwatch.embedded.broker import EmbeddedBroker, free_port
from agentwatch.schemas.anomaly import Anomaly, encode_anomaly
from agentwatch.streams.topics import ensure_topics


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_ready(api: str, proc: subprocess.Popen[bytes], log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"dispatcher exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{api}/healthz", timeout=1).json().get("ready"):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise SystemExit(f"dispatcher not ready:\n{log.read_text()[-3000:]}")


RECEIVER = """
import sys, time, msgspec
from aiohttp import web
decoder = msgspec.json.Decoder()
seen = {}
requests = [0]
async def hook(request):
    body = decoder.decode(await request.read())
    now = time.time()
    requests[0] += 1
    for alert in body["alerts"]:
        labels = alert["labels"]
        sent = int(labels["sent_ns"]) / 1e9
        seen.setdefault(labels["anomaly_id"], (sent, now - sent))
    return web.Response(status=200)
async def results(request):
    return web.json_response({"requests": requests[0], "latencies": list(seen.values())})
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/results", results)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="anomalies per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out of the figures")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        data_dir = Path(tmp)
        receiver_port = free_port()
        receiver = subprocess.Popen(
            [sys.executable, "-c", RECEIVER, str(receiver_port)], start_new_session=True
        )
        receiver_url = f"http://127.0.0.1:{receiver_port}"
        kafka = KafkaSettings(
            bootstrap=broker.bootstrap,
            partitions=args.partitions,
            session_timeout_ms=6000,
            heartbeat_interval_ms=2000,
        )
        ensure_topics(broker.bootstrap, kafka)
        api_port = free_port()
        config = {
            "defaults": {"group_wait": 0, "group_interval": 0, "resolve_timeout": "1h"},
            "storm": {"max_alerts_per_minute": 100_000},
            "delivery": {"concurrency": 4, "timeout": "5s"},
            "receivers": [{"name": "hook", "type": "webhook", "url": f"{receiver_url}/hook"}],
            "routes": [{"name": "all", "receivers": ["hook"]}],
            "api": {"port": api_port},
        }
        config_path = data_dir / "alerting.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env.update(
            AGENTWATCH_KAFKA__BOOTSTRAP=broker.bootstrap,
            AGENTWATCH_KAFKA__PARTITIONS=str(args.partitions),
            AGENTWATCH_KAFKA__SESSION_TIMEOUT_MS="6000",
            AGENTWATCH_KAFKA__HEARTBEAT_INTERVAL_MS="2000",
            AGENTWATCH_DATA_DIR=str(data_dir),
        )
        log_path = data_dir / "dispatcher.log"
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "agentwatch",
                    "alerts",
                    "run",
                    "--config",
                    str(config_path),
                    "--loglevel",
                    "warning",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        api = f"http://127.0.0.1:{api_port}"
        try:
            wait_ready(api, proc, log_path)
            producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=1)
            total = int(args.rate * args.seconds)
            print(
                f"{total:,} anomalies at {args.rate:,}/s over {args.agents:,} agents, "
                f"{args.partitions} partitions; dispatcher pid {proc.pid}"
            )
            start = time.time()
            for i in range(total):
                due = start + i / args.rate
                delay = due - time.time()
                if delay > 0:
                    time.sleep(delay)
                agent = f"bench-{i % args.agents:05d}"
                now = datetime.now(UTC)
                anomaly = Anomaly(
                    schema_version="1",
                    anomaly_id=uuid.uuid4().hex,
                    agent_id=agent,
                    ts=now,
                    detected_at=now,
                    detector="new_destination",
                    score=80.0,
                    severity="high",
                    title=f"{agent}: new destination",
                    explanation="never seen before",
                    labels={"sent_ns": str(time.time_ns())},
                )
                producer.send(
                    "agentwatch.anomalies.v1", key=agent.encode(), value=encode_anomaly(anomaly)
                )
            producer.flush()
            sent_s = time.time() - start
            deadline = time.time() + 120
            while True:
                results = httpx.get(f"{receiver_url}/results", timeout=30).json()
                if len(results["latencies"]) >= total or time.time() > deadline:
                    break
                time.sleep(0.5)
            latencies = [(sent, latency) for sent, latency in results["latencies"]]
            seen = results["requests"]
            status = httpx.get(f"{api}/api/v1/status", timeout=5).json()
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
            receiver.terminate()
            receiver.wait(10)

    values = [latency for _, latency in latencies]
    print(
        f"produced in {sent_s:.1f}s ({total / sent_s:,.0f}/s); delivered {len(values):,}/{total:,}"
    )
    print(f"webhook requests: {seen:,}; dispatcher receivers: {status['receivers']['hook']}")
    if not values:
        raise SystemExit("nothing delivered")
    steady = [lat for sent, lat in latencies if sent >= start + args.warmup] or values
    for name, sample in (("all", values), (f"after {args.warmup:.0f}s warm-up", steady)):
        ms = [v * 1000 for v in sample]
        print(
            f"{name:>20}: p50 {percentile(ms, 0.50):6.1f} ms  p90 {percentile(ms, 0.90):6.1f} ms  "
            f"p99 {percentile(ms, 0.99):6.1f} ms  max {max(ms):7.1f} ms  "
            f"mean {statistics.fmean(ms):6.1f} ms  (n={len(ms):,})"
        )


if __name__ == "__main__":
    main()
