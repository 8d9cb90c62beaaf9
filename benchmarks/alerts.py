"""Alerting latency: anomaly on Kafka → webhook received, at a steady anomaly rate.

Starts the embedded broker, a webhook receiver on 127.0.0.1 (an aiohttp app in its own
process, noting each anomaly's latency on arrival) and ``agentwatch alerts run`` as its own
process (its own chDB dir, as in production), with one route to that receiver and no
grouping delay (``group_wait: 0``, ``group_interval: 0``, ``resolve_timeout: 1h``; grouping
by the default ``agent_id`` + ``detector``; the default delivery policy, 16 requests in
flight, unless ``--concurrency``). Then it produces ``--rate`` anomalies per second
for ``--seconds``, round-robin over ``--agents`` agents (1,000 by default: at 1,000/s each
agent's alert gets one new anomaly a second), each carrying its send time. As the group
interval is 0, every anomaly is notified on its own, in a webhook request listing it as
new: the pipeline's own latency and its worst case in requests per anomaly, not a configured
wait. Per anomaly, the figure is the time from its send to the arrival of the first webhook
listing it. Prints p50/p90/p99/max, the dispatcher's CPU time and the machine's load.

The producer sends in ticks of ``--tick`` (2 ms: two anomalies a tick at 1,000/s, as an
ingest worker's batches would), each anomaly stamped when it is handed to the producer.
Usage::

    .venv/bin/python -m benchmarks.alerts --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
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
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from agentwatch.config import KafkaSettings
from agentwatch.embedded.broker import EmbeddedBroker, free_port
from agentwatch.schemas.anomaly import Anomaly, encode_anomaly
from agentwatch.streams.topics import ensure_topics
from benchmarks.common import percentile, start_dispatcher


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """CPU time (user + system) of a process, or of one of its threads (Linux /proc)."""
    path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
async def count(request):
    return web.json_response({"requests": requests[0], "seen": len(seen)})
async def results(request):
    return web.json_response({"requests": requests[0], "latencies": list(seen.values())})
app = web.Application()
app.router.add_post("/hook", hook)
app.router.add_get("/count", count)
app.router.add_get("/results", results)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


async def produce(bootstrap: str, rate: float, total: int, agents: int, tick: float) -> float:
    """Send ``total`` anomalies at ``rate``/s in ticks of ``tick`` s; the start time."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=1)
    await producer.start()
    try:
        start = time.time()
        sent = 0
        while sent < total:
            due = min(total, int((time.time() - start) * rate) + 1)
            for i in range(sent, due):
                agent = f"bench-{i % agents:05d}"
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
                await producer.send(
                    "agentwatch.anomalies.v1", encode_anomaly(anomaly), key=agent.encode()
                )
            sent = due
            next_at = start + sent / rate
            await asyncio.sleep(max(tick, next_at - time.time()))
        await producer.flush()
        return start
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=int, default=1000, help="anomalies per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out of the figures")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--tick", type=float, default=0.002, help="producer tick, seconds")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="requests in flight to the receiver (default: the delivery policy's default)",
    )
    parser.add_argument("--timeline", action="store_true", help="p50/p99 per second sent")
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
        delivery: dict[str, Any] = {"timeout": "5s"}
        if args.concurrency is not None:
            delivery["concurrency"] = args.concurrency
        proc, api = start_dispatcher(
            data_dir,
            broker.bootstrap,
            args.partitions,
            f"{receiver_url}/hook",
            config={"storm": {"max_alerts_per_minute": 100_000}, "delivery": delivery},
            args=("--loglevel", "warning"),
        )
        log_path = data_dir / "dispatcher.log"
        try:
            wait_ready(api, proc, log_path)
            total = int(args.rate * args.seconds)
            print(
                f"{total:,} anomalies at {args.rate:,}/s over {args.agents:,} agents, "
                f"{args.partitions} partitions; dispatcher pid {proc.pid}"
            )
            load_before = os.getloadavg()
            cpu_before = cpu_seconds(proc.pid), cpu_seconds(proc.pid, proc.pid)
            own_before = time.process_time()
            start = asyncio.run(produce(broker.bootstrap, args.rate, total, args.agents, args.tick))
            sent_s = time.time() - start
            own_s = time.process_time() - own_before
            deadline = time.time() + 120
            while True:  # (the full results only at the end: serving them takes a while)
                counts = httpx.get(f"{receiver_url}/count", timeout=30).json()
                if counts["seen"] >= total or time.time() > deadline:
                    break
                time.sleep(0.25)
            busy_s = time.time() - start
            cpu_after = cpu_seconds(proc.pid), cpu_seconds(proc.pid, proc.pid)
            load_after = os.getloadavg()
            results = httpx.get(f"{receiver_url}/results", timeout=30).json()
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
        f"produced in {sent_s:.1f}s ({total / sent_s:,.0f}/s, producer CPU {own_s:.1f} s); "
        f"delivered {len(values):,}/{total:,} in {seen:,} webhook requests"
    )
    print(f"dispatcher receivers: {status['receivers']['hook']}")
    print(f"dispatcher notifications: {status['notifications']}")
    used, main_used = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    print(
        f"dispatcher CPU: {used:.1f} s in {busy_s:.1f} s ({used / busy_s:.2f} cores; main thread "
        f"{main_used:.1f} s), {used / total * 1e6:,.0f} us per anomaly; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after ({os.cpu_count()} CPUs)"
    )
    if not values:
        raise SystemExit("nothing delivered")
    if args.timeline:
        by_second: dict[int, list[float]] = {}
        for sent, lat in latencies:
            by_second.setdefault(int(sent - start), []).append(lat * 1000)
        print(
            "per second sent (p50/p99 ms): "
            + " ".join(
                f"{s}:{percentile(v, 0.5):.0f}/{percentile(v, 0.99):.0f}"
                for s, v in sorted(by_second.items())
            )
        )
    steady = [lat for sent, lat in latencies if sent >= start + args.warmup] or values
    # The first anomaly of each agent opens its alert: the alert's first notification.
    first = [lat for _, lat in sorted(latencies)[: args.agents]]
    for name, sample in (
        ("all", values),
        ("first of each alert", first),
        (f"after {args.warmup:.0f}s warm-up", steady),
    ):
        ms = [v * 1000 for v in sample]
        print(
            f"{name:>20}: p50 {percentile(ms, 0.50):6.1f} ms  p90 {percentile(ms, 0.90):6.1f} ms  "
            f"p99 {percentile(ms, 0.99):6.1f} ms  max {max(ms):7.1f} ms  "
            f"mean {statistics.fmean(ms):6.1f} ms  (n={len(ms):,})"
        )


if __name__ == "__main__":
    main()
