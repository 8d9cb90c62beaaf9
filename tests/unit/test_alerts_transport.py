"""The receivers' HTTP transport against scripted servers on 127.0.0.1: keep-alive, what
it sends, malformed answers, timeouts, refused connections, credentials, TLS verification."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.receivers.base import (
    DeliveryError,
    HttpNotifier,
    HttpTransport,
    Secrets,
    error_for_exception,
)

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
        return ok(f"answer {n}".encode(), "X-Thing: a\r\n")

    async with Server(answer) as server:
        client = HttpTransport(policy())
        for n in (1, 2, 3):
            reply = await client.post(
                server.url("/hook?x=1"), b'{"a": 1}', {"Content-Type": "application/json"}
            )
            assert reply.status == 200
            assert reply.body == f"answer {n}".encode()
            assert reply.headers["x-thing"] == "a"
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


async def test_errors_are_classified() -> None:
    async def garbage(n: int, request: bytes) -> bytes:
        return b"SMTP ready\r\n\r\n"

    secrets = Secrets([])
    async with Server(garbage) as server:
        client = HttpTransport(policy())
        with pytest.raises(aiohttp.ClientError) as info:
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
    await notifier.aclose()

    async with Server(lambda n, request: asyncio.sleep(0, ok())) as server:
        notifier = HttpNotifier("r", HttpTransport(policy()), secrets)
        with pytest.raises(DeliveryError) as error:  # nothing can be smuggled in a header
            await notifier.post_json(server.url(), {}, {"X-Bad": "a\r\nInjected: 1"})
        assert not error.value.retryable
        await notifier.aclose()
    assert not any(b"Injected" in request for request in server.requests)


async def test_credentials_in_the_url() -> None:
    async def answer(n: int, request: bytes) -> bytes:
        return ok()

    async with Server(answer) as server:
        client = HttpTransport(policy())
        url = f"http://bot:p%40ss@127.0.0.1:{server.port}/hook"
        assert (await client.post(url, b"", {})).status == 200
        assert b"Authorization: Basic Ym90OnBAc3M=\r\n" in server.requests[0]  # bot:p@ss
        with pytest.raises(ValueError, match=r"(?i)authorization"):
            await client.post(url, b"", {"Authorization": "Bearer t"})
        await client.aclose()


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
