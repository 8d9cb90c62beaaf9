"""A small HTTP/1.1 client for the receivers' POSTs: keep-alive connections, nothing else.

The dispatcher sends one request per notification, and aiohttp's client costs about twice
as much CPU per request as this one (its request and response objects, timers, traces,
cookie and redirect handling; none of which a receiver needs). :class:`Http1Pool` keeps
connections to one origin (scheme, host, port) alive and sends a POST over one of them:

* request: ``POST <path?query> HTTP/1.1`` with ``Host``, ``Content-Length`` and the given
  headers (names and values are checked: no CR, LF or NUL, so nothing can be smuggled);
  credentials in the URL become ``Authorization: Basic`` as with aiohttp;
* response: status line and headers (at most 64 KiB), then a body by ``Content-Length``,
  ``Transfer-Encoding: chunked`` or up to the end of the connection (at most 16 MiB);
  interim 1xx responses are skipped; ``Connection: close`` and HTTP/1.0 close the
  connection after the response;
* TLS through :mod:`asyncio` and the given :class:`ssl.SSLContext` (certificates and host
  names verified as the context says), with SNI;
* a request that fails on a reused connection before any byte of the answer (the server
  closed it while idle) is sent again once on a new connection;
* errors: :class:`OSError` (connection refused or reset, malformed answer:
  :class:`HttpProtocolError`), :class:`ssl.SSLError`, :class:`TimeoutError` from the
  caller's timeout, :class:`ValueError` for a URL or header that cannot be sent.

Proxies are not supported here: :class:`~agentwatch.alerts.receivers.base.HttpTransport`
sends through aiohttp when the environment names one.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
from collections.abc import Mapping
from urllib.parse import unquote

from yarl import URL

__all__ = ["Http1Pool", "HttpProtocolError", "Response"]

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BAD_VALUE = re.compile(r"[\r\n\x00]")


class HttpProtocolError(ConnectionError):
    """The server's answer is not valid HTTP/1.1 (or too large)."""


Response = tuple[int, dict[str, str], bytes]


