"""``agentwatch worker``: run one stream worker (a member of the consumer group)."""

from __future__ import annotations

import typer

from agentwatch.cli.common import console, require_bootstrap, settings_or_exit


def worker(
    loglevel: str = typer.Option("info", help="debug, info, warning or error"),
) -> None:
    """Consume agentwatch.events.v1, store events, dead-letter bad input, raise anomalies."""
    import faust

    from agentwatch.storage.client import connect
    from agentwatch.storage.migrate import apply_migrations
    from agentwatch.streams.app import Worker
    from agentwatch.streams.topics import ensure_topics

    settings = settings_or_exit()
    bootstrap = require_bootstrap(settings)
    ensure_topics(bootstrap, settings.kafka)
    apply_migrations(connect(settings.storage_dsn), settings.storage)
    console.print(
        f"worker: kafka {bootstrap}, stats on "
        f"http://{settings.worker.web_host}:{settings.worker.web_port}/agentwatch/stats/"
    )
    app = Worker(settings, bootstrap).app
    faust.Worker(app, loglevel=loglevel.upper(), quiet=True).execute_from_commandline()
