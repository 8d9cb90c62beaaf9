"""``agentwatch models``: an agent's model snapshots, its live model, rolling it back.

The commands read through a running worker's HTTP API (with the embedded storage the
worker owns the chDB directory) or, when ``storage.dsn`` names a ClickHouse server, from
ClickHouse directly. Without ``--worker-url`` a local worker is looked for on
``worker.web_port`` and among the workers ``agentwatch up`` started in the data dir; with
none running, the chDB directory is opened directly. Changes (``revert``, and ``feedback
benign``) are control messages on the feedback topic, applied by the worker that holds
the agent.
"""

from __future__ import annotations

import getpass
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import typer
import yaml
from rich.console import Console
from rich.table import Table

from agentwatch.cli.common import console, settings_or_exit
from agentwatch.config import Settings
from agentwatch.schemas.feedback import FeedbackMessage, encode_feedback, revert_message
from agentwatch.storage.client import StorageError, connect, redact_dsn
from agentwatch.storage.snapshots import ModelStore

__all__ = [
    "Backend",
    "BackendError",
    "WorkerUrl",
    "app",
    "default_who",
    "finish",
    "send_control",
    "wait_applied",
]

app = typer.Typer(
    help="Per-agent models: stored snapshots, the live model, revert to a snapshot.",
    no_args_is_help=True,
)

out = Console()  # data on stdout; messages go to the stderr console

HTTP_TIMEOUT_S = 10.0


class BackendError(RuntimeError):
    """The models could not be read (no worker answering, storage unusable)."""


def default_who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER") or "unknown"


@dataclass
class Backend:
    """Reads anomalies, snapshots and feedback through a worker's API or from ClickHouse."""

    settings: Settings
    worker_url: str | None = None  # the API, or None: ClickHouse directly
    bootstrap: str | None = None  # Kafka, from settings or from the local worker's config
    _store: ModelStore | None = field(default=None, repr=False)

    @classmethod
    def open(cls, settings: Settings, worker_url: str | None = None) -> Backend:
        bootstrap = settings.kafka.bootstrap
        if worker_url:
            url = worker_url.rstrip("/")
            if not bootstrap:  # a worker `agentwatch up` started: its config names Kafka
                bootstrap = next((b for u, b in local_workers(settings) if u == url and b), None)
            return cls(settings, url, bootstrap)
        if settings.storage_dsn.split(":", 1)[0].lower() in ("http", "https"):
            return cls(settings, None, bootstrap)
        for url, found_bootstrap in local_workers(settings):
            if _answers(url):
                return cls(settings, url, bootstrap or found_bootstrap)
        return cls(settings, None, bootstrap)

    @property
    def where(self) -> str:
        return self.worker_url or redact_dsn(self.settings.storage_dsn)

    @property
    def direct_chdb(self) -> bool:
        return self.worker_url is None and self.settings.storage_dsn.startswith("chdb:")

    @property
    def store(self) -> ModelStore:
        if self._store is None:
            try:
                self._store = ModelStore.from_settings(
                    connect(self.settings.storage_dsn), self.settings.storage
                )
            except StorageError as exc:
                raise BackendError(
                    f"{exc}. If a worker is running, pass its API with --worker-url "
                    "http://host:port"
                ) from exc
        return self._store

    def _get(self, path: str) -> Any | None:
        url = f"{self.worker_url}{path}"
        try:
            response = httpx.get(url, timeout=HTTP_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise BackendError(f"worker API {url} not answering: {exc}") from exc
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise BackendError(f"worker API {url}: HTTP {response.status_code} {response.text}")
        return response.json()

    def _direct(self, call: Callable[[ModelStore], Any]) -> Any:
        try:
            return call(self.store)
        except StorageError as exc:
            raise BackendError(str(exc)) from exc

    def anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        if self.worker_url:
            found = self._get(f"/agentwatch/anomalies/{quote(anomaly_id, safe='')}/")
            return dict(found) if found else None
        row = self._direct(lambda s: s.anomaly(anomaly_id))
        if row is None:
            return None
        return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}

    def snapshots(self, agent_id: str, limit: int) -> list[dict[str, Any]]:
        if self.worker_url:
            found = self._get(
                f"/agentwatch/models/{quote(agent_id, safe='')}/snapshots/?limit={limit}"
            )
            return list(found["snapshots"]) if found else []
        return [s.info() for s in self._direct(lambda s: s.snapshots(agent_id, limit))]

    def snapshot(self, agent_id: str, snapshot_id: str) -> dict[str, Any] | None:
        if self.worker_url:
            found = self._get(
                f"/agentwatch/models/{quote(agent_id, safe='')}/snapshots/"
                f"{quote(snapshot_id, safe='')}/"
            )
            return dict(found) if found else None
        snapshot = self._direct(lambda s: s.snapshot(agent_id, snapshot_id))
        return snapshot.info() if snapshot else None

    def feedback(self, feedback_id: str) -> dict[str, Any] | None:
        """Whether the control message ``feedback_id`` was applied (or rejected)."""
        if self.worker_url:
            found = self._get(f"/agentwatch/feedback/{quote(feedback_id, safe='')}/")
            return dict(found) if found else None
        rows = self._direct(lambda s: s.feedback(feedback_id=feedback_id, limit=1))
        return {"status": "applied", **rows[0].as_dict()} if rows else None

    def status(self, agent_id: str) -> dict[str, Any] | None:
        if not self.worker_url:
            raise BackendError("the live model is only known to a running worker: no worker found")
        found = self._get(f"/agentwatch/models/{quote(agent_id, safe='')}/")
        return dict(found) if found else None


