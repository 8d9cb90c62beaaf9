"""Control messages on ``agentwatch.feedback.v1``: analyst verdicts and baseline rollbacks.

One JSON object per Kafka message, key = ``agent_id`` (UTF-8) so the message reaches the
worker that holds the agent's model (the topic has as many partitions as the events
topic). Written by ``agentwatch feedback`` / ``agentwatch models revert`` and by tools:

``{"action": "benign", "feedback_id": "…", "agent_id": "billing-assistant",
"anomaly_id": "…", "keys": ["destination/host/new.partner.example"], "who": "alice",
"why": "new payment partner", "ts": "2026-11-24T09:00:00Z"}``

* ``benign``: the ``keys`` (the ``labels.keys`` of the anomaly, space separated there) join
  the agent's baseline; the same destination is not flagged again.
* ``revert``: the agent's model goes back to the stored snapshot ``snapshot_id`` (see
  ``agentwatch models snapshots``), e.g. to undo a poisoned baseline.

``feedback_id`` identifies the request: a redelivered message is applied again (both
actions are idempotent) and recorded once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

import msgspec
from msgspec import Meta

__all__ = [
    "ACTIONS",
    "FEEDBACK_TOPIC",
    "MAX_KEYS",
    "FeedbackMessage",
    "benign_message",
    "decode_feedback",
    "encode_feedback",
    "new_feedback_id",
    "revert_message",
]

FEEDBACK_TOPIC = "agentwatch.feedback.v1"

Action = Literal["benign", "revert"]
ACTIONS: tuple[str, ...] = get_args(Action)

MAX_KEYS = 100
_Id = Annotated[str, Meta(min_length=1, max_length=256)]
_Key = Annotated[str, Meta(min_length=1, max_length=2304)]


class FeedbackMessage(msgspec.Struct, frozen=True, omit_defaults=True):
    action: Action
    feedback_id: _Id
    agent_id: _Id
    ts: Annotated[datetime, Meta(tz=True)]
    who: _Id
    why: Annotated[str, Meta(max_length=4000)] = ""
    anomaly_id: _Id | None = None
    keys: Annotated[list[_Key], Meta(max_length=MAX_KEYS)] = msgspec.field(default_factory=list)
    snapshot_id: _Id | None = None

    def __post_init__(self) -> None:
        if self.action == "benign" and not self.keys:
            raise ValueError("a benign verdict must name the keys to accept")
        if self.action == "revert" and not self.snapshot_id:
            raise ValueError("a revert must name the snapshot_id to go back to")


def new_feedback_id() -> str:
    return uuid.uuid4().hex


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(FeedbackMessage)


def encode_feedback(message: FeedbackMessage) -> bytes:
    return _encoder.encode(message)


def decode_feedback(raw: bytes) -> FeedbackMessage:
    """The message in ``raw``; raises :class:`msgspec.ValidationError` (or DecodeError)."""
    return _decoder.decode(raw)


def benign_message(
    agent_id: str, anomaly_id: str, keys: list[str], who: str, why: str = ""
) -> FeedbackMessage:
    """A ``benign`` verdict, stamped now."""
    return FeedbackMessage(
        action="benign",
        feedback_id=new_feedback_id(),
        agent_id=agent_id,
        ts=datetime.now(UTC),
        who=who,
        why=why,
        anomaly_id=anomaly_id,
        keys=keys,
    )


def revert_message(agent_id: str, snapshot_id: str, who: str, why: str = "") -> FeedbackMessage:
    """A ``revert`` request, stamped now."""
    return FeedbackMessage(
        action="revert",
        feedback_id=new_feedback_id(),
        agent_id=agent_id,
        ts=datetime.now(UTC),
        who=who,
        why=why,
        snapshot_id=snapshot_id,
    )
