"""The benchmark suite: ``python -m benchmarks`` runs each benchmark and prints one table.

=========  ================================================================================
ingest     SDK-shaped batches → broker → one worker → ClickHouse, events/s sustained
naive      the same pipeline built naively (one event per Kafka message, one message per
           worker step), and the ratio of the two
detect     the detection engine alone at 1k / 10k / 100k agents: events/s, model bytes
           per agent
e2e        p50/p99 latency from the SDK call to the anomaly stored and to the webhook
           received, at a fixed load
=========  ================================================================================

``--smoke`` runs every benchmark at a tiny size (what CI runs: it proves the benchmarks
work, the figures mean nothing). ``--only ingest,detect`` picks benchmarks; ``--json`` and
``--markdown`` write the figures to files. Usage::

    .venv/bin/python -m benchmarks                 # the full suite (several minutes)
    .venv/bin/python -m benchmarks --smoke         # about a minute
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks import detect, e2e, ingest
from benchmarks.common import Figure, machine

Suite = Callable[[bool], list[Figure]]


def _ingest(smoke: bool) -> list[Figure]:
    return ingest.run(5_000 if smoke else 200_000, batch=100, agents=100 if smoke else 1000)


def _naive(smoke: bool) -> list[Figure]:
    naive = ingest.run(300 if smoke else 5_000, agents=100 if smoke else 1000, per_event=True)
    batched = ingest.run(5_000 if smoke else 100_000, batch=100, agents=100 if smoke else 1000)
    ratio = batched[-1].value / naive[-1].value if naive[-1].value else math.nan
    return [
        *naive,
        Figure(
            "naive",
            "batched / naive, one worker",
            ratio,
            "x",
            f"{batched[-1].value:,.0f} vs {naive[-1].value:,.0f} events/s",
        ),
    ]


def _detect(smoke: bool) -> list[Figure]:
    sizes = [(1000, 5)] if smoke else [(1000, 100), (10_000, 20), (100_000, 5)]
    return [figure for agents, per_agent in sizes for figure in detect.run(agents, per_agent)]


def _e2e(smoke: bool) -> list[Figure]:
    if smoke:
        return e2e.run(rate=200, agents=20, warm_events=20, plants=3)
    return e2e.run(rate=2000, agents=200, warm_events=120, plants=40)


SUITES: dict[str, Suite] = {
    "ingest": _ingest,
    "naive": _naive,
    "detect": _detect,
    "e2e": _e2e,
}


def markdown(figures: list[Figure], description: str) -> str:
    lines = [
        f"Machine: {description}",
        "",
        "| benchmark | figure | value | note |",
        "|---|---|---|---|",
    ]
    lines += [f"| {f.bench} | {f.name} | {f.formatted()} | {f.note} |" for f in figures]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves they run")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {list(SUITES)}")
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    parser.add_argument("--markdown", type=Path, help="write the figures here as a table")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.only.split(",") if name.strip()] or list(SUITES)
    unknown = [name for name in chosen if name not in SUITES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {list(SUITES)}")

    console = Console(stderr=True)
    description = machine()
    console.print(f"[bold]agentwatch benchmarks[/bold] on {description}")
    figures: list[Figure] = []
    failed: list[str] = []
    for name in chosen:
        console.rule(name)
        started = time.perf_counter()
        try:
            figures += SUITES[name](args.smoke)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - report and run the others
            failed.append(name)
            console.print(f"[red]{name} failed:[/red] {exc!r}")
        console.print(f"{name}: {time.perf_counter() - started:.1f} s")

    table = Table(
        title="agentwatch benchmarks"
        + (" (smoke: sizes too small to mean anything)" if args.smoke else "")
    )
    for column in ("benchmark", "figure", "value", "note"):
        table.add_column(column, justify="right" if column == "value" else "left")
    for figure in figures:
        table.add_row(figure.bench, figure.name, figure.formatted(), figure.note)
    out = Console()
    if not out.is_terminal:
        out = Console(width=160)
    out.print(table)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": description,
                    "smoke": args.smoke,
                    "figures": [asdict(f) for f in figures],
                },
                indent=2,
            )
        )
    if args.markdown:
        args.markdown.write_text(markdown(figures, description))
    if failed:
        console.print(f"[red]failed:[/red] {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
