"""The dispatcher's HTTP API (aiohttp), and the client the CLI uses.

chDB lets one process open a data dir, and the dispatcher holds its own; so the CLI does
not open the alert tables while the dispatcher runs: it asks the dispatcher. Bound to
127.0.0.1 by default; with ``api.token`` set every request needs
``Authorization: Bearer <token>``.

=========================================  ==================================================
``GET  /healthz``                          ``{"status": "ok", "ready": bool}``
``GET  /api/v1/status``                    counters, groups, receivers and their circuits
``GET  /api/v1/alerts?status=&limit=``     alerts, newest first (``live``: held in memory)
``GET  /api/v1/alerts/{id}``               one alert (id or unique prefix), its anomalies
                                           and every notification attempt
``POST /api/v1/alerts/{id}/ack``           ``{"by": "...", "comment": "..."}``
``GET  /api/v1/silences``                  every silence with its state
``POST /api/v1/silences``                  ``{"matchers": [...], "duration": "2h" | "ends_at":
                                           ..., "starts_at": ..., "created_by", "comment"}``
``DELETE /api/v1/silences/{id}``           expire a silence now
``GET  /api/v1/dead-letters?limit=``       notifications that were not delivered
=========================================  ==================================================
"""

from __future__ import annotations

import hmac
from datetime import datetime
from typing import Any

import httpx
from aiohttp import web

from agentwatch.alerts.config import ApiSettings, parse_duration
from agentwatch.alerts.dispatcher import Dispatcher, NotFound
from agentwatch.alerts.grouping import AlertState
from agentwatch.alerts.matchers import parse_matcher
from agentwatch.alerts.receivers.webhook.payload import rfc3339
from agentwatch.alerts.silences import SilenceError

__all__ = ["ApiClient", "ApiError", "ApiServer", "alert_dict"]

MAX_LIMIT = 1000


