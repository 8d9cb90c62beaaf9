"""Versioned DDL, applied at start.

Migrations are the files ``migrations/NNNN_<name>.sql`` of this package, applied in
version order. ``{database}``, ``{events_ttl_days}`` and ``{anomalies_ttl_days}`` in a
file are rendered from :class:`~agentwatch.config.StorageSettings`; other ``{...}`` are
left alone (ClickHouse macros). Each applied migration is recorded in
``<database>.schema_migrations`` (version, name, checksum, applied_at); a migration whose
file changed after it was applied stops the start with :class:`MigrationError`.

Statements must be idempotent (``IF NOT EXISTS``): workers starting together may apply the
same migration twice, and a migration interrupted half-way is simply applied again.

After the migrations the TTLs of the tables are brought in line with the settings, so
changing ``events_ttl_days`` or ``anomalies_ttl_days`` takes effect on the next start.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentwatch.config import StorageSettings
from agentwatch.storage.client import StorageError, check_database_name, redact_error

__all__ = [
    "Migration",
    "MigrationError",
    "applied_migrations",
    "apply_migrations",
    "check_database_name",
    "load_migrations",
    "render",
    "split_statements",
]

log = logging.getLogger(__name__)

_FILE_RE = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")
_PLACEHOLDER_RE = re.compile(r"\{([a-z_]+)\}")

# Tables whose TTL follows a setting: table -> (TTL time expression, settings field).
_TTLS: dict[str, tuple[str, str]] = {
    "events": ("toDateTime(ts)", "events_ttl_days"),
    "anomalies": ("toDateTime(ts)", "anomalies_ttl_days"),
    "dead_letters": ("toDateTime(ts)", "events_ttl_days"),
    "agent_stats_1m": ("minute", "events_ttl_days"),
}

_SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS {database}.schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(3, 'UTC')
)
ENGINE = ReplacingMergeTree(applied_at)
ORDER BY version
"""


class MigrationError(StorageError):
    """The schema cannot be brought up to date; the worker must not start."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str  # the template, before rendering
    checksum: str  # sha256 of the template (newlines normalised)


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode("utf-8")).hexdigest()


def load_migrations(directory: Path | Traversable | None = None) -> list[Migration]:
    """The migrations of ``directory`` (default: this package's), by version."""
    root: Path | Traversable = (
        directory if directory is not None else resources.files(__package__) / "migrations"
    )
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        match = _FILE_RE.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(f"migration file name {entry.name!r} is not NNNN_name.sql")
            continue
        version = int(match["version"])
        if version in found:
            raise MigrationError(f"two migration files have version {version}")
        sql = entry.read_text(encoding="utf-8").replace("\r\n", "\n")
        found[version] = Migration(version, match["name"], sql, _checksum(sql))
    return [found[v] for v in sorted(found)]


def render(sql: str, settings: StorageSettings) -> str:
    """``sql`` with the settings placeholders filled in."""
    values = {
        "database": check_database_name(settings.database),
        "events_ttl_days": str(int(settings.events_ttl_days)),
        "anomalies_ttl_days": str(int(settings.anomalies_ttl_days)),
    }
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m[1], m[0]), sql)


def split_statements(sql: str) -> list[str]:
    """The statements of ``sql``, split at ``;`` outside quotes and comments, comments removed."""
    statements: list[str] = []
    current: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        ch = sql[i]
        if ch == "-" and sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end
            continue
        if ch == "/" and sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
            current.append(" ")
            continue
        if ch in "'\"`":
            j = i + 1
            while j < n and sql[j] != ch:
                j += 2 if sql[j] == "\\" else 1
            current.append(sql[i : j + 1])
            i = j + 1
            continue
        if ch == ";":
            statements.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    statements.append("".join(current))
    out = []
    for statement in statements:
        lines = [line.rstrip() for line in statement.strip().splitlines()]
        text = "\n".join(line for line in lines if line)
        if text:
            out.append(text)
    return out