def local_workers(settings: Settings) -> list[tuple[str, str | None]]:
    """Candidate local worker APIs: the configured port, then those ``agentwatch up`` (or
    the embedded stack) started in the data dir (their config files in ``<data_dir>/run``),
    newest first; each with the Kafka bootstrap it uses, if known."""
    host = settings.worker.web_host
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host
    found: list[tuple[str, str | None]] = []
    run_dir = Path(settings.data_dir) / "run"
    try:
        files = sorted(run_dir.glob("worker-*.yaml"), key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:
        files = []
    for path in files:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
            worker = data.get("worker") or {}
            port = int(worker["web_port"])
            bootstrap = (data.get("kafka") or {}).get("bootstrap")
        except (OSError, ValueError, KeyError, TypeError, AttributeError, yaml.YAMLError):
            continue
        url = f"http://127.0.0.1:{port}"
        if url not in (u for u, _ in found):
            found.append((url, str(bootstrap) if bootstrap else None))
    configured = f"http://{host}:{settings.worker.web_port}"
    if configured not in (u for u, _ in found):
        found.insert(0, (configured, None))
    return found


def _answers(url: str) -> bool:
    """Whether a worker with the models API answers at ``url``."""
    try:
        return httpx.get(f"{url}/agentwatch/models/", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def send_control(backend: Backend, message: FeedbackMessage) -> None:
    """Produce ``message`` to the feedback topic, keyed by agent (waits for the broker)."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError

    if not backend.bootstrap:
        console.print(
            "[red]no Kafka bootstrap configured.[/red] Set AGENTWATCH_KAFKA__BOOTSTRAP=host:port "
            "(or run this next to `agentwatch up`)."
        )
        raise typer.Exit(2)
    topic = backend.settings.kafka.topics.feedback
    try:
        producer = KafkaProducer(
            bootstrap_servers=backend.bootstrap, client_id="agentwatch-cli", acks="all"
        )
    except KafkaError as exc:
        console.print(f"[red]cannot reach Kafka at {backend.bootstrap}:[/red] {exc}")
        raise typer.Exit(1) from exc
    try:
        producer.send(
            topic, key=message.agent_id.encode("utf-8"), value=encode_feedback(message)
        ).get(timeout=30)
    except KafkaError as exc:
        console.print(f"[red]sending to {topic} failed:[/red] {exc}")
        raise typer.Exit(1) from exc
    finally:
        producer.close(timeout=10)


def wait_applied(backend: Backend, feedback_id: str, timeout_s: float) -> dict[str, Any] | None:
    """The worker's result for ``feedback_id`` once it has one (None on timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            result = backend.feedback(feedback_id)
        except BackendError:
            result = None
        if result is not None or time.monotonic() >= deadline:
            return result
        time.sleep(0.3)


def _fail(exc: Exception) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}")
    return typer.Exit(1)


def finish(backend: Backend, message: FeedbackMessage, wait: bool, timeout_s: float) -> None:
    """Send ``message``, then report what the worker did with it."""
    send_control(backend, message)
    console.print(f"sent {message.action} {message.feedback_id} for agent {message.agent_id}")
    if not wait:
        return
    if backend.direct_chdb:
        console.print("no worker is running: it is applied when a worker starts.")
        return
    result = wait_applied(backend, message.feedback_id, timeout_s)
    if result is None:
        console.print(
            f"[yellow]not applied within {timeout_s:.0f}s[/yellow] (is a worker consuming "
            f"{backend.settings.kafka.topics.feedback}?); it is applied when one does."
        )
        raise typer.Exit(1)
    if result.get("status") != "applied":
        console.print(f"[red]rejected by the worker:[/red] {result.get('detail', result)}")
        raise typer.Exit(1)
    console.print(f"[green]applied[/green] by the worker ({backend.where})")


# -- commands -----------------------------------------------------------------------------

WorkerUrl = typer.Option(
    None,
    "--worker-url",
    help="a worker's API (http://host:port); default: a local worker, else storage directly",
)


@app.command("snapshots")
def snapshots(
    agent_id: str = typer.Argument(..., help="the agent"),
    limit: int = typer.Option(50, "--limit", min=1, max=1000, help="newest first, at most"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per line"),
    worker_url: str | None = WorkerUrl,
) -> None:
    """List the stored model snapshots of an agent, newest first."""
    backend = Backend.open(settings_or_exit(), worker_url)
    try:
        rows = backend.snapshots(agent_id, limit)
    except BackendError as exc:
        raise _fail(exc) from exc
    if as_json:
        for row in rows:
            print(json.dumps(row))
        return
    if not rows:
        console.print(f"no snapshots of agent {agent_id} ({backend.where})")
        return
    table = Table(title=f"model snapshots of {agent_id}", title_justify="left")
    for column in ("snapshot_id", "taken (UTC)", "latest event", "reason"):
        table.add_column(column)
    for column in ("events", "bytes", "part."):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            row["snapshot_id"],
            _short_time(row["ts"]),
            _short_time(row.get("event_ts")),
            row["reason"],
            f"{row['events']:,}",
            f"{row['size_bytes']:,}",
            str(row["partition"]),
        )
    out.print(table)


@app.command("status")
def status(
    agent_id: str = typer.Argument(..., help="the agent"),
    worker_url: str | None = WorkerUrl,
) -> None:
    """Show the live model of an agent in the worker that holds it (JSON)."""
    backend = Backend.open(settings_or_exit(), worker_url)
    try:
        found = backend.status(agent_id)
    except BackendError as exc:
        raise _fail(exc) from exc
    if found is None:
        console.print(f"the worker at {backend.where} holds no model of agent {agent_id}")
        raise typer.Exit(1)
    print(json.dumps(found, indent=2))


@app.command("revert")
def revert(
    agent_id: str = typer.Argument(..., help="the agent"),
    to: str = typer.Option(..., "--to", help="the snapshot_id to go back to (see `snapshots`)"),
    why: str = typer.Option(..., "--why", help="the reason, recorded with the change"),
    who: str | None = typer.Option(None, "--who", help="who asks (default: the login name)"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until the worker applied it"),
    timeout: float = typer.Option(30.0, "--timeout", min=1, help="seconds to wait"),
    worker_url: str | None = WorkerUrl,
) -> None:
    """Roll an agent's model back to a stored snapshot (e.g. undo a poisoned baseline)."""
    backend = Backend.open(settings_or_exit(), worker_url)
    try:
        target = backend.snapshot(agent_id, to)
    except BackendError as exc:
        raise _fail(exc) from exc
    if target is None:
        console.print(
            f"[red]agent {agent_id} has no snapshot {to}[/red] "
            f"(see `agentwatch models snapshots {agent_id}`)"
        )
        raise typer.Exit(1)
    message = revert_message(agent_id, to, who or default_who(), why)
    console.print(
        f"reverting {agent_id} to snapshot {to} (taken {_short_time(target['ts'])}, "
        f"{target['events']:,} events)"
    )
    finish(backend, message, wait, timeout)


def _short_time(value: Any) -> str:
    if not value:
        return "-"
    return str(value).replace("T", " ")[:23]