def alert_dict(state: AlertState, *, live: bool = False, full: bool = False) -> dict[str, Any]:
    """An alert as JSON (``full``: with its latest anomalies)."""

    def iso(dt: datetime | None) -> str | None:
        return rfc3339(dt) if dt is not None else None

    out: dict[str, Any] = {
        "id": state.alert_id,
        "status": state.status,
        "acknowledged": bool(state.acked_by),
        "route": state.route,
        "group_labels": state.group_labels,
        "receivers": list(state.receivers),
        "severity": state.severity,
        "max_score": round(state.max_score, 1),
        "title": state.title,
        "anomaly_count": state.anomaly_count,
        "folded": state.folded_total,
        "notifications": state.sequence,
        "started_at": iso(state.started_at),
        "last_anomaly_at": iso(state.last_anomaly_at),
        "last_notified_at": iso(state.last_notified_at),
        "resolved_at": iso(state.resolved_at),
        "acked_by": state.acked_by,
        "acked_at": iso(state.acked_at),
        "ack_comment": state.ack_comment,
        "live": live,
    }
    if full:
        out["anomalies"] = [
            {
                "anomaly_id": item.anomaly_id,
                "agent_id": item.agent_id,
                "detector": item.detector,
                "severity": item.severity,
                "score": round(item.score, 1),
                "ts": rfc3339(item.ts),
                "title": item.title,
                "explanation": item.explanation,
            }
            for item in state.recent
        ]
    return out


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class ApiServer:
    """Serves the API of ``dispatcher`` on ``settings.host:settings.port``."""

    def __init__(self, dispatcher: Dispatcher, settings: ApiSettings) -> None:
        self.dispatcher = dispatcher
        self.settings = settings
        self._runner: web.AppRunner | None = None
        self.port = settings.port
        self._token = settings.token.get_secret_value() if settings.token else ""

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._auth], client_max_size=256 * 1024)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/api/v1/status", self.status)
        app.router.add_get("/api/v1/alerts", self.list_alerts)
        app.router.add_get("/api/v1/alerts/{alert_id}", self.show_alert)
        app.router.add_post("/api/v1/alerts/{alert_id}/ack", self.ack_alert)
        app.router.add_get("/api/v1/silences", self.list_silences)
        app.router.add_post("/api/v1/silences", self.add_silence)
        app.router.add_delete("/api/v1/silences/{silence_id}", self.expire_silence)
        app.router.add_get("/api/v1/dead-letters", self.dead_letters)
        return app

    async def start(self) -> int:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None)  # port 0 picks a free one
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self._token and request.path != "/healthz":
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self._token}".encode()):
                return _error(401, "missing or wrong bearer token")
        try:
            response: web.StreamResponse = await handler(request)
        except NotFound as exc:
            return _error(404, f"not found: {exc}")
        except (SilenceError, ValueError) as exc:
            return _error(400, str(exc))
        return response

    # -- handlers ---------------------------------------------------------------------

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "ready": self.dispatcher.ready.is_set()})

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.dispatcher.status())

    async def list_alerts(self, request: web.Request) -> web.Response:
        status = request.query.get("status") or None
        if status == "all":
            status = None
        if status not in (None, "firing", "resolved"):
            raise ValueError("status must be firing, resolved or all")
        limit = min(int(request.query.get("limit", "50")), MAX_LIMIT)
        alerts = await self.dispatcher.alerts(status, limit)
        return web.json_response({"alerts": [alert_dict(s, live=live) for s, live in alerts]})

    async def show_alert(self, request: web.Request) -> web.Response:
        state, notifications = await self.dispatcher.alert(request.match_info["alert_id"])
        body = alert_dict(state, full=True)
        body["notification_attempts"] = notifications
        return web.json_response(body)

    async def ack_alert(self, request: web.Request) -> web.Response:
        data = await _json_body(request)
        by = str(data.get("by") or "").strip()
        if not by:
            raise ValueError("'by' (who acknowledges) is required")
        comment = str(data.get("comment") or "")[:2000]
        state = await self.dispatcher.acknowledge(request.match_info["alert_id"], by[:200], comment)
        return web.json_response(alert_dict(state))

    async def list_silences(self, request: web.Request) -> web.Response:
        now = self.dispatcher._now()
        from agentwatch.alerts.grouping import utc

        return web.json_response(
            {"silences": [s.as_dict(utc(now)) for s in self.dispatcher.silencer.all()]}
        )

    async def add_silence(self, request: web.Request) -> web.Response:
        data = await _json_body(request)
        matchers = data.get("matchers")
        if isinstance(matchers, str):
            matchers = [matchers]
        if not isinstance(matchers, list) or not all(isinstance(m, str) for m in matchers):
            raise ValueError("'matchers' must be a list of strings such as 'agent_id=\"a-1\"'")
        for matcher in matchers:
            parse_matcher(matcher)
        duration = data.get("duration")
        silence = await self.dispatcher.add_silence(
            matchers,
            created_by=str(data.get("created_by") or ""),
            comment=str(data.get("comment") or ""),
            duration_s=parse_duration(duration) if duration is not None else None,
            starts_at=_datetime(data.get("starts_at")),
            ends_at=_datetime(data.get("ends_at")),
        )
        return web.json_response(silence.as_dict(), status=201)

    async def expire_silence(self, request: web.Request) -> web.Response:
        silence = await self.dispatcher.expire_silence(request.match_info["silence_id"])
        return web.json_response(silence.as_dict())

    async def dead_letters(self, request: web.Request) -> web.Response:
        limit = min(int(request.query.get("limit", "100")), MAX_LIMIT)
        return web.json_response({"dead_letters": await self.dispatcher.dead_letters(limit)})


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError as exc:
        raise ValueError("the request body must be a JSON object") from exc
    if not isinstance(data, dict):
        raise ValueError("the request body must be a JSON object")
    return data


def _datetime(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError("times are RFC 3339 strings")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ApiError(RuntimeError):
    """The API answered with an error, or could not be reached (``unreachable``)."""

    def __init__(self, message: str, *, status: int = 0, unreachable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.unreachable = unreachable


class ApiClient:
    """A small synchronous client of the dispatcher API (used by the CLI)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._client.request(method, f"{self.base_url}{path}", **kwargs)
        except httpx.TransportError as exc:
            message = (
                f"the alert dispatcher API at {self.base_url} is not reachable "
                f"({type(exc).__name__})"
            )
            unreachable = True
        else:
            unreachable = False
            try:
                data = response.json()
            except ValueError:
                data = {"error": response.text[:200]}
            if response.status_code < 400:
                return data
            message = str(data.get("error") if isinstance(data, dict) else data)
            raise ApiError(message, status=response.status_code)
        raise ApiError(message, unreachable=unreachable)

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/api/v1/status")
        return result

    def alerts(self, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if status:
            params["status"] = status
        result: list[dict[str, Any]] = self._call("GET", "/api/v1/alerts", params=params)["alerts"]
        return result

    def alert(self, alert_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/alerts/{alert_id}")
        return result

    def ack(self, alert_id: str, by: str, comment: str = "") -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "POST", f"/api/v1/alerts/{alert_id}/ack", json={"by": by, "comment": comment}
        )
        return result

    def silences(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/api/v1/silences")["silences"]
        return result

    def add_silence(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/api/v1/silences", json=body)
        return result

    def expire_silence(self, silence_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("DELETE", f"/api/v1/silences/{silence_id}")
        return result

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call(
            "GET", "/api/v1/dead-letters", params={"limit": limit}
        )["dead_letters"]
        return result
