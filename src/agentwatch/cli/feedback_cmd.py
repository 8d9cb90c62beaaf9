"""``agentwatch feedback``: an analyst's verdict on an anomaly.

``agentwatch feedback benign <anomaly_id> --why "new payment partner"`` looks the anomaly
up, sends its baseline keys (``labels.keys``, e.g. ``destination/host/new.partner.example``)
as a ``benign`` control message on the feedback topic, and waits until the worker that
holds the agent has added them to its baseline and recorded who and why. Until then a
flagged destination stays new however often it is used.
"""

from __future__ import annotations

import json

import typer

from agentwatch.cli.common import console, settings_or_exit
from agentwatch.cli.models_cmd import Backend, BackendError, WorkerUrl, default_who, finish
from agentwatch.schemas.feedback import MAX_KEYS, benign_message

__all__ = ["app"]

app = typer.Typer(help="Analyst feedback on anomalies.", no_args_is_help=True)


@app.command("benign")
def benign(
    anomaly_id: str = typer.Argument(..., help="the anomaly (anomaly_id)"),
    why: str = typer.Option(..., "--why", help="the reason, recorded with the verdict"),
    who: str | None = typer.Option(None, "--who", help="the analyst (default: the login name)"),
    key: list[str] | None = typer.Option(
        None, "--key", help="accept only this key of the anomaly (repeatable; default: all)"
    ),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until the worker applied it"),
    timeout: float = typer.Option(30.0, "--timeout", min=1, help="seconds to wait"),
    worker_url: str | None = WorkerUrl,
) -> None:
    """Mark an anomaly benign: what it flagged joins the agent's baseline."""
    backend = Backend.open(settings_or_exit(), worker_url)
    try:
        anomaly = backend.anomaly(anomaly_id)
    except BackendError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    if anomaly is None:
        console.print(f"[red]no anomaly {anomaly_id}[/red] ({backend.where})")
        raise typer.Exit(1)
    agent_id = str(anomaly["agent_id"])
    labels = anomaly.get("labels") or {}
    keys = str(labels.get("keys") or "").split()
    if not keys:
        console.print(
            f"[red]anomaly {anomaly_id} has nothing to accept[/red]: its detectors "
            f"({', '.join(anomaly.get('detectors') or [anomaly.get('detector', '?')])}) "
            "name no baseline keys (only first-seen destinations, tools and transitions can "
            "be accepted)"
        )
        raise typer.Exit(1)
    if key:
        unknown = [k for k in key if k not in keys]
        if unknown:
            console.print(
                f"[red]not keys of this anomaly:[/red] {' '.join(unknown)} "
                f"(its keys: {' '.join(keys)})"
            )
            raise typer.Exit(2)
        keys = list(dict.fromkeys(key))
    keys = keys[:MAX_KEYS]
    console.print(f"anomaly {anomaly_id}: {anomaly.get('title', '')}")
    console.print(f"accepting for agent {agent_id}: {' '.join(keys)}")
    message = benign_message(agent_id, anomaly_id, keys, who or default_who(), why)
    finish(backend, message, wait, timeout)
    print(
        json.dumps(
            {
                "feedback_id": message.feedback_id,
                "agent_id": agent_id,
                "anomaly_id": anomaly_id,
                "keys": keys,
                "who": message.who,
                "why": message.why,
            }
        )
    )
