"""``agentwatch up``: the whole pipeline on this machine, with a live view.

Starts the embedded broker (unless AGENTWATCH_KAFKA__BOOTSTRAP names one), creates the
topics, starts a worker process (storage: chDB in the data dir unless a DSN is set) and,
with ``--demo``, a simulated fleet of agents sending through the SDK. Ctrl-C stops all.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import typer
from rich.live import Live

from agentwatch.cli.common import console, settings_or_exit
from agentwatch.cli.live import Rate, render
from agentwatch.embedded.stack import Stack, StackError
from agentwatch.storage.client import redacted_dsn


class DemoFleet(threading.Thread):
    """Feeds a simulated fleet to Kafka in real time through the SDK.

    About one message in ``bad_every`` comes from a misconfigured agent and is malformed,
    so the dead-letter path is visible in the demo too.
    """

    def __init__(self, bootstrap: str, topic: str, agents: int, seed: int, bad_every: int) -> None:
        super().__init__(name="demo-fleet", daemon=True)
        from agentwatch.sdk import Emitter
        from agentwatch.sim.fleet import Fleet

        self.fleet = Fleet(agents, seed=seed, start=datetime.now(UTC))
        self.emitter = Emitter(bootstrap=bootstrap, topic=topic, client_id="agentwatch-demo")
        self.bootstrap = bootstrap
        self.topic = topic
        self.agents = agents
        self.bad_every = bad_every
        self.rng = random.Random(seed)
        self.bad_messages = 0
        self._halt = threading.Event()

    def run(self) -> None:
        from kafka import KafkaProducer

        raw = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=50)
        try:
            while not self._halt.is_set():
                for event in self.fleet.events_until(datetime.now(UTC)):
                    self.emitter.emit(event)
                    if self.bad_every and self.rng.randrange(self.bad_every) == 0:
                        raw.send(self.topic, key=b"misconfigured-agent", value=_malformed(self.rng))
                        self.bad_messages += 1
                self._halt.wait(0.1)
        finally:
            raw.close(timeout=5)
            self.emitter.close(timeout=10)

    def stop(self) -> None:
        self._halt.set()

    def snapshot(self) -> dict[str, Any]:
        stats = self.emitter.stats
        return {
            "agents": self.agents,
            "sent": stats.sent,
            "dropped": stats.dropped_full + stats.oversize,
            "attacks": len(self.fleet.injected),
            "bad_messages": self.bad_messages,
        }


def _malformed(rng: random.Random) -> bytes:
    now = datetime.now(UTC).isoformat()
    samples = [
        b'{"schema_version":"1","event_id":"x","ts":"' + now.encode() + b'","agent_id":',
        b'{"schema_version":"1","event_id":"x","ts":"'
        + now.encode()
        + b'","agent_id":"misconfigured-agent","type":"tool_invocation"}',
        b'{"schema_version":"1","ts":"'
        + now.encode()
        + b'","agent_id":"misconfigured-agent","type":"network"}',
        b'{"schema_version":"1","event_id":"x","ts":"yesterday","agent_id":"misconfigured-agent",'
        b'"type":"network"}',
    ]
    return rng.choice(samples)


def up(
    demo: bool = typer.Option(False, "--demo", help="also run a simulated fleet of agents"),
    agents: int = typer.Option(100, help="agents in the simulated fleet"),
    seed: int = typer.Option(7, help="seed of the simulated fleet"),
    workers: int = typer.Option(1, min=1, help="worker processes (chDB storage allows one)"),
    duration: float = typer.Option(0, help="stop after this many seconds (0: run until Ctrl-C)"),
    data_dir: Path | None = typer.Option(None, help="local state directory (default .agentwatch)"),
    bad_every: int = typer.Option(400, help="demo: one malformed message per N events (0: none)"),
) -> None:
    """Run broker, storage, worker(s) and optionally a simulated fleet, with a live view."""
    settings = settings_or_exit()
    if data_dir is not None:
        settings = settings.model_copy(update={"data_dir": data_dir})
    if workers > 1 and settings.storage_dsn.startswith("chdb:"):
        console.print(
            "[red]chDB storage is opened by one process only:[/red] use --workers 1, "
            "or set AGENTWATCH_STORAGE__DSN to a ClickHouse server to run several workers."
        )
        raise typer.Exit(2)
    stack = Stack(settings, log_dir=settings.data_dir / "logs")
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = signal.signal(signal.SIGTERM, on_signal)
    fleet: DemoFleet | None = None
    try:
        with console.status("starting broker, topics and worker…"):
            stack.start(workers=workers)
        where = "embedded Tansu" if stack.broker else "external Kafka"
        header = (
            f"agentwatch · kafka {stack.bootstrap} ({where}) · "
            f"storage {redacted_dsn(settings.storage_dsn)}"
        )
        if demo:
            fleet = DemoFleet(
                stack.bootstrap, settings.kafka.topics.events, agents, seed, bad_every
            )
            fleet.start()
        _live(stack, fleet, header, duration, stopping)
    except StackError as exc:
        console.print(f"[red]could not start:[/red] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        with console.status("stopping…"):
            if fleet is not None:
                fleet.stop()
                fleet.join(timeout=15)
            final = [s for w in stack.workers if (s := w.stats()) is not None]
            stack.stop()
        if final:
            if not console.is_terminal:
                console.line()  # the last frame of the live view ends without a newline
            console.print(
                f"stopped. events stored {sum(s['events_stored'] for s in final):,}, "
                f"dead letters {sum(s['dead_letters'] for s in final):,}, "
                f"anomalies {sum(s['anomalies'] for s in final):,}; "
                f"data in {settings.data_dir}, logs in {stack.log_dir}"
            )


def _live(
    stack: Stack, fleet: DemoFleet | None, header: str, duration: float, stopping: threading.Event
) -> None:
    rate = Rate()
    started = time.monotonic()
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while not stopping.is_set():
            if duration and time.monotonic() - started >= duration:
                break
            stats = [s for w in stack.workers if (s := w.stats(timeout=1.0)) is not None]
            dead = [w for w in stack.workers if not w.alive]
            if dead:
                raise StackError(f"a worker exited; see {dead[0].log_path}")
            live.update(
                render(
                    header=header,
                    workers=stats,
                    rate=rate.update(sum(int(s.get("events_stored", 0)) for s in stats)),
                    fleet=fleet.snapshot() if fleet else None,
                )
            )
            stopping.wait(0.5)
