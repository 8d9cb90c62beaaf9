"""Generic webhook: the Alertmanager v4 payload, optionally HMAC-signed.

Fields: ``url`` (may hold a token: treated as a secret), ``hmac_secret`` (adds the
``X-Agentwatch-Signature`` header, see :mod:`.signing`), ``headers`` (extra headers, values
treated as secrets), ``max_alerts`` (cap on ``alerts[]``, 0 = all), ``ca_file`` (a private
CA; certificates are always verified).

Each request carries ``Idempotency-Key`` / ``X-Agentwatch-Notification-Id`` (the same on a
redelivery after a restart) and ``X-Agentwatch-Dedup-Key`` (the same for an alert from
trigger to resolve), so a receiver can drop duplicates.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.model import Kind, Notification
from agentwatch.alerts.receivers.base import HttpNotifier, NotifyContext, Secrets, http_client
from agentwatch.alerts.receivers.webhook.payload import alertmanager_payload
from agentwatch.alerts.receivers.webhook.signing import SIGNATURE_HEADER, sign

__all__ = ["WebhookNotifier", "WebhookOptions"]

_json = msgspec.json.Encoder()


class WebhookOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: SecretStr | None = None
    hmac_secret: SecretStr | None = None
    signature_header: str = SIGNATURE_HEADER
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    max_alerts: int = Field(default=0, ge=0)
    ca_file: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.url and self.url.get_secret_value())


class WebhookNotifier(HttpNotifier):
    integration = "webhook"

    def __init__(
        self,
        name: str,
        options: WebhookOptions,
        policy: DeliveryPolicy,
        *,
        external_url: str = "",
        grafana_url: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        assert options.url is not None
        self.url = options.url.get_secret_value()
        self.hmac_secret = (
            options.hmac_secret.get_secret_value().encode() if (options.hmac_secret) else None
        )
        self.extra_headers = {k: v.get_secret_value() for k, v in options.headers.items()}
        secrets = Secrets(
            [
                self.url,
                self.hmac_secret.decode() if self.hmac_secret else None,
                *self.extra_headers.values(),
            ]
        )
        super().__init__(name, http_client(policy, ca_file=options.ca_file), secrets)
        self.options = options
        self.external_url = external_url
        self.grafana_url = grafana_url
        self.clock = clock

    def supports(self, kind: Kind) -> bool:
        return kind in ("firing", "resolved")

    def body(self, notification: Notification) -> bytes:
        payload = alertmanager_payload(
            notification,
            external_url=self.external_url,
            grafana_url=self.grafana_url,
            max_alerts=self.options.max_alerts,
        )
        return _json.encode(payload)

    async def notify(self, notification: Notification, context: NotifyContext) -> str | None:
        body = self.body(notification)
        headers = dict(self.extra_headers)
        headers["Idempotency-Key"] = notification.notification_id
        headers["X-Agentwatch-Notification-Id"] = notification.notification_id
        headers["X-Agentwatch-Dedup-Key"] = notification.dedup_key
        if self.hmac_secret is not None:
            headers[self.options.signature_header] = sign(self.hmac_secret, body, int(self.clock()))
        await self.post_json(self.url, body, headers)
        return None
