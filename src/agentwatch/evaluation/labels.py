"""Ground-truth labels for ``agentwatch eval``: session labels and scenario instances.

One JSON object per line; the kind is recognised per line:

* **scenario instance** (simulator ground truth) — has ``scenario_id``::

    {"scenario_id": "s0001", "scenario": "credential_theft", "attack": true,
     "agent_id": "...", "agent_type": "...", "start": RFC3339, "end": RFC3339,
     "event_ids": [...], "session_ids": [...], "description": "..."}

* **session label** (e.g. the AgentDojo recordings) — has ``session_id``::

    {"session_id": "...", "agent_id": "...", "malicious_action": true, ...}

  The boolean field that makes a session positive is configurable (``label_field``).

:func:`parse_label` is pure; :func:`read_labels` reads a ``.jsonl`` or ``.jsonl.gz`` file.

>>> parse_label({"session_id": "s1", "agent_id": "a", "malicious_action": True})
SessionLabel(session_id='s1', agent_id='a', positive=True)
>>> parse_label({"scenario_id": "x", "scenario": "runaway_loop", "attack": True,
...              "agent_id": "a", "start": "1970-01-01T00:01:00Z",
...              "end": "1970-01-01T00:02:00Z"}).start
60.0
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from agentwatch.replay import open_text

DEFAULT_LABEL_FIELD = "malicious_action"


class LabelError(ValueError):
    """A labels line that is neither a session label nor a scenario instance."""


@dataclass(frozen=True, slots=True)
class SessionLabel:
    session_id: str
    agent_id: str | None
    positive: bool


@dataclass(frozen=True, slots=True)
class Scenario:
    """One instance of a simulated scenario: an attack, or a benign hard negative."""

    scenario_id: str
    scenario: str
    attack: bool
    agent_id: str
    start: float  # epoch seconds
    end: float
    event_ids: tuple[str, ...] = ()
    session_ids: tuple[str, ...] = ()
    agent_type: str | None = None
    description: str = ""


@dataclass
class Labels:
    sessions: list[SessionLabel] = field(default_factory=list)
    scenarios: list[Scenario] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.sessions) + len(self.scenarios)


def parse_time(value: Any, name: str) -> float:
    """Epoch seconds of an RFC 3339 timestamp with a zone."""
    if not isinstance(value, str):
        raise LabelError(f"`{name}` must be an RFC 3339 string, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise LabelError(f"`{name}` is not RFC 3339: {value!r}") from exc
    if parsed.tzinfo is None:
        raise LabelError(f"`{name}` has no time zone: {value!r}")
    return parsed.timestamp()


def _bool(row: dict[str, Any], name: str) -> bool:
    value = row.get(name)
    if not isinstance(value, bool):
        raise LabelError(f"`{name}` must be true or false, got {value!r}")
    return value


def _strings(row: dict[str, Any], name: str) -> tuple[str, ...]:
    value = row.get(name) or []
    if not isinstance(value, list):
        raise LabelError(f"`{name}` must be a list of strings")
    return tuple(str(v) for v in value)


def parse_label(
    row: dict[str, Any], label_field: str = DEFAULT_LABEL_FIELD
) -> SessionLabel | Scenario:
    if not isinstance(row, dict):
        raise LabelError("a label must be a JSON object")
    if "scenario_id" in row:
        for name in ("scenario", "agent_id"):
            if not isinstance(row.get(name), str) or not row[name]:
                raise LabelError(f"scenario instance without `{name}`")
        start = parse_time(row.get("start"), "start")
        end = parse_time(row.get("end"), "end")
        if end < start:
            raise LabelError("`end` is before `start`")
        agent_type = row.get("agent_type")
        return Scenario(
            scenario_id=str(row["scenario_id"]),
            scenario=row["scenario"],
            attack=_bool(row, "attack"),
            agent_id=row["agent_id"],
            start=start,
            end=end,
            event_ids=_strings(row, "event_ids"),
            session_ids=_strings(row, "session_ids"),
            agent_type=str(agent_type) if agent_type is not None else None,
            description=str(row.get("description") or ""),
        )
    if "session_id" in row:
        if label_field not in row:
            raise LabelError(f"session label without `{label_field}`")
        agent = row.get("agent_id")
        return SessionLabel(
            session_id=str(row["session_id"]),
            agent_id=str(agent) if agent is not None else None,
            positive=_bool(row, label_field),
        )
    raise LabelError(
        "neither a scenario instance (`scenario_id`) nor a session label (`session_id`)"
    )


def read_labels(path: Path, label_field: str = DEFAULT_LABEL_FIELD) -> Labels:
    """Every label of ``path`` (``.jsonl`` or ``.jsonl.gz``); a bad line raises ``LabelError``."""
    labels = Labels()
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                label = parse_label(msgspec.json.decode(line), label_field)
            except (msgspec.DecodeError, LabelError) as exc:
                raise LabelError(f"{path}:{number}: {exc}") from exc
            if isinstance(label, Scenario):
                labels.scenarios.append(label)
            else:
                labels.sessions.append(label)
    return labels
