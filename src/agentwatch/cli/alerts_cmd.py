"""``agentwatch alerts``: run the alert dispatcher; list, show and acknowledge alerts; silences.

While a dispatcher runs, the commands talk to its HTTP API (``--api``, default from the
alerting config, else ``http://127.0.0.1:9095``): the dispatcher owns its storage (chDB
allows one process per data dir). When no dispatcher answers, they read and write the
alert tables directly; a running dispatcher picks up silences and acknowledgements made
that way at its next start.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from agentwatch.cli.common import console, require_bootstrap, settings_or_exit, setup_logging

app = typer.Typer(
    name="alerts",
    help="Alerting: the dispatcher, alerts, acknowledgements and silences.",
    no_args_is_help=True,
)
silence_app = typer.Typer(
    name="silence", help="Create, list and expire silences.", no_args_is_help=True
)
app.add_typer(silence_app, name="silence")

out = Console()
T = TypeVar("T")

API_ENV = "AGENTWATCH_ALERTS_API"
TOKEN_ENV = "AGENTWATCH_ALERTS_API_TOKEN"

ConfigOption = typer.Option(
    None, "--config", "-c", help="alerting YAML (default: $AGENTWATCH_ALERTS_CONFIG)"
)
ApiOption = typer.Option(
    None, "--api", help=f"dispatcher API URL (default: ${API_ENV}, else from the config)"
)
JsonOption = typer.Option(False, "--json", help="print JSON")


def _alert_settings(config: Path | None) -> Any:
    from agentwatch.alerts.config import ConfigError, load_alert_settings

    try:
        return load_alert_settings(config)
    except ConfigError as exc:
        console.print(f"[red]alerting configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc


def _client(api: str | None, config: Path | None) -> Any:
    from agentwatch.alerts.api import ApiClient

    alert_settings = _alert_settings(config)
    url = api or os.environ.get(API_ENV)
    if not url:
        host = alert_settings.api.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        url = f"http://{host}:{alert_settings.api.port}"
    token = os.environ.get(TOKEN_ENV) or (
        alert_settings.api.token.get_secret_value() if alert_settings.api.token else None
    )
    return ApiClient(url, token=token), alert_settings


def _call(
    api: str | None,
    config: Path | None,
    remote: Callable[[Any], T],
    direct: Callable[[Any], T],
) -> T:
    """``remote(client)`` through the API, or ``direct(store)`` if no dispatcher answers."""
    from agentwatch.alerts.api import ApiError

    client, alert_settings = _client(api, config)
    try:
        return remote(client)
    except ApiError as exc:
        if not exc.unreachable:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1 if exc.status != 404 else 3) from exc
        console.print(f"[yellow]{exc}; using the alert storage directly[/yellow]")
    finally:
        client.close()
    from agentwatch.alerts.service import open_store
    from agentwatch.storage.client import StorageError

    settings = settings_or_exit()
    try:
        store = open_store(settings, alert_settings, migrate=True)
    except StorageError as exc:
        console.print(f"[red]cannot open the alert storage:[/red] {exc}")
        raise typer.Exit(1) from exc
    try:
        return direct(store)
    finally:
        store.client.close()


def _print_json(data: Any) -> None:
    out.print_json(json.dumps(data, default=str))


def _who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# --- run ----------------------------------------------------------------------------------


@app.command("run")
def run(
    config: Path | None = ConfigOption,
    loglevel: str = typer.Option("info", help="debug, info, warning or error"),
) -> None:
    """Run the alert dispatcher: anomalies → route, silence, group → PagerDuty, Slack, webhooks."""
    from agentwatch.alerts.receivers import validate_receivers
    from agentwatch.alerts.service import serve
    from agentwatch.storage.client import StorageError

    setup_logging(loglevel)
    settings = settings_or_exit()
    bootstrap = require_bootstrap(settings)
    alert_settings = _alert_settings(config)
    try:
        validate_receivers(alert_settings)
    except ValueError as exc:
        console.print(f"[red]alerting configuration error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if not alert_settings.routes and not alert_settings.default_receivers:
        console.print(
            "[yellow]no routes and no default_receivers: nothing will be notified[/yellow]"
        )

    def ready(dispatcher: Any, port: int) -> None:
        api = f"http://{alert_settings.api.host}:{port}/" if port else "disabled"
        console.print(
            f"alerts dispatcher ready: kafka {bootstrap}, "
            f"{len(alert_settings.receivers)} receivers, {len(alert_settings.routes)} routes, "
            f"API {api}"
        )

    try:
        asyncio.run(serve(settings, alert_settings, bootstrap, on_ready=ready))
    except StorageError as exc:
        console.print(f"[red]storage error:[/red] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


# --- alerts ---------------------------------------------------------------------------------


def _alerts_direct(status: str | None, limit: int) -> Callable[[Any], list[dict[str, Any]]]:
    from agentwatch.alerts.api import alert_dict

    def direct(store: Any) -> list[dict[str, Any]]:
        return [alert_dict(s) for s in store.list_alerts(status, limit)]

    return direct


@app.command("list")
def list_alerts(
    status: str = typer.Option("all", help="firing, resolved or all"),
    limit: int = typer.Option(50, min=1, max=1000),
    as_json: bool = JsonOption,
    api: str | None = ApiOption,
    config: Path | None = ConfigOption,
) -> None:
    """List alerts, newest first."""
    wanted = None if status == "all" else status
    if wanted not in (None, "firing", "resolved"):
        console.print("[red]--status must be firing, resolved or all[/red]")
        raise typer.Exit(2)
    alerts = _call(api, config, lambda c: c.alerts(wanted, limit), _alerts_direct(wanted, limit))
    if as_json:
        _print_json(alerts)
        return
    table = Table("status", "ack", "severity", "score", "anomalies", "group", "last anomaly")
    table.add_column("id", no_wrap=True, min_width=16)
    for a in alerts:
        group = ", ".join(f"{k}={v}" for k, v in a["group_labels"].items())
        table.add_row(
            a["status"],
            a["acked_by"] or "",
            a["severity"],
            f"{a['max_score']:.1f}",
            str(a["anomaly_count"]),
            group,
            a["last_anomaly_at"] or "",
            a["id"],
        )
    out.print(table)


@app.command("show")
def show(
    alert_id: str = typer.Argument(..., help="alert id (or a unique prefix)"),
    as_json: bool = JsonOption,
    api: str | None = ApiOption,
    config: Path | None = ConfigOption,
) -> None:
    """Show one alert: state, anomalies and every notification attempt."""
    from agentwatch.alerts.api import alert_dict

    def direct(store: Any) -> dict[str, Any]:
        state = store.get_alert(alert_id)
        if state is None:
            console.print(f"[red]no alert {alert_id}[/red]")
            raise typer.Exit(3)
        body = alert_dict(state, full=True)
        body["notification_attempts"] = store.notifications_of(state.alert_id)
        return body

    alert = _call(api, config, lambda c: c.alert(alert_id), direct)
    if as_json:
        _print_json(alert)
        return
    out.print(
        f"[bold]{alert['id']}[/bold]  {alert['status']}  [{alert['severity']}]  {alert['title']}"
    )
    for key in (
        "route",
        "receivers",
        "group_labels",
        "anomaly_count",
        "folded",
        "max_score",
        "started_at",
        "last_anomaly_at",
        "resolved_at",
        "acked_by",
        "ack_comment",
    ):
        out.print(f"  {key}: {alert.get(key)}")
    table = Table("ts", "receiver", "kind", "attempt", "outcome", "status", "reason")
    for n in alert.get("notification_attempts", []):
        table.add_row(
            str(n["ts"]),
            n["receiver"],
            n["kind"],
            str(n["attempt"]),
            n["outcome"],
            str(n["status_code"] or ""),
            n["reason"],
        )
    out.print(table)


@app.command("ack")
def ack(
    alert_id: str = typer.Argument(..., help="alert id (or a unique prefix)"),
    by: str | None = typer.Option(None, "--by", help="who acknowledges (default: $USER)"),
    comment: str = typer.Option("", "--comment", "-m"),
    api: str | None = ApiOption,
    config: Path | None = ConfigOption,
) -> None:
    """Acknowledge an alert: no more repeat notifications; PagerDuty and Slack are told."""
    who = _who(by)

    def direct(store: Any) -> dict[str, Any]:
        from dataclasses import replace

        from agentwatch.alerts.api import alert_dict

        state = store.get_alert(alert_id)
        if state is None:
            console.print(f"[red]no alert {alert_id}[/red]")
            raise typer.Exit(3)
        now = datetime.now(UTC)
        acked = replace(state, acked_by=who, acked_at=now, ack_comment=comment, updated_at=now)
        store.upsert_alerts([acked])
        return alert_dict(acked)

    alert = _call(api, config, lambda c: c.ack(alert_id, who, comment), direct)
    console.print(f"alert {alert['id']} acknowledged by {alert['acked_by']}")


@app.command("status")
def status(api: str | None = ApiOption, config: Path | None = ConfigOption) -> None:
    """The running dispatcher's counters, groups and receivers."""
    from agentwatch.alerts.api import ApiError

    client, _ = _client(api, config)
    try:
        _print_json(client.status())
    except ApiError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        client.close()