class _Connection(asyncio.Protocol):
    """One connection; one request at a time; parses the answer as it arrives."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._received = False  # any byte of the current answer
        self._head: tuple[int, dict[str, str], bool] | None = None  # status, headers, keep
        self._mode = ""  # length | chunked | eof
        self._length = 0
        self._chunks = bytearray()
        self.keep_alive = True

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._received = True
        self._buffer += data
        try:
            self._parse()
        except HttpProtocolError as exc:
            self._fail(exc)
            self.close()

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost ends an answer read to the end

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._head is not None and self._mode == "eof" and exc is None:
            self._finish(bytes(self._buffer))
            return
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    # -- use --------------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self.transport is not None
        assert self._waiter is None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._received = False
        self._head = None
        self._buffer.clear()
        self.transport.write(request)
        return self._waiter

    @property
    def answered_nothing(self) -> bool:
        return not self._received

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- parsing -----------------------------------------------------------------------------

    def _fail(self, exc: BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _finish(self, body: bytes) -> None:
        assert self._head is not None
        status, headers, keep = self._head
        self.keep_alive = keep and self._mode != "eof"
        waiter, self._waiter = self._waiter, None
        self._head = None
        if waiter is not None and not waiter.done():
            waiter.set_result((status, headers, body))

    def _parse(self) -> None:
        while self._waiter is not None:
            if self._head is None and not self._parse_head():
                return
            if self._mode == "length":
                if len(self._buffer) < self._length:
                    return
                body = bytes(self._buffer[: self._length])
                del self._buffer[: self._length]
                self._finish(body)
            elif self._mode == "chunked":
                if not self._parse_chunks():
                    return
            else:  # eof: wait for the end of the connection
                if len(self._buffer) > MAX_BODY:
                    raise HttpProtocolError("response body too large")
                return

    def _parse_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD:
                raise HttpProtocolError("response head too large")
            return False
        head = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[: end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise HttpProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpProtocolError("malformed response header")
            name = name.lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        if 100 <= status < 200:
            return self._parse_head() if self._buffer else False  # interim: the next head
        connection = headers.get("connection", "").lower()
        keep = "keep-alive" in connection if parts[0] == "HTTP/1.0" else "close" not in connection
        self._head = (status, headers, keep)
        encoding = headers.get("transfer-encoding", "").lower()
        if status in (204, 304):
            self._mode, self._length = "length", 0
        elif encoding:
            if encoding.split(",")[-1].strip() != "chunked":
                raise HttpProtocolError(f"unsupported transfer encoding {encoding[:50]!r}")
            self._mode = "chunked"
            self._chunks.clear()
        elif "content-length" in headers:
            length = headers["content-length"].strip()
            if not length.isdigit() or int(length) > MAX_BODY:
                raise HttpProtocolError("invalid content-length")
            self._mode, self._length = "length", int(length)
        else:
            self._mode = "eof"
        return True

    def _parse_chunks(self) -> bool:
        while True:
            line_end = self._buffer.find(b"\r\n")
            if line_end < 0:
                if len(self._buffer) > MAX_HEAD:
                    raise HttpProtocolError("chunk size line too long")
                return False
            size_text = bytes(self._buffer[:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpProtocolError("invalid chunk size") from None
            if size == 0:  # last chunk, then trailers up to an empty line
                trailers_end = self._buffer.find(b"\r\n\r\n", line_end)
                if self._buffer[line_end : line_end + 4] == b"\r\n\r\n":
                    trailers_end = line_end
                if trailers_end < 0:
                    return False
                del self._buffer[: trailers_end + 4]
                self._finish(bytes(self._chunks))
                return True
            if len(self._chunks) + size > MAX_BODY:
                raise HttpProtocolError("response body too large")
            start = line_end + 2
            if len(self._buffer) < start + size + 2:
                return False
            if self._buffer[start + size : start + size + 2] != b"\r\n":
                raise HttpProtocolError("chunk not followed by CRLF")
            self._chunks += self._buffer[start : start + size]
            del self._buffer[: start + size + 2]


def _check_header(name: str, value: str) -> None:
    if not _TOKEN.match(name) or _BAD_VALUE.search(value):
        raise ValueError("invalid HTTP header name or value")


class Http1Pool:
    """Keep-alive connections to one origin, at most ``limit`` at once."""

    def __init__(self, url: URL, *, limit: int, ssl_context: ssl.SSLContext, user_agent: str):
        if url.scheme not in ("http", "https") or not url.raw_host:
            raise ValueError("only http and https URLs can be sent to")
        self.host = url.raw_host  # (IDNA-encoded)
        self.port = url.port or (443 if url.scheme == "https" else 80)
        self.ssl = ssl_context if url.scheme == "https" else None
        self.user_agent = user_agent
        self._host_header = url.host_port_subcomponent or self.host
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(limit)

    async def post(self, url: URL, body: bytes, headers: Mapping[str, str]) -> Response:
        """POST ``body`` to ``url`` (of this origin); status, lower-case headers, body."""
        request = self._request(url, body, headers)
        async with self._slots:
            conn = self._take()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                try:
                    response = await conn.send(request)
                except (ConnectionError, OSError):
                    if not (reused and conn.answered_nothing):
                        raise
                    conn.close()  # closed by the server while idle: once more, afresh
                    conn = await self._connect()
                    response = await conn.send(request)
            except BaseException:
                conn.close()
                raise
            if conn.keep_alive and not conn.closed:
                self._idle.append(conn)
            else:
                conn.close()
            return response

    def _take(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Connection,
            self.host,
            self.port,
            ssl=self.ssl,
            server_hostname=self.host if self.ssl is not None else None,
        )
        return conn

    def _request(self, url: URL, body: bytes, headers: Mapping[str, str]) -> bytes:
        lines = [
            f"POST {url.raw_path_qs or '/'} HTTP/1.1",
            f"Host: {self._host_header}",
            f"User-Agent: {self.user_agent}",
            "Accept: */*",
        ]
        has_authorization = False
        for name, value in headers.items():
            _check_header(name, value)
            lower = name.lower()
            if lower in ("host", "content-length", "transfer-encoding", "connection"):
                continue
            if lower == "user-agent":
                lines[2] = f"User-Agent: {value}"
                continue
            has_authorization = has_authorization or lower == "authorization"
            lines.append(f"{name}: {value}")
        if url.user is not None:
            if has_authorization:
                raise ValueError("credentials in the URL and an Authorization header")
            credentials = f"{unquote(url.raw_user or '')}:{unquote(url.raw_password or '')}"
            token = base64.b64encode(credentials.encode("utf-8")).decode("ascii")
            lines.append(f"Authorization: Basic {token}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
