"""Alerting settings: routes, receivers, grouping, delivery policy, API and storage.

Loaded from the YAML file named by ``--config`` or ``AGENTWATCH_ALERTS_CONFIG`` (see
``deploy/alerting.example.yaml`` and ``docs/alerting.md``). Values may reference the
environment as ``${VAR}`` or ``${VAR:-default}``, so routing keys and webhook URLs stay out
of the file. Durations are numbers of seconds or strings such as ``"250ms"``, ``"30s"``,
``"5m"``, ``"4h"``, ``"1h30m"``.

The settings are frozen; each component receives only its part.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from agentwatch.alerts.matchers import Matcher, parse_matcher
from agentwatch.schemas.anomaly import SEVERITIES, Severity

__all__ = [
    "CONFIG_ENV",
    "AlertSettings",
    "ApiSettings",
    "ConfigError",
    "DeliveryPolicy",
    "GroupTiming",
    "KafkaAlertSettings",
    "ReceiverConfig",
    "RouteConfig",
    "RouteMatch",
    "StorageAlertSettings",
    "StormSettings",
    "interpolate_env",
    "load_alert_settings",
    "parse_duration",
]

CONFIG_ENV = "AGENTWATCH_ALERTS_CONFIG"

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(ValueError):
    """The alerting configuration is invalid (the message says where and why)."""


def parse_duration(value: Any) -> float:
    """Seconds from a number or a duration string.

    >>> parse_duration("1h30m"), parse_duration("250ms"), parse_duration(5)
    (5400.0, 0.25, 5.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '30s'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            return float(text)
        except ValueError:
            pass
        pos, total = 0, 0.0
        for match in _DURATION_RE.finditer(text):
            if match.start() != pos:
                break
            total += float(match[1]) * _UNIT_S[match[2]]
            pos = match.end()
        if text and pos == len(text):
            return total
    raise ValueError(f"invalid duration {value!r} (use e.g. 30s, 5m, 4h, 1h30m, 250ms)")


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


class GroupTiming(_Section):
    """Alertmanager's grouping timers and the resolve timeout, for one route."""

    group_by: tuple[str, ...] = ("agent_id", "detector")
    group_wait: Duration = Field(
        default=30.0, description="wait after a group's first anomaly before notifying"
    )
    group_interval: Duration = Field(
        default=300.0, description="wait between notifications about new anomalies of a group"
    )
    repeat_interval: Duration = Field(
        default=4 * 3600.0,
        description="re-send a still firing, unacknowledged group after this (0: never)",
    )
    resolve_timeout: Duration = Field(
        default=600.0, description="a group with no new anomaly for this long is resolved"
    )


class StormSettings(_Section):
    """The global storm guard, applied to every group."""

    max_alerts_per_minute: int = Field(
        default=100,
        ge=1,
        description="anomalies per minute and group listed one by one; further ones are "
        "folded into the group's next notification and counted",
    )
    max_alerts_per_notification: int = Field(
        default=100, ge=1, description="anomalies listed in one notification; the rest counted"
    )


class DeliveryPolicy(_Section):
    """Retry, circuit breaker, rate limit and timeouts of one receiver."""

    timeout: Duration = Field(default=10.0, gt=0, description="per HTTP request")
    max_attempts: int = Field(default=10, ge=1)
    max_retry_duration: Duration = Field(
        default=600.0, description="give up (dead letter) after retrying this long"
    )
    backoff_initial: Duration = Field(default=1.0, gt=0)
    backoff_max: Duration = Field(default=60.0, gt=0)
    max_retry_after: Duration = Field(
        default=300.0, description="cap on a receiver's Retry-After header"
    )
    circuit_failures: int = Field(
        default=5, ge=1, description="consecutive retryable failures that open the circuit"
    )
    circuit_reset: Duration = Field(
        default=60.0, gt=0, description="an open circuit lets one trial request through after"
    )
    rate_per_s: float | None = Field(
        default=None, gt=0, description="requests per second (default: the integration's)"
    )
    burst: int | None = Field(default=None, ge=1)
    concurrency: int = Field(
        default=16,
        ge=1,
        description="requests in flight at once (with keep-alive connections); a receiver "
        "takes at most about concurrency / response time notifications per second",
    )


class ReceiverConfig(BaseModel):
    """One receiver: a name, an integration ``type`` and the integration's own fields.

    The integration fields (``url``, ``routing_key``, ...) are validated by the integration
    (see :mod:`agentwatch.alerts.receivers`).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
    type: str
    fallback: str | None = Field(
        default=None, description="receiver that gets a notification this one could not deliver"
    )
    delivery: dict[str, Any] = Field(
        default_factory=dict, description="overrides of the default delivery policy"
    )

    @property
    def options(self) -> dict[str, Any]:
        """The integration's own fields."""
        return dict(self.model_extra or {})


def _as_list(value: Any) -> Any:
    if isinstance(value, str):
        return [value]
    return value


StrList = Annotated[tuple[str, ...] | None, BeforeValidator(_as_list)]


class RouteMatch(_Section):
    """What a route matches; every given condition must hold (lists: any of)."""

    severity: Annotated[tuple[Severity, ...] | None, BeforeValidator(_as_list)] = None
    min_severity: Severity | None = None
    detector: StrList = Field(default=None, description="glob patterns")
    agent: StrList = Field(default=None, description="glob patterns on agent_id")
    agent_type: StrList = None
    peer_group: StrList = None
    team: StrList = None
    labels: dict[str, str] = Field(default_factory=dict, description="exact label values")
    matchers: tuple[Matcher, ...] = Field(
        default=(), description='Alertmanager matchers: name="v", name!="v", name=~"re", name!~"re"'
    )

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse_matchers(cls, value: Any) -> Any:
        if value is None:
            return ()
        if isinstance(value, str):
            value = [value]
        return tuple(parse_matcher(v) if isinstance(v, str) else v for v in value)


class RouteConfig(_Section):
    """A route: a match, the receivers it notifies, and optional grouping overrides."""

    name: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")]
    match: RouteMatch = RouteMatch()
    receivers: Annotated[tuple[str, ...], BeforeValidator(_as_list)]
    continue_: bool = Field(
        default=False, alias="continue", description="keep matching later routes"
    )
    group_by: Annotated[tuple[str, ...] | None, BeforeValidator(_as_list)] = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    resolve_timeout: Duration | None = None

    def timing(self, defaults: GroupTiming) -> GroupTiming:
        """``defaults`` with this route's overrides applied."""
        overrides = {
            k: getattr(self, k)
            for k in GroupTiming.model_fields
            if getattr(self, k, None) is not None
        }
        return defaults.model_copy(update=overrides)


class ApiSettings(_Section):
    """The dispatcher's HTTP API (used by the CLI): alerts, acks, silences, health."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9095, ge=0, le=65535)
    token: SecretStr | None = Field(
        default=None, description="if set, every request needs 'Authorization: Bearer <token>'"
    )


class StorageAlertSettings(_Section):
    dsn: SecretStr | None = Field(
        default=None,
        description="ClickHouse DSN for the alert tables; default: the main storage DSN when "
        "it is a server, else chdb:///<data_dir>/alerts-clickhouse (chDB allows one "
        "process per data dir and the ingest worker owns the main one)",
    )
    database: str | None = Field(default=None, description="default: the main database")
    flush_interval: Duration = Field(
        default=0.5,
        gt=0,
        description="delivery attempts are stored in one insert at most this often (a "
        "notification's outbox offset is committed once its outcome is stored)",
    )
    alert_flush_interval: Duration = Field(
        default=0.25,
        ge=0,
        description="alert states are stored in one insert at most this often, after their "
        "notifications are on the outbox (the anomalies they list are committed once stored)",
    )


class KafkaAlertSettings(_Section):
    group_id: str = "agentwatch-alerts"
    delivery_group_id: str = "agentwatch-alerts-delivery"
    outbox_topic: str = "agentwatch.alerts.outbox.v1"
    max_in_flight: int = Field(
        default=10_000,
        ge=1,
        description="notifications being delivered (or waiting to be) before new ones are "
        "left to the outbox consumer and it pauses; also the alert states waiting to be "
        "stored before the dispatcher waits for storage",
    )
    commit_interval: Duration = Field(default=1.0, gt=0)
    fetch_max_wait: Duration = Field(default=0.02, gt=0)


class AlertSettings(_Section):
    """Everything the alert dispatcher needs besides Kafka's bootstrap and the data dir."""

    external_url: str = Field(
        default="", description="URL of this alerting instance (Alertmanager's externalURL)"
    )
    grafana_url: str = Field(default="", description="Grafana base URL for agent links")
    defaults: GroupTiming = GroupTiming()
    storm: StormSettings = StormSettings()
    delivery: DeliveryPolicy = DeliveryPolicy()
    receivers: tuple[ReceiverConfig, ...] = ()
    routes: tuple[RouteConfig, ...] = ()
    default_receivers: Annotated[tuple[str, ...], BeforeValidator(_as_list)] = Field(
        default=(), description="receivers for anomalies no route matched (empty: dropped)"
    )
    teams: dict[str, tuple[str, ...]] = Field(
        default_factory=dict,
        description="team -> agent_id glob patterns; sets the team label when the anomaly has none",
    )
    tick: Duration = Field(default=0.05, gt=0, description="longest sleep of the group timer")
    api: ApiSettings = ApiSettings()
    storage: StorageAlertSettings = StorageAlertSettings()
    kafka: KafkaAlertSettings = KafkaAlertSettings()

    @field_validator("teams", mode="before")
    @classmethod
    def _teams(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @model_validator(mode="after")
    def _check_references(self) -> AlertSettings:
        names = [r.name for r in self.receivers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"receiver names must be unique: {', '.join(duplicates)}")
        known = set(names)
        for receiver in self.receivers:
            if receiver.fallback is not None:
                if receiver.fallback not in known:
                    raise ValueError(
                        f"receiver {receiver.name!r}: fallback {receiver.fallback!r} is not a "
                        "receiver"
                    )
                if receiver.fallback == receiver.name:
                    raise ValueError(f"receiver {receiver.name!r} cannot be its own fallback")
        route_names = [r.name for r in self.routes]
        duplicates = sorted({n for n in route_names if route_names.count(n) > 1})
        if duplicates:
            raise ValueError(f"route names must be unique: {', '.join(duplicates)}")
        for route in self.routes:
            for name in route.receivers:
                if name not in known:
                    raise ValueError(f"route {route.name!r}: receiver {name!r} is not defined")
        for name in self.default_receivers:
            if name not in known:
                raise ValueError(f"default_receivers: receiver {name!r} is not defined")
        return self

    def policy_for(self, receiver: ReceiverConfig) -> DeliveryPolicy:
        """The default delivery policy with ``receiver``'s overrides."""
        if not receiver.delivery:
            return self.delivery
        data = self.delivery.model_dump()
        data.update(receiver.delivery)
        return DeliveryPolicy.model_validate(data)


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate_env(value: Any, env: dict[str, str] | None = None) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` in its strings replaced from ``env``.

    An unset variable without a default is an error; ``$${`` keeps a literal ``${``.

    >>> interpolate_env({"k": "${A}-${B:-x}"}, {"A": "1"})
    {'k': '1-x'}
    """
    environ = os.environ if env is None else env
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match[1], match[2]
            found = environ.get(name)
            if found:
                return found
            if default is not None:
                return default
            raise ConfigError(f"environment variable {name} is not set (use ${{{name}:-}})")

        parts = value.split("$${")
        return "${".join(_ENV_RE.sub(replace, part) for part in parts)
    if isinstance(value, dict):
        return {k: interpolate_env(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, env) for v in value]
    return value


def load_alert_settings(
    path: Path | str | None = None, *, env: dict[str, str] | None = None
) -> AlertSettings:
    """The settings from ``path`` (default: ``$AGENTWATCH_ALERTS_CONFIG``; none: defaults)."""
    environ = os.environ if env is None else env
    if path is None:
        path = environ.get(CONFIG_ENV) or None
    if path is None:
        return AlertSettings()
    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read the alerting config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    if "alerts" in data and len(data) == 1 and isinstance(data["alerts"], dict):
        data = data["alerts"]
    data = interpolate_env(data, dict(environ))
    try:
        return AlertSettings.model_validate(data)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


SEVERITY_RANK: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
