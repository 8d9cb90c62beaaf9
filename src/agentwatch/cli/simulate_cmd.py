"""``agentwatch simulate``: a seeded fleet with labelled scenarios, to a file or to Kafka."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from agentwatch.cli.common import console, settings_or_exit

if TYPE_CHECKING:
    from agentwatch.sim.engine import Simulation
    from agentwatch.sim.output import EventSink


def _parse_start(text: str) -> datetime:
    if text.strip().lower() == "now":
        return _now()
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T"))
    except ValueError:
        raise typer.BadParameter(f"not an RFC 3339 time: {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _list_scenarios() -> None:
    from agentwatch.sim.scenarios import SCENARIOS

    table = Table(title="scenarios", show_lines=False)
    table.add_column("name")
    table.add_column("attack")
    table.add_column("what happens")
    for name, cls in sorted(SCENARIOS.items(), key=lambda x: (not x[1].attack, x[0])):
        table.add_row(name, "yes" if cls.attack else "no (hard negative)", cls.summary)
    console.print(table)


def simulate(
    agents: int = typer.Option(50, "--agents", "-n", min=1, help="agents in the fleet"),
    hours: float = typer.Option(24.0, "--hours", min=0.001, help="simulated duration"),
    start: str | None = typer.Option(
        None,
        "--start",
        help="start of simulated time, RFC 3339 or 'now' (default: 2026-01-05T00:00Z for "
        "--speed max to a file; now for realtime or a factor; now − hours to Kafka)",
    ),
    seed: int = typer.Option(1, "--seed", help="seed: same seed and options, same output"),
    speed: str = typer.Option("max", "--speed", help="max, realtime, or a factor such as 60"),
    out: Path | None = typer.Option(
        None, "--out", "-o", dir_okay=False, help="events file, .jsonl or .jsonl.gz"
    ),
    truth: Path | None = typer.Option(
        None, "--truth", dir_okay=False, help="ground truth (default: <out stem>.truth.jsonl)"
    ),
    bootstrap: str | None = typer.Option(
        None,
        "--bootstrap",
        help="Kafka host:port (default: settings, when there is no --out; with --out: both)",
    ),
    topic: str | None = typer.Option(None, "--topic", help="Kafka topic (default: settings)"),
    scenarios: str = typer.Option(
        "all", "--scenarios", help="all, attacks, benign, none or name[=N],... (--list-scenarios)"
    ),
    count: int = typer.Option(1, "--count", min=0, help="placements of each chosen scenario"),
    groups: str | None = typer.Option(
        None, "--groups", help="peer groups, comma-separated (default: all four)"
    ),
    warmup: float | None = typer.Option(
        None, "--warmup", min=0, help="hours before the first scenario (default: 20 %, ≤ 2 h)"
    ),
    list_scenarios: bool = typer.Option(False, "--list-scenarios", help="list and exit"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="show a progress bar"),
) -> None:
    """Simulate a fleet of agents with labelled attack and benign scenarios."""
    from agentwatch.sim import (
        DEFAULT_START,
        SimConfig,
        Simulation,
        select,
        truth_path,
        write_truth,
    )
    from agentwatch.sim.output import JsonlSink, KafkaSink, SinkError, parse_speed

    if list_scenarios:
        _list_scenarios()
        return
    try:
        pace = parse_speed(speed)
        chosen = select(scenarios, count)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if out is not None and not (out.name.endswith(".jsonl") or out.name.endswith(".jsonl.gz")):
        raise typer.BadParameter("--out must end in .jsonl or .jsonl.gz")
    kafka_bootstrap = bootstrap
    kafka_topic = topic
    if out is None or bootstrap is not None:
        settings = settings_or_exit()
        kafka_bootstrap = bootstrap or settings.kafka.bootstrap
        kafka_topic = topic or settings.kafka.topics.events
        if not kafka_bootstrap:
            console.print(
                "[red]nowhere to send events:[/red] give --out FILE, or --bootstrap host:port "
                "(or set AGENTWATCH_KAFKA__BOOTSTRAP)."
            )
            raise typer.Exit(2)
    if start is not None:
        began = _parse_start(start)
    elif pace is not None:
        began = _now()
    elif out is None:
        began = _now() - timedelta(hours=hours)
    else:
        began = DEFAULT_START
    try:
        config = SimConfig(
            agents=agents,
            hours=hours,
            seed=seed,
            start=began,
            scenarios=chosen,
            groups=tuple(g.strip() for g in groups.split(",") if g.strip()) if groups else (),
            warmup_hours=warmup,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    truth_file = truth if truth is not None else (truth_path(out) if out else Path("truth.jsonl"))

    sim = Simulation(config)
    for note in sim.skipped:
        console.print(f"[yellow]skipped[/yellow] {note}")
    sinks: list[EventSink] = []
    if out is not None:
        # Paced runs flush each tick so the file can be followed (gzip streams: block by block).
        sinks.append(JsonlSink(out, flush_each=pace is not None and out.suffix != ".gz"))
    kafka: KafkaSink | None = None
    if kafka_bootstrap and kafka_topic:
        kafka = KafkaSink(kafka_bootstrap, kafka_topic)
        sinks.append(kafka)
    where = " and ".join(
        ([str(out)] if out else []) + ([f"kafka {kafka_bootstrap} {kafka_topic}"] if kafka else [])
    )
    console.print(
        f"simulating {agents} agents for {hours:g} h from {config.start.isoformat()} "
        f"(seed {seed}, speed {speed}) → {where}"
    )
    began_wall = time.monotonic()
    interrupted = False
    try:
        _run(sim, sinks, pace, progress)
    except KeyboardInterrupt:
        interrupted = True
    except SinkError as exc:
        console.print(f"[red]{exc}[/red]")
        interrupted = True
    finally:
        with console.status("flushing…"):
            for sink in sinks:
                sink.close()
        records = sim.truth()
        write_truth(truth_file, records)
    elapsed = time.monotonic() - began_wall
    total = sim.emitted
    by_name: dict[str, int] = {}
    for record in records:
        by_name[record.scenario] = by_name.get(record.scenario, 0) + 1
    summary = ", ".join(f"{name} {n}" for name, n in sorted(by_name.items())) or "none"
    console.print(
        f"{'stopped early: ' if interrupted else ''}{total:,} events in {elapsed:.1f} s "
        f"({total / max(elapsed, 1e-9):,.0f} events/s) to {where}"
    )
    console.print(f"ground truth: {len(records)} scenario instances ({summary}) → {truth_file}")
    if kafka is not None and kafka.lost:
        console.print(f"[red]{kafka.lost:,} events did not reach Kafka[/red]")
        raise typer.Exit(1)
    if interrupted:
        raise typer.Exit(130)


def _run(sim: Simulation, sinks: list[EventSink], pace: float | None, show: bool) -> int:
    from agentwatch.sim.output import drive

    total_s = (sim.end - sim.start).total_seconds()
    if not show:
        return drive(sim, sinks, speed=pace)
    columns = (
        TextColumn("[bold]simulating"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[clock]}"),
        TextColumn("{task.fields[events]:>12,} events"),
        TextColumn("{task.fields[rate]:>9,.0f}/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    began = time.monotonic()
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("simulating", total=total_s, clock="", events=0, rate=0.0)

        def update(s: Simulation, n: int) -> None:
            done_s = (s.last_t - s.start).total_seconds()
            rate = s.emitted / max(time.monotonic() - began, 1e-9)
            clock = s.last_t.strftime("%Y-%m-%d %H:%M")
            bar.update(task, completed=done_s, clock=clock, events=s.emitted, rate=rate)

        return drive(sim, sinks, speed=pace, on_progress=update)
