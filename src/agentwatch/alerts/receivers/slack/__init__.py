"""Slack: Block Kit messages through an incoming webhook or ``chat.postMessage``.

Fields: ``url`` (an incoming webhook URL; it is a secret), or ``token`` (a bot token) with
``channel`` and ``api_url`` (default ``https://slack.com/api/chat.postMessage``); ``ca_file``.
With a token, resolve and acknowledge are posted in the thread of the first message (the
message ``ts`` Slack returns); an incoming webhook returns no message id, so they are
posted as new messages there. Default rate: one message per second per receiver (Slack's
limit per webhook).
"""

from __future__ import annotations

from typing import Any

import msgspec
from pydantic import BaseModel, ConfigDict, SecretStr

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.model import Kind, Notification
from agentwatch.alerts.receivers.base import (
    DeliveryError,
    HttpNotifier,
    HttpReply,
    NotifyContext,
    Secrets,
    http_client,
)
from agentwatch.alerts.receivers.slack.blocks import slack_message

__all__ = ["POST_MESSAGE_URL", "SlackNotifier", "SlackOptions"]

POST_MESSAGE_URL = "https://slack.com/api/chat.postMessage"

# chat.postMessage "ok": false errors worth retrying.
_RETRYABLE_API_ERRORS = frozenset(
    {
        "ratelimited",
        "rate_limited",
        "internal_error",
        "fatal_error",
        "service_unavailable",
        "request_timeout",
    }
)


class SlackOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    url: SecretStr | None = None
    token: SecretStr | None = None
    channel: str = ""
    api_url: str = POST_MESSAGE_URL
    ca_file: str | None = None

    @property
    def configured(self) -> bool:
        if self.url and self.url.get_secret_value():
            return True
        return bool(self.token and self.token.get_secret_value() and self.channel)


class SlackNotifier(HttpNotifier):
    integration = "slack"

    def __init__(
        self, name: str, options: SlackOptions, policy: DeliveryPolicy, *, grafana_url: str = ""
    ) -> None:
        self.webhook_url = options.url.get_secret_value() if options.url else ""
        self.token = options.token.get_secret_value() if options.token else ""
        super().__init__(
            name,
            http_client(policy, ca_file=options.ca_file),
            Secrets([self.webhook_url, self.token]),
        )
        self.options = options
        self.grafana_url = grafana_url

    @property
    def threads(self) -> bool:
        return not self.webhook_url

    def supports(self, kind: Kind) -> bool:
        return True

    async def notify(self, notification: Notification, context: NotifyContext) -> str | None:
        message: dict[str, Any] = slack_message(notification, grafana_url=self.grafana_url)
        if not self.threads:
            await self.post_json(self.webhook_url, message)
            return None
        message["channel"] = self.options.channel
        message["unfurl_links"] = False
        if notification.kind != "firing" and context.thread_ref:
            message["thread_ts"] = context.thread_ref
        response = await self.post_json(
            self.options.api_url, message, {"Authorization": f"Bearer {self.token}"}
        )
        return self._message_ts(response, notification, context)

    def _message_ts(
        self, response: HttpReply, notification: Notification, context: NotifyContext
    ) -> str | None:
        try:
            data = response.json()
        except (ValueError, msgspec.DecodeError):
            raise DeliveryError("Slack answered without JSON", retryable=True) from None
        if not isinstance(data, dict):
            raise DeliveryError("Slack answered with unexpected JSON", retryable=True)
        if not data.get("ok"):
            error = str(data.get("error", "unknown_error"))[:100]
            raise DeliveryError(
                f"Slack API error: {self.secrets.scrub(error)}",
                retryable=error in _RETRYABLE_API_ERRORS,
            )
        if notification.kind == "firing" and not context.thread_ref:
            ts = data.get("ts")
            return str(ts) if ts else None
        return context.thread_ref
