"""An outsized payload: far more bytes sent by one call than this agent sends with that tool.

Exfiltration has a size. A coding agent that pushes 60 kB to its remote and now pushes
18 MB, a support bot whose e-mails carry a few kB and now attaches a database dump, a
crawler whose requests are a few hundred bytes and now posts megabytes: each uses a
familiar tool, often a familiar place, but the volume is not its own. Per agent and tool
(the event type for events without one: ``llm_call``, ``network``) the detector keeps a
robust exponentially weighted baseline of ``log(1 + bytes_out)`` and scores an event by
the Student-t tail of its z-score (high side only, at most ``DF`` degrees of freedom:
byte counts are heavy-tailed, a lognormal's tail is not to be trusted that far out).
A tool with fewer than ``MIN_SAMPLES`` payloads (a tool the agent just started using) is
scored against all the agent's payloads (slot ``*``, any tool) instead; updates are
winsorised and flagged events are never learned, so a payload flagged once is as large on
its tenth try.

Per agent: at most ``MAX_SLOTS`` tools × ``[location, variance, n]`` (≈ 30 bytes each in
a snapshot, keyed by a 32-bit hash of the tool name), least recently used evicted.

>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.config import DetectSettings
>>> from agentwatch.features.context import SessionTracker
>>> from agentwatch.schemas.events import Event
>>> t0, tracker = datetime(2026, 1, 1, tzinfo=UTC), SessionTracker()
>>> def push(i, size):
...     e = Event(schema_version="1", event_id=f"e{i}", agent_id="a", type="tool_call",
...               ts=t0 + timedelta(seconds=i), tool_name="git_push", bytes_out=size)
...     return e, tracker.observe(e)
>>> detector = PayloadSizeDetector(DetectSettings())
>>> for i in range(200):
...     detector.learn(*push(i, 40_000 + 1_000 * (i % 40)))
>>> detector.score(*push(200, 75_000)) is None  # a bigger push than usual, not a payload
True
>>> finding = detector.score(*push(201, 18_000_000))
>>> finding.p < 1e-3, finding.explanation.split(";")[0]
(True, 'sent 18.0 MB with git_push')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from agentwatch.config import DetectSettings
from agentwatch.features.context import EventContext
from agentwatch.models.base import Finding, register
from agentwatch.models.robust import N_CAP, ew_df, ew_update, ew_z, student_sf
from agentwatch.models.size_slots import SizeSlots, slot_id
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event

__all__ = ["PayloadSizeDetector"]

MAX_SLOTS = 32
MIN_SAMPLES = 20
ALPHA = 0.02  # EW weight of one payload (≈ the last 100 payloads of a tool)
CLIP_K = 3.0
MIN_SCALE = 0.5  # log units: a payload 65 % larger is within one scale
DF = 3.0
REPORT_P = 0.01  # reported only when notable alone: a moderately large payload is weak evidence
Z_MIN = 2.35  # P(T > 2.35) >= 0.05 with 3 degrees of freedom: below, never reported


ANY = "*"  # every payload of the agent: the baseline of a tool too new to have its own


def _slot(event: Event, ctx: EventContext) -> str | None:
    return ctx.tool or event.type if event.bytes_out else None


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


@register("payload_size")
class PayloadSizeDetector:
    """Unusually large ``bytes_out`` per agent and tool; see the module documentation."""

    name = "payload_size"

    def __init__(self, settings: DetectSettings, max_slots: int = MAX_SLOTS) -> None:
        self.slots = SizeSlots(max_slots, MIN_SCALE)

    def agents(self) -> int:
        return len(self.slots)

    def score(self, event: Event, ctx: EventContext) -> Finding | None:
        slot = _slot(event, ctx)
        if slot is None:
            return None
        stat = self.slots.get(ctx.agent_id, slot_id(slot))
        if stat is None or stat[2] < MIN_SAMPLES:  # a new tool: the agent's payloads at large
            stat, slot = self.slots.get(ctx.agent_id, slot_id(ANY)), ANY
            if stat is None or stat[2] < MIN_SAMPLES:
                return None
        what = "any tool" if slot == ANY else slot
        sent = float(event.bytes_out or 0)
        z = ew_z(stat, math.log1p(sent), MIN_SCALE)
        if z <= Z_MIN:
            return None
        p = student_sf(z, min(ew_df(stat[2], ALPHA), DF))
        if p > REPORT_P:
            return None
        typical = math.expm1(stat[0])
        ratio = (sent + 1.0) / (typical + 1.0)
        explanation = (
            f"sent {_bytes(sent)} with {_slot(event, ctx)}; typical {_bytes(typical)} with {what} "
            f"(×{_spread(stat)} either way), {ratio:,.0f}× that, z={z:+.1f}, p={p:.1g}"
        )
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=(
                Contribution(
                    feature=f"bytes_out of {what}",
                    value=round(sent),
                    typical=round(typical),
                    unusual=f"high side, z={z:+.1f}, p={p:.1g}",
                ),
            ),
            event_ids=(event.event_id,),
            keys=(f"{self.name}/{slot}",),
        )

    def learn(self, event: Event, ctx: EventContext) -> None:
        slot = _slot(event, ctx)
        if slot is None:
            return
        y = math.log1p(float(event.bytes_out or 0))
        for name in (slot, ANY):
            stat, new = self.slots.slot(ctx.agent_id, slot_id(name), y, 1.0)
            if new:
                continue
            n = stat[2]
            clip = CLIP_K if n >= MIN_SAMPLES else 0.0
            ew_update(stat, y, max(ALPHA, 1.0 / (n + 1.0)), clip, MIN_SCALE)
            stat[2] = min(n + 1.0, N_CAP)

    def accept(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: ``payload_size/<tool>`` keys are benign — widen those tools."""
        self.slots.widen(agent_id, keys, f"{self.name}/")

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self.slots.forget(agent_id)

    def state_of(self, agent_id: str) -> Any:
        return self.slots.state_of(agent_id)

    def load_state(self, agent_id: str, state: Any) -> None:
        self.slots.load_state(agent_id, state)


def _spread(stat: list[float]) -> str:
    sd = max(math.sqrt(max(stat[1], 0.0)), MIN_SCALE)
    return f"{math.exp(sd):.1f}"