@app.command("dead-letters")
def dead_letters(
    limit: int = typer.Option(50, min=1, max=1000),
    as_json: bool = JsonOption,
    api: str | None = ApiOption,
    config: Path | None = ConfigOption,
) -> None:
    """Notifications that were not delivered, newest first, with the reason."""
    rows = _call(api, config, lambda c: c.dead_letters(limit), lambda s: s.dead_letters(limit))
    if as_json:
        _print_json(rows)
        return
    table = Table("ts", "receiver", "kind", "outcome", "attempts", "alert", "reason")
    for r in rows:
        table.add_row(
            str(r["ts"]),
            r["receiver"],
            r["kind"],
            r["outcome"],
            str(r["attempts"]),
            r["alert_id"],
            r["reason"],
        )
    out.print(table)


# --- silences ---------------------------------------------------------------------------------


@silence_app.command("add")
def silence_add(
    matchers: list[str] = typer.Argument(
        ..., help='label matchers: agent_id="billing-7" detector=~"new_.*" severity!="info"'
    ),
    duration: str = typer.Option("2h", "--duration", "-d", help="e.g. 30m, 2h, 1d"),
    comment: str = typer.Option(..., "--comment", "-m", help="why (required)"),
    by: str | None = typer.Option(None, "--by", help="who (default: $USER)"),
    starts_at: str | None = typer.Option(None, help="RFC 3339 start (default: now)"),
    as_json: bool = JsonOption,
    api: str | None = ApiOption,
    config: Path | None = ConfigOption,
) -> None:
    """Silence the alerts matching every matcher, for a time."""
    from agentwatch.alerts.config import parse_duration
    from agentwatch.alerts.silences import SilenceError, new_silence

    who = _who(by)
    try:
        seconds = parse_duration(duration)
        start = datetime.fromisoformat(starts_at.replace("Z", "+00:00")) if starts_at else None
    except ValueError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    body = {
        "matchers": matchers,
        "duration": seconds,
        "created_by": who,
        "comment": comment,
        "starts_at": start.isoformat() if start else None,
    }

    def direct(store: Any) -> dict[str, Any]:
        try:
            silence = new_silence(
                matchers,
                created_by=who,
                comment=comment,
                now=datetime.now(UTC),
                duration_s=seconds,
                starts_at=start,
            )
        except ValueError as exc:
            console.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from exc
        store.put_silences([silence])
        return silence.as_dict()

    try:
        silence = _call(api, config, lambda c: c.add_silence(body), direct)
    except SilenceError as exc:  # pragma: no cover - raised through direct()
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from exc
    if as_json:
        _print_json(silence)
        return
    console.print(f"silence {silence['id']} until {silence['ends_at']}")
    out.print(silence["id"])


