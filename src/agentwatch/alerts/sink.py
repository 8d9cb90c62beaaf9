"""A recording HTTP receiver on 127.0.0.1, for trying routes locally, checks and benchmarks.

:class:`RecordingSink` runs an aiohttp server in a background thread. It records every
request (path, headers, raw body, parsed JSON, arrival time) and answers each path from a
script: a list of :class:`Reply` used one per request (then the path's default, then 200).
It can stand in for an Alertmanager webhook receiver, the PagerDuty Events API (answer
202) or Slack's ``chat.postMessage`` (answer ``{"ok": true, "ts": ...}``)::

    with RecordingSink() as sink:
        sink.script("/hook", [Reply(500), Reply(500)])   # two failures, then 200
        url = sink.url("/hook")
        ...
        sink.wait_for(lambda reqs: len(reqs) >= 3, timeout_s=10)
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["ReceivedRequest", "RecordingSink", "Reply"]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int = 200
    body: Any = None  # JSON-encodable, or bytes/str sent as is
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    path: str
    method: str
    headers: dict[str, str]
    body: bytes
    received_at: float  # time.time()
    status: int  # what the sink answered

    def json(self) -> Any:
        return json.loads(self.body)


class RecordingSink:
    """An aiohttp app recording requests; use as a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.requests: list[ReceivedRequest] = []
        self._scripts: dict[str, list[Reply]] = {}
        self._defaults: dict[str, Reply] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._ts = itertools.count(1)

    # -- control ------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def script(self, path: str, replies: list[Reply]) -> None:
        """Answer the next requests to ``path`` with ``replies``, in order."""
        with self._lock:
            self._scripts[path] = list(replies)

    def default(self, path: str, reply: Reply) -> None:
        """Answer ``path`` with ``reply`` once its script is used up."""
        with self._lock:
            self._defaults[path] = reply

    def received(
        self, path: str | None = None, *, status: int | None = None
    ) -> list[ReceivedRequest]:
        with self._lock:
            found = list(self.requests)
        if path is not None:
            found = [r for r in found if r.path == path]
        if status is not None:
            found = [r for r in found if r.status == status]
        return found

    def wait_for(
        self,
        condition: Callable[[list[ReceivedRequest]], bool],
        timeout_s: float,
        what: str = "requests",
        path: str | None = None,
    ) -> list[ReceivedRequest]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.received(path)
            if condition(found):
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout_s}s waiting for {what}: {len(found)} seen"
                )
            time.sleep(0.02)

    # -- server -------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        path = request.path
        with self._lock:
            script = self._scripts.get(path)
            reply = script.pop(0) if script else self._defaults.get(path, Reply())
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        payload = reply.body
        if callable(payload):
            payload = payload(body)
        with self._lock:
            self.requests.append(
                ReceivedRequest(
                    path=path,
                    method=request.method,
                    headers=dict(request.headers),
                    body=body,
                    received_at=time.time(),
                    status=reply.status,
                )
            )
        if isinstance(payload, bytes | str):
            return web.Response(status=reply.status, body=payload, headers=reply.headers)
        if payload is None:
            return web.Response(status=reply.status, headers=reply.headers)
        return web.json_response(payload, status=reply.status, headers=reply.headers)

    def slack_api_reply(self) -> Reply:
        """A ``chat.postMessage`` success with a fresh message ``ts``."""
        return Reply(200, body=lambda _body: {"ok": True, "ts": f"1700000000.{next(self._ts):06d}"})

    async def _serve(self) -> None:
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    def start(self) -> RecordingSink:
        self._thread = threading.Thread(target=self._main, name="recording-sink", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"recording sink did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> RecordingSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
