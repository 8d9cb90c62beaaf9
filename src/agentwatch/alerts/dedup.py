"""Stable keys: group key, dedup key, alert id and notification id.

* group key: the route and the values of its ``group_by`` labels, in Alertmanager's form
  ``{}/<route>:{agent_id="a", detector="d"}``.
* dedup key: ``aw-`` + a hash of (route, receiver, group key). The same for a group from
  its first trigger to its resolve (and for later episodes of the same group), at most 255
  characters (PagerDuty's limit) whatever the labels are.
* alert id: one episode of a group (from its first anomaly to its resolve).
* notification id: one notification of an episode to one receiver; a notification
  delivered again after a restart has the same id. A firing notification's id also covers
  the anomalies it lists, so a notification made again after a restart (its anomalies
  consumed again) has the same id only if it says the same thing.

>>> labels = {"agent_id": "billing-7", "detector": "new_destination", "severity": "high"}
>>> key = group_key("pager", ("agent_id", "detector"), labels)
>>> key
'{}/pager:{agent_id="billing-7", detector="new_destination"}'
>>> d = dedup_key("pager", "oncall", key)
>>> d.startswith("aw-") and len(d) <= 255 and d == dedup_key("pager", "oncall", key)
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

__all__ = [
    "MAX_DEDUP_KEY_CHARS",
    "alert_id_for",
    "dedup_key",
    "group_key",
    "group_labels",
    "notification_id_for",
]

MAX_DEDUP_KEY_CHARS = 255


def _hash(*parts: str, size: int) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=size).hexdigest()


def group_labels(group_by: Sequence[str], labels: Mapping[str, str]) -> dict[str, str]:
    """The grouping labels of ``labels`` (absent ones are ``""``); ``...`` groups by all."""
    if "..." in group_by:
        return dict(sorted(labels.items()))
    return {name: labels.get(name, "") for name in sorted(set(group_by))}


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def group_key(route: str, group_by: Sequence[str], labels: Mapping[str, str]) -> str:
    values = group_labels(group_by, labels)
    inner = ", ".join(f"{k}={_quote(v)}" for k, v in values.items())
    return f"{{}}/{route}:{{{inner}}}"


def dedup_key(route: str, receiver: str, key: str) -> str:
    return "aw-" + _hash(route, receiver, key, size=20)


def alert_id_for(key: str, started_at_ms: int) -> str:
    """The id of the episode of group ``key`` that started at ``started_at_ms``."""
    return _hash(key, str(started_at_ms), size=8)


def notification_id_for(
    alert_id: str,
    receiver: str,
    sequence: int,
    kind: str,
    anomaly_ids: Sequence[str] = (),
    folded: int = 0,
) -> str:
    """The id of notification ``sequence`` of an alert to ``receiver``, listing
    ``anomaly_ids`` as new (and ``folded`` more not listed)."""
    if not anomaly_ids and not folded:
        return _hash(alert_id, receiver, str(sequence), kind, size=12)
    return _hash(alert_id, receiver, str(sequence), kind, str(folded), *anomaly_ids, size=12)
