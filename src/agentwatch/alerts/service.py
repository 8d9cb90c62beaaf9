"""Running a dispatcher: storage, migrations, Kafka, API, signals."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable

from agentwatch.alerts.api import ApiServer
from agentwatch.alerts.config import AlertSettings
from agentwatch.alerts.dispatcher import Dispatcher
from agentwatch.alerts.receivers import validate_receivers
from agentwatch.alerts.store import AlertStore, alerts_storage
from agentwatch.config import Settings
from agentwatch.storage.client import connect, redact_dsn
from agentwatch.storage.migrate import apply_migrations

__all__ = ["open_store", "serve", "tune_gc"]

log = logging.getLogger("agentwatch.alerts")


def open_store(settings: Settings, alert_settings: AlertSettings, *, migrate: bool) -> AlertStore:
    """Connect to the alert tables (see :func:`~agentwatch.alerts.store.alerts_storage`)."""
    dsn, storage = alerts_storage(settings, alert_settings)
    client = connect(dsn)
    if migrate:
        apply_migrations(client, storage)
    log.info("alert storage: %s, database %s", redact_dsn(dsn), storage.database)
    return AlertStore(client, storage.database)


#: Allocations between young-generation collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Garbage collection for a long-running dispatcher process.

    The state loaded at start (and the modules, clients and settings) is moved out of the
    collector's reach (``gc.freeze``), and young collections run less often: with the
    defaults, full collections of a busy dispatcher took over 100 ms each and the
    collector a sixth of its time. Reference cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(GC_GEN0_THRESHOLD, gen0), gen1, gen2)


async def serve(
    settings: Settings,
    alert_settings: AlertSettings,
    bootstrap: str,
    *,
    store: AlertStore | None = None,
    on_ready: Callable[[Dispatcher, int], None] | None = None,
    handle_signals: bool = True,
    own_process: bool | None = None,
) -> None:
    """Run a dispatcher and its API until SIGTERM/SIGINT (or the dispatcher stops).

    ``own_process`` (default: ``handle_signals``): the process runs nothing else, so its
    garbage collection is tuned for the dispatcher (:func:`tune_gc`) once it is ready.
    """
    if own_process is None:
        own_process = handle_signals
    validate_receivers(alert_settings)
    if store is None:
        store = await asyncio.to_thread(open_store, settings, alert_settings, migrate=True)
    dispatcher = Dispatcher(alert_settings, settings.kafka, bootstrap, store)
    api = ApiServer(dispatcher, alert_settings.api) if alert_settings.api.enabled else None
    loop = asyncio.get_running_loop()
    if handle_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, dispatcher.stop)
    port = 0
    if api is not None:
        port = await api.start()
        log.info("alerts API on http://%s:%d/", alert_settings.api.host, port)
    run = asyncio.create_task(dispatcher.run())
    ready = asyncio.create_task(dispatcher.ready.wait())
    try:
        await asyncio.wait([run, ready], return_when=asyncio.FIRST_COMPLETED)
        if ready.done() and own_process:
            tune_gc()
        if ready.done() and on_ready is not None:
            on_ready(dispatcher, port)
        await run
    finally:
        ready.cancel()
        if not run.done():
            dispatcher.stop()
            with contextlib.suppress(asyncio.CancelledError):
                await run
        if api is not None:
            await api.stop()
        with contextlib.suppress(Exception):
            store.client.close()
