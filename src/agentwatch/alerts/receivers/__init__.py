"""The integrations, by name: ``webhook``, ``pagerduty``, ``slack``.

A registry (name -> :class:`Integration`) rather than an if-chain: an integration is one
folder with an options model and a factory, registered here. :func:`build_notifier` turns a
receiver's configuration into its :class:`~agentwatch.alerts.receivers.base.Notifier`.

A receiver whose credential (URL, routing key, token) is empty is *disabled*: it is built as
:class:`DisabledNotifier`, logged at start, and its notifications are recorded as skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from agentwatch.alerts.config import AlertSettings, ConfigError, DeliveryPolicy, ReceiverConfig
from agentwatch.alerts.model import Kind, Notification
from agentwatch.alerts.receivers.base import DeliveryError, Notifier, NotifyContext
from agentwatch.alerts.receivers.pagerduty import PagerDutyNotifier, PagerDutyOptions
from agentwatch.alerts.receivers.slack import SlackNotifier, SlackOptions
from agentwatch.alerts.receivers.webhook import WebhookNotifier, WebhookOptions

__all__ = [
    "INTEGRATIONS",
    "DisabledNotifier",
    "Integration",
    "build_notifier",
    "register",
    "validate_receivers",
]

Factory = Callable[[str, Any, DeliveryPolicy, AlertSettings], Notifier]


@dataclass(frozen=True, slots=True)
class Integration:
    name: str
    options: type[BaseModel]
    factory: Factory
    rate_per_s: float | None = None  # default rate limit
    burst: int = 1


INTEGRATIONS: dict[str, Integration] = {}


def register(integration: Integration) -> Integration:
    INTEGRATIONS[integration.name] = integration
    return integration


register(
    Integration(
        "webhook",
        WebhookOptions,
        lambda name, options, policy, settings: WebhookNotifier(
            name,
            options,
            policy,
            external_url=settings.external_url,
            grafana_url=settings.grafana_url,
        ),
    )
)
register(
    Integration(
        "pagerduty",
        PagerDutyOptions,
        lambda name, options, policy, settings: PagerDutyNotifier(
            name, options, policy, grafana_url=settings.grafana_url
        ),
        rate_per_s=50.0,
        burst=10,
    )
)
register(
    Integration(
        "slack",
        SlackOptions,
        lambda name, options, policy, settings: SlackNotifier(
            name, options, policy, grafana_url=settings.grafana_url
        ),
        rate_per_s=1.0,
        burst=1,
    )
)


class DisabledNotifier:
    """A receiver without its credential: nothing is sent, every notification is skipped."""

    def __init__(self, name: str, integration: str, why: str) -> None:
        self.name = name
        self.integration = integration
        self.why = why

    def supports(self, kind: Kind) -> bool:
        return False

    async def notify(self, notification: Notification, context: NotifyContext) -> str | None:
        raise DeliveryError(f"receiver disabled: {self.why}", retryable=False)

    async def aclose(self) -> None:
        return None


def _options(config: ReceiverConfig) -> tuple[Integration, BaseModel]:
    integration = INTEGRATIONS.get(config.type)
    if integration is None:
        known = ", ".join(sorted(INTEGRATIONS))
        raise ConfigError(f"receiver {config.name!r}: unknown type {config.type!r} ({known})")
    try:
        options = integration.options.model_validate(config.options)
    except ValidationError as exc:
        # The message names the fields, never their (possibly secret) values.
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or '-'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"receiver {config.name!r} ({config.type}): {problems}") from None
    return integration, options


def validate_receivers(settings: AlertSettings) -> None:
    """Raise :class:`ConfigError` if a receiver's integration fields are invalid."""
    for config in settings.receivers:
        _options(config)
        settings.policy_for(config)


def build_notifier(config: ReceiverConfig, settings: AlertSettings) -> tuple[Notifier, Integration]:
    integration, options = _options(config)
    policy = settings.policy_for(config)
    if not getattr(options, "configured", True):
        return DisabledNotifier(config.name, integration.name, "no credential configured"), (
            integration
        )
    return integration.factory(config.name, options, policy, settings), integration
