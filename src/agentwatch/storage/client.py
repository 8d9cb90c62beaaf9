"""Open a ClickHouse client: the embedded engine (chDB) or a server over HTTP(S).

* ``chdb:///abs/dir`` opens the embedded ClickHouse engine inside this process; its data
  persists in ``dir``. chDB allows **one data dir per process** at a time (every client of
  the process shares one engine; a second dir can only be opened after every client of
  the first one is closed) and **one process per data dir** (the engine locks the dir).
  Any number of databases can live in one dir, and any number of clients can be opened on
  the same dir within the process (they share the engine; each serialises its own calls).
* ``http(s)://user:password@host:8123[/database]`` talks to a ClickHouse server or
  cluster; the API is the same.

No message raised or logged here holds the password of the DSN.
"""

from __future__ import annotations

import logging
import os
import re
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from agentwatch.storage.redact import redact_dsn, redact_text

__all__ = [
    "Client",
    "StorageError",
    "check_database_name",
    "connect",
    "redact_dsn",
    "redact_error",
    "redacted_dsn",
]

log = logging.getLogger(__name__)

redacted_dsn = redact_dsn  # the DSN for a log line, password hidden

SCHEMES = ("chdb", "http", "https")
_DATABASE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class StorageError(RuntimeError):
    """Storage is unusable or a write failed; the caller must not commit Kafka offsets.

    ``transient`` is true when the cause was temporary (server unreachable, overloaded,
    timeouts) and retrying later may succeed; false when retrying the same data cannot
    help (schema mismatch, bad data, bad configuration).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


def check_database_name(database: str) -> str:
    """``database`` if it is a plain identifier (it is put into SQL as it is)."""
    if not _DATABASE_RE.match(database):
        raise StorageError(
            f"database name {database!r} must match {_DATABASE_RE.pattern} (letters, digits, _)"
        )
    return database


def _secrets_of(dsn: str) -> list[str]:
    try:
        password = urlsplit(dsn).password
    except ValueError:
        return []
    if not password:
        return []
    return [password, unquote(password)]


def redact_error(exc: BaseException, dsn: str | None = None) -> str:
    """The text of ``exc`` with credentials (the DSN's password included) hidden."""
    text = str(exc)
    for secret in _secrets_of(dsn) if dsn else []:
        text = text.replace(secret, "[REDACTED]")
    return redact_text(text)


def _chdb_path(dsn: str) -> str:
    parts = urlsplit(dsn)
    path = unquote(parts.path)
    if parts.netloc or not path.startswith("/"):
        raise StorageError(
            f"chdb DSN must name an absolute directory as chdb:///abs/dir, got {redact_dsn(dsn)!r}"
        )
    if parts.query or parts.fragment:
        raise StorageError(f"chdb DSN takes no query or fragment: {redact_dsn(dsn)!r}")
    return os.path.normpath(path)


def _open_chdb(dsn: str) -> Client:
    path = _chdb_path(dsn)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the ClickHouse data dir {path}: {exc}") from exc
    try:
        return clickhouse_connect.get_client(dsn=f"chdb://{path}")
    except (ClickHouseError, RuntimeError) as exc:
        text = str(exc)
        if "already initialized with path" in text:
            raise StorageError(
                f"cannot open the embedded ClickHouse at {path}: this process already has "
                "another data dir open (chDB allows one data dir per process; close every "
                f"client of the other dir first). Detail: {redact_error(exc)}"
            ) from exc
        if "Error initializing EmbeddedServer" in text or "Cannot lock file" in text:
            raise StorageError(
                f"cannot open the embedded ClickHouse at {path}: the data dir is locked by "
                "another process — is another agentwatch worker running on this data dir? "
                "(chDB allows one process per data dir; stop the other process or point "
                "storage.dsn elsewhere)"
            ) from exc
        raise StorageError(
            f"cannot open the embedded ClickHouse at {path}: {redact_error(exc)}"
        ) from exc


def _open_http(dsn: str) -> Client:
    try:
        return clickhouse_connect.get_client(
            dsn=dsn,
            # One client is shared by the worker's threads: no server-side session, which
            # would reject concurrent queries.
            autogenerate_session_id=False,
            compress="lz4",
        )
    except Exception as exc:  # noqa: BLE001 - any failure becomes one clean message
        message = (
            f"cannot connect to ClickHouse at {redact_dsn(dsn)}: "
            f"{type(exc).__name__}: {redact_error(exc, dsn)}"
        )
    # Raised outside the handler: the original exception (which may quote the DSN) is not
    # chained into tracebacks.
    raise StorageError(message)


def connect(dsn: str) -> Client:
    """A client for ``dsn`` (``chdb:///abs/dir`` or ``http(s)://user:pass@host:port``).

    Raises :class:`StorageError` with a message free of the DSN's password.
    """
    try:
        scheme = urlsplit(dsn).scheme.lower()
    except ValueError:
        scheme = ""
    if scheme not in SCHEMES:
        raise StorageError(
            f"unsupported storage DSN {redact_dsn(dsn)!r}: expected chdb:///abs/dir or "
            "http(s)://user:password@host:port"
        )
    client = _open_chdb(dsn) if scheme == "chdb" else _open_http(dsn)
    log.info("storage connected: %s", redact_dsn(dsn))
    return client