@silence_app.command("list")
def silence_list(
    show_all: bool = typer.Option(False, "--all", help="include expired silences"),
    as_json: bool = JsonOption,
    api: str | None = ApiOption,
    config: Path | None = ConfigOption,
) -> None:
    """List silences (active and pending; ``--all`` adds expired ones)."""

    def direct(store: Any) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [s.as_dict(now) for s in store.silences()]

    silences = _call(api, config, lambda c: c.silences(), direct)
    if not show_all:
        silences = [s for s in silences if s["state"] != "expired"]
    if as_json:
        _print_json(silences)
        return
    table = Table("id", "state", "matchers", "ends", "by", "comment")
    for s in silences:
        table.add_row(
            s["id"],
            s["state"],
            " ".join(s["matchers"]),
            s["ends_at"],
            s["created_by"],
            s["comment"],
        )
    out.print(table)


@silence_app.command("expire")
def silence_expire(
    silence_id: str = typer.Argument(...),
    api: str | None = ApiOption,
    config: Path | None = ConfigOption,
) -> None:
    """End a silence now."""

    def direct(store: Any) -> dict[str, Any]:
        now = datetime.now(UTC)
        for silence in store.silences():
            if silence.silence_id == silence_id:
                expired = silence.expired(now)
                store.put_silences([expired])
                result: dict[str, Any] = expired.as_dict(now)
                return result
        console.print(f"[red]no silence {silence_id}[/red]")
        raise typer.Exit(3)

    silence = _call(api, config, lambda c: c.expire_silence(silence_id), direct)
    console.print(f"silence {silence['id']} expired ({silence['ends_at']})")
