"""The worker's HTTP API for the CLI and tools: anomalies, models, snapshots, feedback.

With the embedded storage the worker process owns the chDB data directory, so commands
such as ``agentwatch feedback benign`` and ``agentwatch models snapshots`` read through
these pages. Every answer is JSON; unknown things are 404 ``{"error": ...}``, storage
trouble 503.

=====================================================  =============================================
``GET /agentwatch/anomalies/{anomaly_id}/``            a stored anomaly (``labels.keys`` = what
                                                       ``feedback benign`` accepts)
``GET /agentwatch/models/``                            this worker's model state: agents in memory,
                                                       dirty, partitions, snapshot/restore counters
``GET /agentwatch/models/{agent_id}/``                 the agent's in-memory model: warming_up or
                                                       baselined, events, state size per detector
``GET /agentwatch/models/{agent_id}/snapshots/``       the agent's stored snapshots, newest first
                                                       (``?limit=``, default 50)
``GET /agentwatch/models/{agent_id}/snapshots/{id}/``  one stored snapshot (without its state)
``GET /agentwatch/models/{agent_id}/changes/``         the agent's baseline changes and feedback
``GET /agentwatch/feedback/{feedback_id}/``            whether a control message was applied
=====================================================  =============================================

Agent ids are percent-encoded in paths (``quote(agent_id, safe="")``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, unquote

import faust
from faust.web import Request, Response, View

from agentwatch.storage.client import StorageError
from agentwatch.streams.control import ModelState

__all__ = ["register_admin_pages"]

log = logging.getLogger("agentwatch.worker")

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _limit(request: Request) -> int:
    values = parse_qs(request.query_string or "").get("limit")
    try:
        limit = int(values[0]) if values else DEFAULT_LIMIT
    except ValueError:
        limit = DEFAULT_LIMIT
    return max(1, min(limit, MAX_LIMIT))


def register_admin_pages(app: faust.App, models: ModelState) -> None:
    """Add the pages above to ``app``'s web server (reading through ``models``)."""

    async def stored(view: View, call: Callable[[], T]) -> T | Response:
        try:
            return await asyncio.to_thread(call)
        except StorageError as exc:
            log.warning("admin page: storage unavailable: %s", exc)
            return view.error(503, f"storage unavailable: {exc}")

    @app.page("/agentwatch/anomalies/{anomaly_id}/")
    class AgentwatchAnomalyView(View):
        async def get(self, request: Request, anomaly_id: str) -> Response:
            anomaly_id = unquote(anomaly_id)
            found = await stored(self, lambda: models.store.anomaly(anomaly_id))
            if isinstance(found, Response):
                return found
            if found is None:
                return self.error(404, f"no anomaly {anomaly_id}")
            return self.json(_jsonable(found))

    @app.page("/agentwatch/models/")
    class AgentwatchModelsView(View):
        async def get(self, request: Request) -> Response:
            return self.json(models.summary())

    @app.page("/agentwatch/models/{agent_id}/")
    class AgentwatchModelView(View):
        async def get(self, request: Request, agent_id: str) -> Response:
            agent_id = unquote(agent_id)
            status = models.status(agent_id)
            if status is None:
                return self.error(404, f"this worker holds no model of agent {agent_id}")
            return self.json(status)

    @app.page("/agentwatch/models/{agent_id}/snapshots/")
    class AgentwatchSnapshotsView(View):
        async def get(self, request: Request, agent_id: str) -> Response:
            agent_id = unquote(agent_id)
            limit = _limit(request)
            found = await stored(self, lambda: models.store.snapshots(agent_id, limit))
            if isinstance(found, Response):
                return found
            return self.json(
                {"agent_id": agent_id, "snapshots": [snapshot.info() for snapshot in found]}
            )

    @app.page("/agentwatch/models/{agent_id}/snapshots/{snapshot_id}/")
    class AgentwatchSnapshotView(View):
        async def get(self, request: Request, agent_id: str, snapshot_id: str) -> Response:
            agent_id, snapshot_id = unquote(agent_id), unquote(snapshot_id)
            found = await stored(self, lambda: models.store.snapshot(agent_id, snapshot_id))
            if isinstance(found, Response):
                return found
            if found is None:
                return self.error(404, f"agent {agent_id} has no snapshot {snapshot_id}")
            return self.json(found.info())

    @app.page("/agentwatch/models/{agent_id}/changes/")
    class AgentwatchChangesView(View):
        async def get(self, request: Request, agent_id: str) -> Response:
            agent_id = unquote(agent_id)
            limit = _limit(request)

            def read() -> dict[str, Any]:
                store = models.store
                return {
                    "agent_id": agent_id,
                    "changes": [c.as_dict() for c in store.baseline_changes(agent_id, limit)],
                    "feedback": [
                        f.as_dict() for f in store.feedback(agent_id=agent_id, limit=limit)
                    ],
                }

            found = await stored(self, read)
            return found if isinstance(found, Response) else self.json(found)

    @app.page("/agentwatch/feedback/{feedback_id}/")
    class AgentwatchFeedbackView(View):
        async def get(self, request: Request, feedback_id: str) -> Response:
            feedback_id = unquote(feedback_id)
            result = models.result(feedback_id)
            if result is not None:
                return self.json(result.as_dict())
            found = await stored(self, lambda: models.store.feedback(feedback_id=feedback_id))
            if isinstance(found, Response):
                return found
            if not found:
                return self.error(404, f"feedback {feedback_id} not applied (yet)")
            return self.json({"status": "applied", **found[0].as_dict()})
