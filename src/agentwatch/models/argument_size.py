"""An argument value far longer than this agent usually sends in that slot: a payload.

Text pasted into a tool call is how data leaves (a document dumped into an e-mail subject,
a transaction list in a payment memo, a whole channel copied to a web form) and how an
injected instruction shows itself (a channel "name" that is three sentences long). Per
agent and argument slot (``tool.argument``, see :mod:`agentwatch.features.arguments`) the
detector keeps a robust exponentially weighted baseline of ``log(1 + characters)`` of the
string values sent there, and scores a value by the Student-t tail of its z-score (high
side only, at most ``DF`` degrees of freedom: lengths are heavy-tailed), Bonferroni over
the values of the event. Numbers, booleans and slots with fewer than ``MIN_SAMPLES``
values are not scored; updates are winsorised and flagged events are never learned.

Per agent: at most ``MAX_SLOTS`` slots × ``[location, variance, n]`` (≈ 35 bytes each,
keyed by a 32-bit hash of the slot name), least recently used evicted.

>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.config import DetectSettings
>>> from agentwatch.features.context import SessionTracker
>>> from agentwatch.schemas.events import Event
>>> t0, tracker = datetime(2026, 1, 1, tzinfo=UTC), SessionTracker()
>>> def call(i, subject):
...     e = Event(schema_version="1", event_id=f"e{i}", agent_id="a", type="tool_call",
...               ts=t0 + timedelta(seconds=i), tool_name="send_money",
...               tool_args={"recipient": "acct-1", "subject": subject})
...     return e, tracker.observe(e)
>>> detector = ArgumentSizeDetector(DetectSettings())
>>> for i in range(100):
...     detector.learn(*call(i, ["rent", "rent for may", "groceries"][i % 3]))
>>> detector.score(*call(100, "rent for june")) is None
True
>>> finding = detector.score(*call(101, "recent transactions: " + "2024-05-01 -49.99; " * 30))
>>> finding.p < 1e-3, finding.contributions[0].feature
(True, 'argument send_money.subject length')
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from agentwatch.config import DetectSettings
from agentwatch.features.arguments import argument_values
from agentwatch.features.context import EventContext
from agentwatch.models.base import Finding, register
from agentwatch.models.calibration import bonferroni
from agentwatch.models.robust import N_CAP, ew_df, ew_update, ew_z, student_sf
from agentwatch.models.size_slots import SizeSlots
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event

__all__ = ["ArgumentSizeDetector"]

MAX_SLOTS = 48
MIN_SAMPLES = 8
ALPHA = 0.05  # EW weight of one value (≈ the last 40 values of a slot)
CLIP_K = 3.0
MIN_SCALE = 0.25  # log units: a third longer is within one scale
DF = 5.0
REPORT_P = 0.05
TINY_VARIANCE = 1e-12
Z_MIN = 1.5  # Student-t with >= 1 degree of freedom: P(T > 1.5) > 0.09


def _lengths(event: Event) -> list[tuple[str, int, float]]:
    """``(slot, slot id, log(1 + characters))`` of the event's string arguments."""
    out: list[tuple[str, int, float]] = []
    for arg in argument_values(event):
        if arg.text:  # numbers and booleans have no length worth a baseline
            out.append((arg.slot, arg.slot_hash, math.log1p(len(arg.value))))
    return out


@register("argument_size")
class ArgumentSizeDetector:
    """Unusually long argument values per agent and slot; see the module documentation."""

    name = "argument_size"

    def __init__(self, settings: DetectSettings, max_slots: int = MAX_SLOTS) -> None:
        self.slots = SizeSlots(max_slots, MIN_SCALE)

    def agents(self) -> int:
        return len(self.slots)

    def score(self, event: Event, ctx: EventContext) -> Finding | None:
        if event.type != "tool_call" or not event.tool_args:
            return None
        slots = self.slots.of(ctx.agent_id)
        if not slots:
            return None
        tests: list[tuple[float, str, float, float, list[float]]] = []
        tested = 0
        for slot, sid, y in _lengths(event):
            stat = slots.get(sid)
            if stat is None or stat[2] < MIN_SAMPLES:
                continue
            tested += 1
            z = ew_z(stat, y, MIN_SCALE)
            if z > Z_MIN:  # below it p > 0.05 for any degrees of freedom: never reported
                p = student_sf(z, min(ew_df(stat[2], ALPHA), DF))
                tests.append((p, slot, y, z, stat))
        if not tests:
            return None
        tests.sort(key=lambda t: t[0])
        p = bonferroni(tests[0][0], tested)
        if p > REPORT_P:
            return None
        best = tests[0]
        typical = math.expm1(best[4][0])
        explanation = (
            f"sent {math.expm1(best[2]):.0f} characters in {best[1]}; typical "
            f"{typical:.0f} (±{_spread(best[4])}), z={best[3]:+.1f}, p={p:.1g}"
        )
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=tuple(
                Contribution(
                    feature=f"argument {slot} length",
                    value=round(math.expm1(y)),
                    typical=round(math.expm1(stat[0])),
                    unusual=f"high side, z={z:+.1f}, p={tp:.1g}",
                )
                for tp, slot, y, z, stat in tests[:5]
                if tp * tested <= REPORT_P
            ),
            event_ids=(event.event_id,),
            keys=tuple(f"{self.name}/{slot}" for _, slot, *_ in tests[:5]),
        )

    def learn(self, event: Event, ctx: EventContext) -> None:
        if event.type != "tool_call" or not event.tool_args:
            return
        lengths = _lengths(event)
        if not lengths:
            return
        for _, sid, y in lengths:
            stat, _ = self.slots.slot(ctx.agent_id, sid, y, 0.0)
            n = stat[2]
            if n >= MIN_SAMPLES and y == stat[0] and stat[1] <= TINY_VARIANCE:
                stat[2] = min(n + 1.0, N_CAP)  # a constant slot: nothing moves
                continue
            clip = CLIP_K if n >= MIN_SAMPLES else 0.0
            ew_update(stat, y, max(ALPHA, 1.0 / (n + 1.0)), clip, MIN_SCALE)
            stat[2] = min(n + 1.0, N_CAP)

    def accept(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: ``argument_size/<slot>`` keys are benign — widen those slots."""
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
    return f"{(math.exp(sd) - 1.0):.0%}"
