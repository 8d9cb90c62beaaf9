"""The live terminal view of ``agentwatch up``: throughput, agents, dead letters, anomalies."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

SEVERITY_STYLE = {
    "critical": "bold white on red",
    "high": "bold red",
    "medium": "yellow",
    "low": "cyan",
    "info": "dim",
}


@dataclass
class Rate:
    """Events per second from successive readings of a counter."""

    last_value: int = 0
    last_time: float = field(default_factory=time.monotonic)
    value: float = 0.0

    def update(self, counter: int) -> float:
        now = time.monotonic()
        elapsed = now - self.last_time
        if elapsed >= 0.5:
            self.value = max(0.0, (counter - self.last_value) / elapsed)
            self.last_value, self.last_time = counter, now
        return self.value


def _sum(workers: list[dict[str, Any]], key: str) -> int:
    return sum(int(w.get(key, 0)) for w in workers)


def render(
    *,
    header: str,
    workers: list[dict[str, Any]],
    rate: float,
    fleet: dict[str, Any] | None,
) -> Group:
    summary = Table.grid(padding=(0, 3))
    for _ in range(6):
        summary.add_column(justify="right")
    dead = _sum(workers, "dead_letters")
    summary.add_row(
        Text("events/s", style="dim"),
        Text("events stored", style="dim"),
        Text("agents", style="dim"),
        Text("dead letters", style="dim"),
        Text("anomalies", style="dim"),
        Text("workers up", style="dim"),
    )
    summary.add_row(
        Text(f"{rate:,.0f}", style="bold green"),
        f"{_sum(workers, 'events_stored'):,}",
        f"{_sum(workers, 'agents'):,}",
        Text(f"{dead:,}", style="bold yellow" if dead else ""),
        Text(
            f"{_sum(workers, 'anomalies'):,}",
            style="bold red" if _sum(workers, "anomalies") else "",
        ),
        f"{len(workers)}",
    )
    reasons: dict[str, int] = {}
    for worker in workers:
        for reason, count in worker.get("dead_letters_by_reason", {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
    lines: list[Any] = [summary]
    if reasons:
        lines.append(
            Text(
                "dead letters by reason: "
                + ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())),
                style="yellow",
            )
        )
    if fleet:
        lines.append(
            Text(
                f"simulated fleet: {fleet.get('agents', 0)} agents, "
                f"{fleet.get('sent', 0):,} events sent, {fleet.get('dropped', 0):,} dropped, "
                f"{fleet.get('attacks', 0)} exfiltrations injected, "
                f"{fleet.get('bad_messages', 0)} malformed messages sent",
                style="dim",
            )
        )
    anomalies = sorted(
        (a for w in workers for a in w.get("recent_anomalies", [])),
        key=lambda a: a.get("ts", ""),
        reverse=True,
    )[:10]
    table = Table(title="latest anomalies", expand=True, title_justify="left")
    table.add_column("event time", no_wrap=True)
    table.add_column("agent", no_wrap=True)
    table.add_column("score", justify="right")
    table.add_column("detector", no_wrap=True)
    table.add_column("explanation")
    for anomaly in anomalies:
        severity = anomaly.get("severity", "info")
        table.add_row(
            str(anomaly.get("ts", ""))[11:23],
            anomaly.get("agent_id", ""),
            Text(
                f"{anomaly.get('score', 0):.0f} {severity}", style=SEVERITY_STYLE.get(severity, "")
            ),
            anomaly.get("detector", ""),
            anomaly.get("explanation", ""),
        )
    if not anomalies:
        table.add_row("", "", "", "", Text("none yet", style="dim"))
    lines.append(table)
    lines.append(Text("Ctrl-C stops everything", style="dim"))
    return Group(Panel(Group(*lines), title=header, title_align="left"))