def applied_migrations(client: Client, database: str) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of the migrations recorded in ``database``."""
    result = client.query(
        f"SELECT version, name, checksum FROM {check_database_name(database)}"
        ".schema_migrations FINAL ORDER BY version"
    )
    return {int(v): (str(name), str(checksum)) for v, name, checksum in result.result_rows}


def _run(client: Client, statement: str, what: str) -> None:
    try:
        client.command(statement)
    except ClickHouseError as exc:
        raise MigrationError(f"{what} failed: {redact_error(exc)}") from exc


def apply_migrations(
    client: Client,
    settings: StorageSettings,
    *,
    migrations_dir: Path | Traversable | None = None,
) -> list[int]:
    """Apply the pending migrations to ``settings.database``; the versions applied.

    Idempotent: a second call applies nothing and returns ``[]``. Raises
    :class:`MigrationError` if a file of an applied migration changed since.
    """
    database = check_database_name(settings.database)
    migrations = load_migrations(migrations_dir)
    _run(client, f"CREATE DATABASE IF NOT EXISTS {database}", "creating the database")
    _run(client, render(_SCHEMA_MIGRATIONS_DDL, settings), "creating schema_migrations")
    try:
        applied = applied_migrations(client, database)
    except ClickHouseError as exc:
        raise MigrationError(f"reading schema_migrations failed: {redact_error(exc)}") from exc

    known = {m.version: m for m in migrations}
    for version, (name, checksum) in applied.items():
        migration = known.get(version)
        if migration is None:
            log.warning(
                "database %s has migration %04d_%s that this agentwatch does not know; "
                "it is newer than this code",
                database,
                version,
                name,
            )
        elif migration.checksum != checksum:
            raise MigrationError(
                f"migration {version:04d}_{migration.name}.sql changed after it was applied "
                f"to database {database} (checksum {checksum[:12]}… recorded, "
                f"{migration.checksum[:12]}… now). Applied migrations must never be edited: "
                "restore the file and put the change in a new migration."
            )

    done: list[int] = []
    for migration in migrations:
        if migration.version in applied:
            continue
        label = f"{migration.version:04d}_{migration.name}"
        for number, statement in enumerate(split_statements(render(migration.sql, settings)), 1):
            _run(client, statement, f"migration {label}, statement {number}")
        try:
            client.insert(
                f"{database}.schema_migrations",
                [[migration.version, migration.name, migration.checksum, datetime.now(UTC)]],
                column_names=["version", "name", "checksum", "applied_at"],
            )
        except ClickHouseError as exc:
            raise MigrationError(f"recording {label} failed: {redact_error(exc)}") from exc
        log.info("applied migration %s to database %s", label, database)
        done.append(migration.version)

    _sync_ttls(client, settings)
    return done


def _sync_ttls(client: Client, settings: StorageSettings) -> None:
    """Make each table's TTL match the settings.

    Only tables of a single server (or ClickHouse Cloud) are altered: on a self-managed
    cluster (``Replicated*`` or ``Distributed`` tables) a mismatch is logged, and the TTL
    is changed with ``ON CLUSTER`` by the operator (see docs/storage.md).
    """
    database = settings.database
    try:
        rows = client.query(
            "SELECT name, engine, engine_full FROM system.tables "
            "WHERE database = {db:String} AND name IN {names:Array(String)}",
            parameters={"db": database, "names": list(_TTLS)},
        ).result_rows
    except ClickHouseError as exc:
        raise MigrationError(f"reading table TTLs failed: {redact_error(exc)}") from exc
    for table, engine, engine_full in rows:
        expression, field = _TTLS[str(table)]
        days = int(getattr(settings, field))
        match = re.search(r"\bTTL .*?toIntervalDay\((\d+)\)", str(engine_full))
        if match is not None and int(match[1]) == days:
            continue
        if not str(engine).endswith("MergeTree") or str(engine).startswith("Replicated"):
            log.warning(
                "the TTL of %s.%s (%s) is not %d days as %s says; change it ON CLUSTER",
                database,
                table,
                engine,
                days,
                field,
            )
            continue
        log.info("setting TTL of %s.%s to %d days", database, table, days)
        # The TTL of existing parts is recalculated by a background mutation (cheap for the
        # tables with materialize_ttl_recalculate_only), so a longer TTL also keeps them.
        try:
            client.command(
                f"ALTER TABLE {database}.{table} MODIFY TTL {expression} + INTERVAL {days} DAY"
            )
        except ClickHouseError as exc:
            raise MigrationError(
                f"changing the TTL of {database}.{table} failed: {redact_error(exc)}"
            ) from exc
