"""What every integration implements, and the HTTP rules they share.

A :class:`Notifier` sends one :class:`~agentwatch.alerts.model.Notification`. It returns an
optional reference (a message id a later notification can refer to, such as a Slack
thread) or raises :class:`DeliveryError`, which says whether retrying may help.

HTTP outcome, as in Alertmanager: 2xx is done; 5xx and 429 are retried (``Retry-After``
honoured); any other status fails at once with the status and a short, redacted reason.
Network errors and timeouts are retried; a TLS certificate that does not verify is not.
No message built here holds the receiver's URL or credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import msgspec
from aiohttp.helpers import basicauth_from_netrc, get_env_proxy_for_url, netrc_from_env
from yarl import URL

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.model import Kind, Notification
from agentwatch.storage.redact import redact_text

__all__ = [
    "USER_AGENT",
    "DeliveryError",
    "HttpNotifier",
    "HttpReply",
    "HttpTransport",
    "Notifier",
    "NotifyContext",
    "Secrets",
    "classify_response",
    "error_for_exception",
    "http_client",
    "parse_retry_after",
]

USER_AGENT = "agentwatch-alerts/1"
MAX_REASON_CHARS = 500
_ENV_CACHE = 256  # URLs whose proxy and .netrc lookups are kept


class DeliveryError(Exception):
    """A notification was not delivered. ``retryable``: trying again later may work."""

    def __init__(
        self,
        reason: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason[:MAX_REASON_CHARS]
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class NotifyContext:
    """What a notifier may need besides the notification."""

    thread_ref: str | None = None  # reference returned for an earlier notification of the alert


class Notifier(Protocol):
    """One receiver's integration."""

    name: str
    integration: str

    def supports(self, kind: Kind) -> bool:
        """Whether this integration sends notifications of ``kind``."""
        ...

    async def notify(self, notification: Notification, context: NotifyContext) -> str | None:
        """Deliver ``notification``; an optional reference, or :class:`DeliveryError`."""
        ...

    async def aclose(self) -> None: ...


