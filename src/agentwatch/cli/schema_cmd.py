"""``agentwatch schema``: print or export the published JSON Schemas."""

from __future__ import annotations

from pathlib import Path

import typer

from agentwatch.cli.common import console

NAMES = ("agent_event.v1", "anomaly.v1")


def schema(
    name: str = typer.Argument("agent_event.v1", help=f"one of {', '.join(NAMES)}"),
    out: Path | None = typer.Option(None, "--out", "-o", help="write to this file or directory"),
) -> None:
    """Print the JSON Schema (2020-12) of a wire format, or export it with --out."""
    from agentwatch.schemas.resources import schema_text

    if name not in NAMES:
        console.print(f"[red]unknown schema {name!r}[/red]; known: {', '.join(NAMES)}")
        raise typer.Exit(2)
    text = schema_text(name)
    if out is None:
        typer.echo(text, nl=not text.endswith("\n"))
        return
    target = out / f"{name}.json" if out.is_dir() else out
    target.write_text(text, encoding="utf-8")
    console.print(f"wrote {target}")
