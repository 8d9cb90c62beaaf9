"""PagerDuty Events API v2: trigger, acknowledge and resolve with one ``dedup_key``.

Fields: ``routing_key`` (the integration key, a secret), ``url`` (default
``https://events.pagerduty.com/v2/enqueue``), ``client_url``, ``ca_file``. PagerDuty answers
202 when it accepted an event, 400 for an invalid one (not retried), 429 when rate limited
and 5xx when it failed (both retried).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, SecretStr

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.model import Kind, Notification
from agentwatch.alerts.receivers.base import HttpNotifier, NotifyContext, Secrets, http_client
from agentwatch.alerts.receivers.pagerduty.payload import pagerduty_event

__all__ = ["EVENTS_URL", "PagerDutyNotifier", "PagerDutyOptions"]

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"


class PagerDutyOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    routing_key: SecretStr | None = None
    url: str = EVENTS_URL
    client_url: str = ""
    ca_file: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.routing_key and self.routing_key.get_secret_value())


class PagerDutyNotifier(HttpNotifier):
    integration = "pagerduty"

    def __init__(
        self, name: str, options: PagerDutyOptions, policy: DeliveryPolicy, *, grafana_url: str = ""
    ) -> None:
        assert options.routing_key is not None
        self.routing_key = options.routing_key.get_secret_value()
        super().__init__(
            name, http_client(policy, ca_file=options.ca_file), Secrets([self.routing_key])
        )
        self.options = options
        self.grafana_url = grafana_url

    def supports(self, kind: Kind) -> bool:
        return kind in ("firing", "resolved", "acknowledged")

    async def notify(self, notification: Notification, context: NotifyContext) -> str | None:
        event = pagerduty_event(
            notification,
            self.routing_key,
            grafana_url=self.grafana_url,
            client_url=self.options.client_url,
        )
        await self.post_json(self.options.url, event)
        return notification.dedup_key
