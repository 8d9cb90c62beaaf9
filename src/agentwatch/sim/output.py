"""Where a simulation's events go, and the loop that paces them.

* :class:`JsonlSink` — one JSON event per line, gzip-compressed when the name ends in
  ``.gz`` (with a fixed gzip header, so the same run gives the same bytes).
* :class:`KafkaSink` — through the SDK's :class:`~agentwatch.sdk.Emitter` (batched per
  agent, key = ``agent_id``), waiting for the emitter to drain instead of dropping events.
* :func:`drive` — as fast as possible (``speed=None``) or with simulated time running
  ``speed`` times as fast as the wall clock (``1.0`` = real time).
"""

from __future__ import annotations

import gzip
import io
import queue
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import msgspec

from agentwatch.schemas.events import Event
from agentwatch.sim.engine import Simulation

__all__ = ["EventSink", "JsonlSink", "KafkaSink", "SinkError", "drive", "parse_speed"]


class SinkError(RuntimeError):
    """The destination stopped accepting events."""


class EventSink(Protocol):
    def write(self, events: list[Event]) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """Events as JSON lines in ``path`` (``.gz``: gzip with a reproducible header).

    Compression runs on a writer thread (zlib releases the GIL), so it overlaps with
    generating the next events; the bytes written are the same as without it.
    """

    def __init__(self, path: Path, *, compresslevel: int = 6, flush_each: bool = False) -> None:
        self.path = path
        self.flush_each = flush_each
        self.events = 0
        self._raw = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._fh: io.BufferedIOBase = self._raw
        self._queue: queue.Queue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        if path.name.endswith(".gz"):
            self._fh = gzip.GzipFile(
                filename="", mode="wb", fileobj=self._raw, mtime=0, compresslevel=compresslevel
            )
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._writer, name="jsonl-gzip", daemon=True)
            self._thread.start()
        self._encode = msgspec.json.Encoder().encode

    def write(self, events: list[Event]) -> None:
        if not events:
            return
        encode = self._encode
        data = b"\n".join([encode(e) for e in events]) + b"\n"
        self.events += len(events)
        if self._queue is not None:
            if self._error is not None:
                raise SinkError(f"writing {self.path} failed: {self._error}")
            self._queue.put(data)
            return
        self._fh.write(data)
        if self.flush_each:
            self._fh.flush()

    def _writer(self) -> None:
        assert self._queue is not None
        while (data := self._queue.get()) is not None:
            if self._error is not None:
                continue
            try:
                self._fh.write(data)
                if self.flush_each:
                    self._fh.flush()
                    self._raw.flush()
            except OSError as exc:  # reported by the next write or close
                self._error = exc

    def close(self) -> None:
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)
            self._thread.join()
        if self._fh is not self._raw:
            self._fh.close()
        self._raw.close()
        if self._error is not None:
            raise SinkError(f"writing {self.path} failed: {self._error}")


class KafkaSink:
    """Events to Kafka through the SDK emitter; blocks (never drops) while it is full.

    Raises :class:`SinkError` when nothing has been acknowledged for ``stall_s`` seconds
    while events wait (broker unreachable).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        buffer_size: int = 100_000,
        stall_s: float = 60.0,
        client_id: str = "agentwatch-simulate",
    ) -> None:
        from agentwatch.sdk import Emitter

        self.emitter = Emitter(
            bootstrap=bootstrap,
            topic=topic,
            client_id=client_id,
            buffer_size=buffer_size,
            linger_ms=50.0,
            close_at_exit=False,
        )
        self.buffer_size = buffer_size
        self.stall_s = stall_s
        self.events = 0

    def write(self, events: list[Event]) -> None:
        room = max(1, self.buffer_size // 4)
        for i in range(0, len(events), room):
            part = events[i : i + room]
            self._wait_for_room(len(part))
            for event in part:
                self.emitter.emit(event)
            self.events += len(part)

    def _wait_for_room(self, n: int) -> None:
        limit = self.buffer_size - n
        stats = self.emitter.stats
        progress_at = time.monotonic()
        last_sent = stats.sent
        while stats.pending > limit:
            time.sleep(0.01)
            stats = self.emitter.stats
            now = time.monotonic()
            if stats.sent != last_sent:
                last_sent, progress_at = stats.sent, now
            elif now - progress_at > self.stall_s:
                raise SinkError(
                    f"Kafka at {self.emitter.bootstrap} acknowledged nothing for "
                    f"{self.stall_s:.0f} s ({stats.pending:,} events waiting)"
                )

    def close(self, timeout: float = 60.0) -> None:
        self.emitter.flush(timeout=timeout)
        self.emitter.close(timeout=10.0)

    @property
    def lost(self) -> int:
        """Events accepted by :meth:`write` that never reached the broker."""
        stats = self.emitter.stats
        return (
            stats.dropped_full
            + stats.oversize
            + stats.invalid
            + stats.send_errors
            + (stats.dropped_closed)
        )


def parse_speed(text: str) -> float | None:
    """``max`` → ``None`` (as fast as possible), ``realtime`` → 1.0, else a factor > 0."""
    value = text.strip().lower()
    if value in ("max", "fast", "asap"):
        return None
    if value in ("realtime", "real-time", "rt"):
        return 1.0
    try:
        factor = float(value.removesuffix("x"))
    except ValueError:
        raise ValueError(f"speed must be max, realtime or a factor, not {text!r}") from None
    if not factor > 0:
        raise ValueError("a speed factor must be > 0")
    return factor


def drive(
    sim: Simulation,
    sinks: Sequence[EventSink],
    *,
    speed: float | None = None,
    on_progress: Callable[[Simulation, int], None] | None = None,
    step_s: float = 300.0,
    tick_s: float = 0.1,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Run ``sim`` to its end into ``sinks``; returns the number of events.

    With ``speed`` (a factor of real time) the simulated clock follows the wall clock:
    every ``tick_s`` the events up to ``start + speed × elapsed`` are written.
    ``on_progress(sim, n)`` is called after each batch of ``n`` events.
    """
    total = 0
    wall0 = time.monotonic()
    while not sim.done:
        if speed is None:
            events = sim.advance(step_s)
        else:
            elapsed = time.monotonic() - wall0
            events = sim.events_until(sim.start + timedelta(seconds=elapsed * speed))
        for sink in sinks:
            sink.write(events)
        total += len(events)
        if on_progress is not None:
            on_progress(sim, len(events))
        if speed is not None and not sim.done:
            sleep(tick_s)
    return total
