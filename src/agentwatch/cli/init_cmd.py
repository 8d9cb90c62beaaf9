"""``agentwatch init``: create the Kafka topics and apply the ClickHouse migrations."""

from __future__ import annotations

from agentwatch.cli.common import console, require_bootstrap, settings_or_exit
from agentwatch.storage.client import connect
from agentwatch.storage.migrate import apply_migrations
from agentwatch.streams.topics import ensure_topics


def init() -> None:
    """Create topics (if missing) and apply pending storage migrations. Idempotent."""
    settings = settings_or_exit()
    bootstrap = require_bootstrap(settings)
    created = ensure_topics(bootstrap, settings.kafka)
    console.print(f"topics created: {', '.join(created) if created else 'none (all exist)'}")
    applied = apply_migrations(connect(settings.storage_dsn), settings.storage)
    done = ", ".join(map(str, applied)) if applied else "none (up to date)"
    console.print(f"storage migrations applied: {done}")
