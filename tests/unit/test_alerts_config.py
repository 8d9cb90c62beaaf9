"""Alerting configuration: durations, environment references, validation, the example file."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentwatch.alerts.config import (
    AlertSettings,
    ConfigError,
    interpolate_env,
    load_alert_settings,
    parse_duration,
)
from agentwatch.alerts.receivers import build_notifier, validate_receivers
from agentwatch.alerts.routing import Router

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "alerting.example.yaml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("4h", 14400.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        (2, 2.0),
        ("1.5", 1.5),
        ("1d", 86400.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "5 minutes", "m5", "1x", True, None])
def test_invalid_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)


def test_environment_references() -> None:
    env = {"KEY": "abc", "EMPTY": ""}
    assert interpolate_env("${KEY}/${MISSING:-d}/${EMPTY:-e}", env) == "abc/d/e"
    assert interpolate_env(["$${KEY}", {"a": "${KEY}"}], env) == ["${KEY}", {"a": "abc"}]
    with pytest.raises(ConfigError, match="MISSING is not set"):
        interpolate_env("${MISSING}", env)


def _settings(**extra: object) -> dict[str, object]:
    data: dict[str, object] = {
        "receivers": [{"name": "hook", "type": "webhook", "url": "https://x.example/h"}],
        "routes": [{"name": "all", "receivers": ["hook"]}],
    }
    data.update(extra)
    return data


def test_references_are_checked() -> None:
    with pytest.raises(ValueError, match="receiver 'nope' is not defined"):
        AlertSettings.model_validate(_settings(routes=[{"name": "r", "receivers": ["nope"]}]))
    with pytest.raises(ValueError, match="fallback 'gone' is not a receiver"):
        AlertSettings.model_validate(
            _settings(receivers=[{"name": "a", "type": "webhook", "url": "u", "fallback": "gone"}])
        )
    with pytest.raises(ValueError, match="must be unique"):
        AlertSettings.model_validate(
            _settings(
                receivers=[
                    {"name": "a", "type": "webhook", "url": "u"},
                    {"name": "a", "type": "slack", "url": "u"},
                ],
                routes=[],
            )
        )
    with pytest.raises(ValueError, match="default_receivers"):
        AlertSettings.model_validate(_settings(default_receivers=["nope"]))


def test_route_overrides_and_delivery_overrides() -> None:
    settings = AlertSettings.model_validate(
        _settings(
            defaults={"group_wait": "10s", "group_by": ["agent_id"]},
            routes=[{"name": "fast", "receivers": "hook", "group_wait": "1s"}],
            receivers=[
                {"name": "hook", "type": "webhook", "url": "u", "delivery": {"max_attempts": 2}}
            ],
        )
    )
    route = Router(settings).routes[0]
    assert route.timing.group_wait == 1.0
    assert route.timing.group_by == ("agent_id",)
    policy = settings.policy_for(settings.receivers[0])
    assert policy.max_attempts == 2
    assert policy.timeout == settings.delivery.timeout


def test_integration_fields_are_validated_without_showing_values() -> None:
    settings = AlertSettings.model_validate(
        _settings(
            receivers=[
                {
                    "name": "hook",
                    "type": "webhook",
                    "url": "https://x/h?token=s3cr3t-value",
                    "bogus": "s3cr3t-value",
                }
            ]
        )
    )
    with pytest.raises(ConfigError) as info:
        validate_receivers(settings)
    assert "bogus" in str(info.value)
    assert "s3cr3t-value" not in str(info.value)
    unknown = AlertSettings.model_validate(
        _settings(receivers=[{"name": "hook", "type": "carrier-pigeon"}])
    )
    with pytest.raises(ConfigError, match="unknown type 'carrier-pigeon'"):
        validate_receivers(unknown)


def test_secrets_are_hidden_in_repr() -> None:
    settings = AlertSettings.model_validate(
        _settings(
            receivers=[
                {"name": "pd", "type": "pagerduty", "routing_key": "R0utingKey0123456789"},
            ],
            routes=[{"name": "all", "receivers": ["pd"]}],
        )
    )
    notifier, _ = build_notifier(settings.receivers[0], settings)
    assert "R0utingKey0123456789" not in repr(getattr(notifier, "options", ""))


def test_example_config_loads_with_and_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("PAGERDUTY_ROUTING_KEY", "SLACK_WEBHOOK_URL", "ALERTS_WEBHOOK_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = load_alert_settings(EXAMPLE)
    validate_receivers(settings)
    assert {r.name for r in settings.receivers} == {"oncall-pagerduty", "soc-slack", "soar-webhook"}
    disabled = [build_notifier(r, settings)[0] for r in settings.receivers]
    assert all(not n.supports("firing") for n in disabled)  # no credential: disabled

    monkeypatch.setenv("PAGERDUTY_ROUTING_KEY", "k" * 32)
    monkeypatch.setenv("AGENTWATCH_ALERTS_CONFIG", str(EXAMPLE))
    settings = load_alert_settings()
    pagerduty = build_notifier(settings.receivers[0], settings)[0]
    assert pagerduty.supports("resolved")
    router = Router(settings)
    labels = {"severity": "critical", "agent_id": "billing-1", "team": "payments"}
    assert [r.name for r in router.routes_for(labels)] == ["page-oncall", "payments"]


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_alert_settings(tmp_path / "missing.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_alert_settings(path)
    path.write_text("routes: [{name: r, receivers: [x]}]\n")
    with pytest.raises(ConfigError, match="not defined"):
        load_alert_settings(path)
    assert load_alert_settings(None, env={}) == AlertSettings()
