"""ClickHouse storage: connection, migrations, redaction, batched writes, read helpers.

See ``docs/storage.md``. Reads of the ReplacingMergeTree tables must use ``FINAL``.
"""

from agentwatch.storage.client import StorageError, connect
from agentwatch.storage.migrate import MigrationError, apply_migrations
from agentwatch.storage.redact import redact_dsn, redact_text, redact_value
from agentwatch.storage.writer import DeadLetterRow, EventStore

__all__ = [
    "DeadLetterRow",
    "EventStore",
    "MigrationError",
    "StorageError",
    "apply_migrations",
    "connect",
    "redact_dsn",
    "redact_text",
    "redact_value",
]
