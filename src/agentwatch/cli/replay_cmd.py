"""``agentwatch replay``: the live detection engine over a file of events, offline."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from agentwatch.cli.common import console, settings_or_exit


def replay(
    events_file: Path = typer.Argument(..., exists=True, dir_okay=False, help="events .jsonl[.gz]"),
    out: Path = typer.Option(..., "--out", "-o", help="scores .jsonl to write"),
    all_events: bool = typer.Option(
        False, "--all", help="a line for every event, not only anomalies"
    ),
) -> None:
    """Score a JSONL file of schema-v1 events with exactly the worker's detection code."""
    from agentwatch.replay import ReplayReport, read_events
    from agentwatch.replay import replay as run_replay

    settings = settings_or_exit()
    report = ReplayReport()
    size = events_file.stat().st_size
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        reading = progress.add_task("reading", total=None if events_file.suffix == ".gz" else size)
        events = read_events(events_file, report, lambda n: progress.advance(reading, n))
        progress.remove_task(reading)
        scoring = progress.add_task("scoring", total=len(events))
        with open(out, "w", encoding="utf-8") as fh:
            run_replay(
                events,
                settings.detect,
                fh,
                all_events=all_events,
                report=report,
                progress=lambda n: progress.advance(scoring, n),
            )
    for sample in report.reject_samples:
        console.print(f"[yellow]skipped[/yellow] {sample}")
    console.print(
        f"replayed {report.events:,} events ({report.rejected:,} invalid lines skipped): "
        f"{report.anomalies:,} anomalies; wrote {report.lines_written:,} lines to {out}"
    )
