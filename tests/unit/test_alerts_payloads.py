"""Payload builders: Alertmanager webhook v4, PagerDuty Events v2, Slack Block Kit, HMAC."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from agentwatch.alerts.config import DeliveryPolicy
from agentwatch.alerts.model import AlertItem, Notification
from agentwatch.alerts.receivers.base import HttpReply, NotifyContext
from agentwatch.alerts.receivers.pagerduty import PagerDutyNotifier, PagerDutyOptions
from agentwatch.alerts.receivers.pagerduty.payload import PAGERDUTY_SEVERITY, pagerduty_event
from agentwatch.alerts.receivers.slack.blocks import LIMITS, slack_message
from agentwatch.alerts.receivers.webhook import WebhookNotifier, WebhookOptions
from agentwatch.alerts.receivers.webhook.payload import ZERO_TIME, alertmanager_payload
from agentwatch.alerts.receivers.webhook.signing import sign, verify

T = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def item(i: int, *, title: str = "", score: float = 80.0) -> AlertItem:
    return AlertItem(
        anomaly_id=f"an-{i}",
        agent_id="billing-7",
        detector="new_destination",
        severity="high",
        score=score,
        title=title or f"billing-7: new destination {i}",
        explanation=f"billing-7 sent data to host-{i}.example, never seen before",
        ts=T + timedelta(seconds=i),
        detected_at=T + timedelta(seconds=i, milliseconds=5),
        labels={
            "alertname": "AgentBehaviourAnomaly",
            "agent_id": "billing-7",
            "detector": "new_destination",
            "severity": "high",
            "peer_group": "finance",
        },
        annotations={"keys": f"host-{i}.example"},
    )


def notification(kind: str = "firing", n: int = 3, **extra: Any) -> Notification:
    fields: dict[str, Any] = {
        "notification_id": "nid-1",
        "kind": kind,
        "receiver": "soar",
        "route": "all",
        "alert_id": "alert-1",
        "dedup_key": "aw-" + "d" * 40,
        "group_key": '{}/all:{agent_id="billing-7", detector="new_destination"}',
        "group_labels": {"agent_id": "billing-7", "detector": "new_destination"},
        "common_labels": {"agent_id": "billing-7", "peer_group": "finance"},
        "items": [item(i) for i in range(n)],
        "anomaly_count": n + 2,
        "new_count": n + 2,
        "folded": 2,
        "severity": "high",
        "max_score": 91.25,
        "started_at": T,
        "ended_at": T + timedelta(minutes=10) if kind == "resolved" else None,
        "created_at": T + timedelta(seconds=30),
        "sequence": 1,
    }
    fields.update(extra)
    return Notification(**fields)


# --- Alertmanager v4 ----------------------------------------------------------------------------


def test_alertmanager_v4_payload_field_by_field() -> None:
    body = alertmanager_payload(
        notification(), external_url="https://alerts.example", grafana_url="https://g.example"
    )
    assert set(body) == {
        "version",
        "groupKey",
        "truncatedAlerts",
        "status",
        "receiver",
        "groupLabels",
        "commonLabels",
        "commonAnnotations",
        "externalURL",
        "alerts",
    }
    assert body["version"] == "4"
    assert body["groupKey"] == '{}/all:{agent_id="billing-7", detector="new_destination"}'
    assert body["status"] == "firing"
    assert body["receiver"] == "soar"
    assert body["groupLabels"] == {"agent_id": "billing-7", "detector": "new_destination"}
    assert body["externalURL"] == "https://alerts.example"
    assert body["truncatedAlerts"] == 2
    assert body["commonLabels"]["agent_id"] == "billing-7"
    assert "anomaly_id" not in body["commonLabels"]
    common = body["commonAnnotations"]
    assert common["anomaly_count"] == "5"
    assert common["folded_anomalies"] == "2"
    assert common["max_score"] == "91.2"
    assert common["grafana_url"].startswith("https://g.example/d/agentwatch-agent/")
    assert len(body["alerts"]) == 3
    fingerprints = set()
    for i, alert in enumerate(body["alerts"]):
        assert set(alert) == {
            "status",
            "labels",
            "annotations",
            "startsAt",
            "endsAt",
            "generatorURL",
            "fingerprint",
        }
        assert alert["status"] == "firing"
        assert alert["labels"]["anomaly_id"] == f"an-{i}"
        assert alert["labels"]["alertname"] == "AgentBehaviourAnomaly"
        annotations = alert["annotations"]
        assert annotations["score"] == "80.0"
        assert annotations["severity"] == "high"
        assert "never seen before" in annotations["explanation"]
        assert annotations["summary"] == f"billing-7: new destination {i}"
        assert "var-agent=billing-7" in annotations["grafana_url"]
        assert alert["generatorURL"] == annotations["grafana_url"]
        assert RFC3339.match(alert["startsAt"])
        assert alert["endsAt"] == ZERO_TIME
        assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
        fingerprints.add(alert["fingerprint"])
    assert len(fingerprints) == 3
    json.dumps(body)  # serialisable as it is


def test_alertmanager_resolved_and_max_alerts() -> None:
    body = alertmanager_payload(notification("resolved"), max_alerts=2)
    assert body["status"] == "resolved"
    assert len(body["alerts"]) == 2
    assert body["truncatedAlerts"] == 3
    assert all(a["status"] == "resolved" for a in body["alerts"])
    assert all(a["endsAt"] == "2026-01-02T03:14:05.678Z" for a in body["alerts"])
    assert body["alerts"][0]["generatorURL"] == ""  # no Grafana configured


# --- PagerDuty ---------------------------------------------------------------------------------


def test_pagerduty_trigger_fields() -> None:
    event = pagerduty_event(notification(), "R" * 32, grafana_url="https://g.example")
    assert event["routing_key"] == "R" * 32
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == "aw-" + "d" * 40
    assert len(event["dedup_key"]) <= 255
    payload = event["payload"]
    assert set(payload) == {
        "summary",
        "source",
        "severity",
        "timestamp",
        "component",
        "group",
        "class",
        "custom_details",
    }
    assert payload["summary"] == "[high] billing-7: new destination 2 (5 anomalies)"
    assert payload["source"] == "billing-7"
    assert payload["severity"] == "error"
    assert RFC3339.match(payload["timestamp"])
    assert payload["class"] == "new_destination"
    assert payload["group"] == "finance"
    details = payload["custom_details"]
    assert details["anomaly_count"] == 5
    assert details["folded_anomalies"] == 2
    assert len(details["anomalies"]) == 3
    assert event["links"][0]["href"].startswith("https://g.example/")
    assert event["client"] == "agentwatch"


def test_pagerduty_severity_map_and_summary_limit() -> None:
    assert set(PAGERDUTY_SEVERITY.values()) <= {"critical", "error", "warning", "info"}
    assert PAGERDUTY_SEVERITY["critical"] == "critical"
    long = notification(items=[item(0, title="x" * 5000)])
    event = pagerduty_event(long, "k")
    assert len(event["payload"]["summary"]) == 1024


@pytest.mark.parametrize(
    ("kind", "action"), [("resolved", "resolve"), ("acknowledged", "acknowledge")]
)
def test_pagerduty_resolve_and_acknowledge_carry_only_the_key(kind: str, action: str) -> None:
    event = pagerduty_event(notification(kind), "k")
    assert event == {"routing_key": "k", "event_action": action, "dedup_key": "aw-" + "d" * 40}


# --- Slack --------------------------------------------------------------------------------------


def test_slack_blocks_are_cut_to_limits_and_escaped() -> None:
    hostile = "<!channel> & <https://evil.example|click> " + "y" * 10_000
    n = notification(n=60, items=[item(i, title=hostile) for i in range(60)])
    message = slack_message(n, grafana_url="https://g.example")
    blocks = message["blocks"]
    assert len(blocks) <= LIMITS["blocks"]
    assert len(message["text"]) <= LIMITS["text"]
    text = json.dumps(message)
    assert "<!channel>" not in text
    assert "&lt;!channel&gt; &amp;" in text
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= LIMITS["header"]
        if block["type"] == "section":
            if "text" in block:
                assert len(block["text"]["text"]) <= LIMITS["section"]
            assert len(block.get("fields", [])) <= LIMITS["fields"]
            for field in block.get("fields", []):
                assert len(field["text"]) <= LIMITS["field"]
    assert any(b["type"] == "actions" for b in blocks)
    assert "and 52 more" in text  # 60 listed - 10 shown + 2 folded


def test_slack_resolved_and_acknowledged() -> None:
    resolved = slack_message(notification("resolved"))
    assert resolved["blocks"][0]["text"]["text"].startswith("RESOLVED")
    ack = slack_message(notification("acknowledged", acked_by="ana", ack_comment="on it"))
    assert "Acknowledged by *ana*: on it" in json.dumps(ack)


# --- HMAC -----------------------------------------------------------------------------------------


def test_hmac_signature_is_verifiable_and_timestamped() -> None:
    body = b'{"version":"4"}'
    header = sign(b"secret", body, 1_700_000_000)
    t, v1 = (part.split("=", 1)[1] for part in header.split(","))
    expected = hmac.new(b"secret", f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    assert v1 == expected
    assert verify(b"secret", header, body, now=1_700_000_100)
    assert not verify(b"secret", header, body, now=1_700_000_301)  # replayed too late
    assert not verify(b"other", header, body, now=1_700_000_000)
    assert not verify(b"secret", "garbage", body, now=1_700_000_000)


# --- notifiers over a fake transport -----------------------------------------------------------


class FakeTransport:
    """Stands in for the HTTP transport: answers with ``handler(url, body, headers)``."""

    def __init__(self, handler: Any) -> None:
        self.handler = handler

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> HttpReply:
        result: HttpReply = self.handler(url, content, headers)
        return result

    async def aclose(self) -> None:
        return None


async def test_webhook_notifier_sends_signed_payload_with_idempotency_headers() -> None:
    seen: list[tuple[str, bytes, dict[str, str]]] = []

    def handler(url: str, body: bytes, headers: dict[str, str]) -> HttpReply:
        seen.append((url, body, headers))
        return HttpReply(200, {}, b"")

    options = WebhookOptions.model_validate(
        {"url": "https://soar.example/h?token=t0ps3cret", "hmac_secret": "hmac-key"}
    )
    notifier = WebhookNotifier("soar", options, DeliveryPolicy(), clock=lambda: 1_700_000_000)
    notifier.client = FakeTransport(handler)  # type: ignore[assignment]
    await notifier.notify(notification(), NotifyContext())
    ((url, body, headers),) = seen
    assert url == "https://soar.example/h?token=t0ps3cret"
    assert headers["Idempotency-Key"] == "nid-1"
    assert headers["X-Agentwatch-Dedup-Key"] == "aw-" + "d" * 40
    assert headers["Content-Type"] == "application/json"
    assert verify(b"hmac-key", headers["X-Agentwatch-Signature"], body, now=1_700_000_000)
    assert json.loads(body)["version"] == "4"
    await notifier.aclose()


@pytest.mark.parametrize(
    ("status", "headers", "retryable", "retry_after"),
    [
        (500, {}, True, None),
        (503, {"Retry-After": "7"}, True, 7.0),
        (429, {}, True, None),
        (400, {}, False, None),
        (404, {}, False, None),
        (301, {}, False, None),
    ],
)
async def test_status_classification(
    status: int, headers: dict[str, str], retryable: bool, retry_after: float | None
) -> None:
    from agentwatch.alerts.receivers.base import DeliveryError

    secret_key = "ROUTINGKEY0123456789abcdef012345"

    def handler(url: str, body: bytes, _: dict[str, str]) -> HttpReply:
        lower = {k.lower(): v for k, v in headers.items()}
        return HttpReply(status, lower, f"bad key {secret_key}".encode())

    notifier = PagerDutyNotifier(
        "pd", PagerDutyOptions.model_validate({"routing_key": secret_key}), DeliveryPolicy()
    )
    notifier.client = FakeTransport(handler)  # type: ignore[assignment]
    with pytest.raises(DeliveryError) as info:
        await notifier.notify(notification(), NotifyContext())
    assert info.value.retryable is retryable
    assert info.value.status == status
    assert info.value.retry_after == retry_after
    assert secret_key not in info.value.reason
    await notifier.aclose()


async def test_network_errors_are_retryable_and_hide_the_url() -> None:
    from agentwatch.alerts.receivers.base import DeliveryError

    url = "https://hooks.example/services/T0/B0/s3cr3tt0ken"

    def handler(target: str, body: bytes, headers: dict[str, str]) -> HttpReply:
        raise aiohttp.ClientOSError(111, f"cannot connect to {target}")

    notifier = WebhookNotifier("w", WebhookOptions.model_validate({"url": url}), DeliveryPolicy())
    notifier.client = FakeTransport(handler)  # type: ignore[assignment]
    with pytest.raises(DeliveryError) as info:
        await notifier.notify(notification(), NotifyContext())
    assert info.value.retryable
    assert "s3cr3tt0ken" not in str(info.value)
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    await notifier.aclose()


def test_clients_verify_tls() -> None:
    import ssl

    from agentwatch.alerts.receivers.base import http_client

    client = http_client(DeliveryPolicy(timeout=3, concurrency=2))
    context = client.ssl_context
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert client.timeout == 3
    assert client.limit == 2