class Secrets:
    """Values to scrub from any text before it is logged, stored or raised."""

    def __init__(self, values: Iterable[str | None]) -> None:
        self._values = sorted({v for v in values if v and len(v) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for value in self._values:
            text = text.replace(value, "[REDACTED]")
        return redact_text(text)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date).

    >>> parse_retry_after("7"), parse_retry_after(None), parse_retry_after("soon")
    (7.0, None, None)
    """
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(frozen=True, slots=True)
class HttpReply:
    """A receiver's answer: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return msgspec.json.decode(self.body)


def _body_hint(reply: HttpReply, secrets: Secrets) -> str:
    text = " ".join(reply.text.split())[:200]
    return f": {secrets.scrub(text)}" if text else ""


def classify_response(reply: HttpReply, secrets: Secrets) -> DeliveryError | None:
    """``None`` for 2xx, else the error (retryable for 5xx and 429)."""
    status = reply.status
    if 200 <= status < 300:
        return None
    hint = _body_hint(reply, secrets)
    if status == 429 or status >= 500:
        return DeliveryError(
            f"HTTP {status}{hint}",
            retryable=True,
            status=status,
            retry_after=parse_retry_after(reply.headers.get("retry-after")),
        )
    return DeliveryError(f"HTTP {status} (not retried){hint}", retryable=False, status=status)


def error_for_exception(exc: BaseException, secrets: Secrets) -> DeliveryError:
    """A :class:`DeliveryError` for an exception raised while sending."""
    name = type(exc).__name__
    detail = secrets.scrub(str(exc))[:200]
    text = f"{name}: {detail}" if detail else name
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(
            cause, ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError
        ):
            return DeliveryError(
                f"TLS certificate verification failed ({secrets.scrub(str(cause))[:200]})",
                retryable=False,
            )
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return DeliveryError(f"timeout ({name})", retryable=True)
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return DeliveryError(f"invalid receiver URL ({name})", retryable=False)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return DeliveryError(f"network error ({text})", retryable=True)
    return DeliveryError(f"unexpected error ({text})", retryable=False)


@dataclass(frozen=True, slots=True)
class _EnvRoute:
    """What the environment says about requests to a URL (see :class:`HttpTransport`)."""

    proxy: str | None = None
    proxy_headers: dict[str, str] | None = None  # Proxy-Authorization
    authorization: str | None = None  # from ~/.netrc


def _env_route(url: str) -> _EnvRoute:
    """The proxy (``HTTP(S)_PROXY``/``NO_PROXY``) and ``~/.netrc`` credentials for ``url``,
    as aiohttp's ``trust_env`` finds them (blocking: reads files)."""
    parsed = URL(url)
    proxy: str | None = None
    proxy_headers: dict[str, str] | None = None
    with contextlib.suppress(LookupError):
        found, proxy_auth = get_env_proxy_for_url(parsed)
        proxy = str(found)
        if proxy_auth is not None:
            proxy_headers = {"Proxy-Authorization": proxy_auth.encode()}
    authorization: str | None = None
    if parsed.host is not None and parsed.user is None:
        with contextlib.suppress(LookupError):
            authorization = basicauth_from_netrc(netrc_from_env(), parsed.host).encode()
    return _EnvRoute(proxy, proxy_headers, authorization)


class HttpTransport:
    """One receiver's HTTP client: keep-alive connections, at most its concurrency at once,
    the policy's timeout per request, TLS certificates always verified (optionally against
    a private CA), no redirects, no cookies.

    Requests go through one aiohttp session per receiver. Proxies (``HTTPS_PROXY``,
    ``NO_PROXY``, ...) and ``~/.netrc`` credentials are honoured as with aiohttp's
    ``trust_env``, but looked up once per URL (on first use, off the event loop) rather than
    on every request (aiohttp's ``trust_env`` reads ``.netrc`` twice per request, on
    executor threads).
    """

    def __init__(self, policy: DeliveryPolicy, *, ca_file: str | None = None) -> None:
        self.timeout = policy.timeout
        self.limit = policy.concurrency
        self.ssl_context = ssl.create_default_context(cafile=ca_file)
        self._session: aiohttp.ClientSession | None = None
        self._env: dict[str, _EnvRoute] = {}

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.limit, ssl=self.ssl_context, enable_cleanup_closed=True
                ),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": USER_AGENT},
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # see _env_route
            )
        return self._session

    async def _route(self, url: str) -> _EnvRoute:
        route = self._env.get(url)
        if route is None:
            route = await asyncio.to_thread(_env_route, url)
            if len(self._env) >= _ENV_CACHE:
                self._env.clear()
            self._env[url] = route
        return route

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> HttpReply:
        route = await self._route(url)
        if route.authorization is not None and not any(
            k.lower() == "authorization" for k in headers
        ):  # (an explicit Authorization header wins over .netrc)
            headers = {**headers, "Authorization": route.authorization}
        session = self._open()
        async with session.post(
            url,
            data=content,
            headers=headers,
            allow_redirects=False,
            proxy=route.proxy,
            proxy_headers=route.proxy_headers,
        ) as response:
            body = await response.read()
            return HttpReply(
                response.status, {k.lower(): v for k, v in response.headers.items()}, body
            )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def http_client(policy: DeliveryPolicy, *, ca_file: str | None = None) -> HttpTransport:
    return HttpTransport(policy, ca_file=ca_file)


_json = msgspec.json.Encoder()


class HttpNotifier:
    """Shared plumbing of the HTTP integrations: one client, POST JSON, classify."""

    integration = "http"

    def __init__(self, name: str, client: HttpTransport, secrets: Secrets) -> None:
        self.name = name
        self.client = client
        self.secrets = secrets

    def supports(self, kind: Kind) -> bool:
        return kind in ("firing", "resolved")

    async def post_json(
        self, url: str, body: Any, headers: dict[str, str] | None = None
    ) -> HttpReply:
        content = body if isinstance(body, bytes) else _json.encode(body)
        all_headers = {"Content-Type": "application/json"}
        all_headers.update(headers or {})
        try:
            response = await self.client.post(url, content, all_headers)
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            error = error_for_exception(exc, self.secrets)
        else:
            failure = classify_response(response, self.secrets)
            if failure is None:
                return response
            raise failure
        # Raised outside the handler: the client's exception (which may hold the URL) is not
        # chained into tracebacks.
        raise error

    async def aclose(self) -> None:
        await self.client.aclose()
