"""The receivers' HTTP/1.1 client against scripted servers on 127.0.0.1: keep-alive, body
framings, interim responses, connections closed by the server, malformed answers,
timeouts, TLS verification, what it sends."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from yarl import URL

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.receivers.base import (
    DeliveryError,
    HttpNotifier,
    HttpTransport,
    Secrets,
    error_for_exception,
)
from agentwatch.alerts.receivers.http1 import Http1Pool, HttpProtocolError

Answer = Callable[[int, bytes], Awaitable[bytes | None]]  # (request number, request) -> bytes


class Server:
    """Reads each request whole and writes what ``answer`` returns (None: close)."""

    def __init__(self, answer: Answer, *, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> Server:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    def url(self, path: str = "/hook") -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                reply = await self.answer(len(self.requests), request)
                if reply is None:
                    break
                writer.write(reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def ok(body: bytes = b"fine", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def policy(timeout: float = 5.0) -> DeliveryPolicy:
    return DeliveryPolicy(timeout=timeout, concurrency=2)


async def test_keep_alive_and_what_is_sent() -> None:
    async def answer(n: int, request: bytes) -> bytes:
        return ok(f"answer {n}".encode(), "X-Thing: a\r\nx-thing: b\r\n")

    async with Server(answer) as server:
        client = HttpTransport(policy())
        for n in (1, 2, 3):
            reply = await client.post(
                server.url("/hook?x=1"), b'{"a": 1}', {"Content-Type": "application/json"}
            )
            assert reply.status == 200
            assert reply.body == f"answer {n}".encode()
            assert reply.headers["x-thing"] == "a, b"
        await client.aclose()
    assert server.connections == 1
    head, body = server.requests[0].split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    assert lines[0] == "POST /hook?x=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}" in lines
    assert "Content-Length: 8" in lines
    assert "Content-Type: application/json" in lines
    assert any(line.startswith("User-Agent: agentwatch-alerts/") for line in lines)
    assert body == b'{"a": 1}'


async def test_chunked_bytewise_interim_and_read_to_close() -> None:
    chunked = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def answer(n: int, request: bytes) -> bytes | None:
        return chunked if n == 1 else ok(b"again")

    async with Server(answer) as server:
        client = HttpTransport(policy())
        reply = await client.post(server.url(), b"x", {})
        assert (reply.status, reply.body, reply.headers["retry-after"]) == (
            429,
            b"hello world",
            "7",
        )
        assert (await client.post(server.url(), b"x", {})).body == b"again"
        await client.aclose()
    assert server.connections == 1

    # Byte by byte, and an HTTP/1.0 answer without a length: read up to the close.
    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for byte in b"HTTP/1.0 503 Busy\r\nContent-Type: text/plain\r\n\r\ncome back later":
            writer.write(bytes([byte]))
            await writer.drain()
        writer.close()

    tcp = await asyncio.start_server(slow, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    client = HttpTransport(policy())
    reply = await client.post(f"http://127.0.0.1:{port}/", b"", {})
    assert (reply.status, reply.body) == (503, b"come back later")
    await client.aclose()
    tcp.close()


async def test_connections_the_server_closes() -> None:
    async def answer(n: int, request: bytes) -> bytes | None:
        if n == 1:
            return ok(b"one", "Connection: close\r\n")
        return ok(b"more")

    async with Server(answer) as server:
        client = HttpTransport(policy())
        for _ in range(3):
            assert (await client.post(server.url(), b"", {})).status == 200
        assert server.connections == 2  # a new one after "Connection: close"
        await client.aclose()


async def test_a_connection_reset_before_the_answer_is_sent_again_once() -> None:
    async def answer(n: int, request: bytes) -> bytes | None:
        return None if n == 2 else ok()  # request 2: closed without an answer

    async with Server(answer) as server:
        client = HttpTransport(policy())
        assert (await client.post(server.url(), b"", {})).status == 200
        assert (await client.post(server.url(), b"", {})).status == 200  # sent twice
        assert len(server.requests) == 3
        assert server.connections == 2
        await client.aclose()

    # On a new connection a reset is an error (retried later by the delivery policy).
    async def never(n: int, request: bytes) -> bytes | None:
        return None

    async with Server(never) as server:
        client = HttpTransport(policy())
        with pytest.raises(ConnectionError):
            await client.post(server.url(), b"", {})
        await client.aclose()


async def test_errors_are_classified() -> None:
    async def garbage(n: int, request: bytes) -> bytes:
        return b"SMTP ready\r\n\r\n"

    secrets = Secrets([])
    async with Server(garbage) as server:
        client = HttpTransport(policy())
        with pytest.raises(HttpProtocolError) as info:
            await client.post(server.url(), b"", {})
        assert error_for_exception(info.value, secrets).retryable
        await client.aclose()

    async def silent(n: int, request: bytes) -> bytes:
        await asyncio.sleep(10)
        return ok()

    async with Server(silent) as server:
        notifier = HttpNotifier("r", HttpTransport(policy(timeout=0.2)), secrets)
        with pytest.raises(DeliveryError) as error:
            await notifier.post_json(server.url(), {"a": 1})
        assert error.value.retryable
        assert error.value.reason.startswith("timeout")
        await notifier.aclose()

    notifier = HttpNotifier("r", HttpTransport(policy()), secrets)
    with pytest.raises(DeliveryError) as error:
        await notifier.post_json(f"http://127.0.0.1:{server.port}/", {"a": 1})  # closed
    assert error.value.retryable
    assert error.value.reason.startswith("network error")
    with pytest.raises(DeliveryError) as error:
        await notifier.post_json("http://127.0.0.1:9/", {}, {"X-Bad": "a\r\nInjected: 1"})
    assert not error.value.retryable
    await notifier.aclose()


async def test_credentials_in_the_url() -> None:
    async def answer(n: int, request: bytes) -> bytes:
        return ok()

    async with Server(answer) as server:
        client = HttpTransport(policy())
        url = f"http://bot:p%40ss@127.0.0.1:{server.port}/hook"
        assert (await client.post(url, b"", {})).status == 200
        assert b"Authorization: Basic Ym90OnBAc3M=\r\n" in server.requests[0]  # bot:p@ss
        with pytest.raises(ValueError, match="Authorization"):
            await client.post(url, b"", {"Authorization": "Bearer t"})
        await client.aclose()


def test_pool_refuses_other_schemes() -> None:
    with pytest.raises(ValueError, match="http"):
        Http1Pool(
            URL("ftp://example.com/x"),
            limit=1,
            ssl_context=ssl.create_default_context(),
            user_agent="t",
        )


def make_certificates(root: Path) -> tuple[Path, Path, Path]:
    """A private CA and a certificate for 127.0.0.1 it signed (openssl)."""
    ca_key, ca_crt = root / "ca.key", root / "ca.crt"
    key, csr, crt = root / "server.key", root / "server.csr", root / "server.crt"
    ext = root / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\n")

    commands = [
        f"req -x509 -newkey rsa:2048 -nodes -keyout {ca_key} -out {ca_crt} -days 2"
        " -subj /CN=test-CA",
        f"req -newkey rsa:2048 -nodes -keyout {key} -out {csr} -subj /CN=127.0.0.1",
        f"x509 -req -in {csr} -CA {ca_crt} -CAkey {ca_key} -CAcreateserial -out {crt}"
        f" -days 2 -extfile {ext}",
    ]
    for command in commands:
        subprocess.run(["openssl", *command.split()], check=True, capture_output=True)
    return ca_crt, crt, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
async def test_tls_is_verified(tmp_path: Path) -> None:
    ca, crt, key = await asyncio.to_thread(make_certificates, tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(crt, key)

    async def answer(n: int, request: bytes) -> bytes:
        return ok(b"secure")

    async with Server(answer, tls=tls) as server:
        trusted = HttpTransport(policy(), ca_file=str(ca))
        assert (await trusted.post(server.url(), b"", {})).body == b"secure"
        await trusted.aclose()
        notifier = HttpNotifier("r", HttpTransport(policy()), Secrets([]))  # system CAs only
        with pytest.raises(DeliveryError) as error:
            await notifier.post_json(server.url(), {})
        assert not error.value.retryable
        assert "certificate" in error.value.reason
        await notifier.aclose()
