"""Helpers shared by the commands."""

from __future__ import annotations

import logging

import typer
from pydantic import ValidationError
from rich.console import Console

from agentwatch.config import Settings, load_settings

console = Console(stderr=True)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except (ValidationError, OSError, ValueError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def require_bootstrap(settings: Settings) -> str:
    if not settings.kafka.bootstrap:
        console.print(
            "[red]no Kafka bootstrap configured.[/red] Set AGENTWATCH_KAFKA__BOOTSTRAP=host:port, "
            "or run `agentwatch up` to start the embedded broker."
        )
        raise typer.Exit(2)
    return settings.kafka.bootstrap


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
