"""An argument value a tool never received from this agent, in a slot whose values repeat.

A hijacked agent acts on the attacker's data: it pays an account, invites a user, deletes a
file, books a hotel, changes a password — each through a tool it uses every day, but with a
value it never used there. Which slots matter is learned, not configured: every argument
slot (``tool.argument``, see :mod:`agentwatch.features.arguments`) keeps its own decayed
discovery rate ``p_slot = (d + 1) / (n + 2)`` (``n`` values seen, ``d`` of them new). In a
slot whose values repeat (recipients, ids, channels, accounts) a new value is rare and
scores high; in a free-text slot (a message body) almost every value is new and scores
nothing.

Where the value comes from softens it: a value this agent already handled in another slot
(an e-mail address it searched for, a hotel it looked up, a file id it listed) is a known
thing used in a new role, scored ``p_slot ** 0.5``, and so is a value that names one of the
call's destinations (the destination detectors judge that one first); a value never seen
anywhere by the agent is scored ``p_slot``. Several new values in one call multiply (the
``max_joint`` rarest). Values of secret-named arguments are never shown in explanations.

Findings with ``p > REPORT_P`` (0.5) are not reported: a new value in a slot where most
values are new is not news. Per agent: the discovery counts of at most ``max_slots`` slots
(keyed by a 32-bit hash of the slot name, least recently used evicted; ≈ 25 bytes each)
plus two bounded first-seen sets of 32-bit value hashes (at most ``novelty_capacity``
each; a value unused for ``novelty_forget_after_s`` is new again).
What was flagged is never learned (the engine's protection), so the attacker's account is
still new on its hundredth use until an analyst accepts it.

>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.config import DetectSettings
>>> from agentwatch.features.context import SessionTracker
>>> from agentwatch.schemas.events import Event
>>> t0, tracker = datetime(2026, 1, 1, tzinfo=UTC), SessionTracker()
>>> def call(i, recipient, body):
...     e = Event(schema_version="1", event_id=f"e{i}", agent_id="a", type="tool_call",
...               ts=t0 + timedelta(seconds=i), tool_name="send_money",
...               tool_args={"recipient": recipient, "memo": body})
...     return e, tracker.observe(e)
>>> detector = NewArgumentDetector(DetectSettings())
>>> for i in range(200):
...     detector.learn(*call(i, f"acct-{i % 4}", f"invoice {i}"))
>>> detector.score(*call(200, "acct-2", "invoice 200")) is None  # a new memo is not news
True
>>> finding = detector.score(*call(201, "attacker-iban", "invoice 201"))
>>> finding.p < 0.05, finding.contributions[0].feature
(True, 'argument send_money.recipient')
>>> for part in finding.explanation.split("; "):
...     print(part)
send_money.recipient = 'attacker-iban', a value this agent never used (2.4% of the last 193 \
values of this argument were new)
1 more new argument value(s)
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from agentwatch.config import DetectSettings
from agentwatch.features.arguments import Argument, argument_values
from agentwatch.features.context import EventContext
from agentwatch.models.base import Finding, register
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event

__all__ = ["NewArgumentDetector"]

MAX_SLOTS = 64
MAX_JOINT = 3
REPORT_P = 0.5
KNOWN_VALUE_POWER = 0.5  # a value known from another slot: p ** 0.5
REFRESH_S = 600.0  # a known value's last-use time is refreshed at most this often


class _Memory:
    """Bounded ``{hash: last used (s)}``; past ``capacity`` the least recently used tenth is
    dropped at once (amortised: no reordering on every use)."""

    __slots__ = ("capacity", "forget", "items")

    def __init__(self, capacity: int, forget: float) -> None:
        self.capacity = capacity
        self.forget = forget
        self.items: dict[int, float] = {}

    def knows(self, key: int, now: float) -> bool:
        last = self.items.get(key)
        return last is not None and now - last <= self.forget

    def add(self, key: int, now: float) -> None:
        items = self.items
        last = items.get(key)
        if last is None or now > last:
            items[key] = now
            if last is None and len(items) > self.capacity:
                keep = self.capacity - max(1, self.capacity // 10)
                ranked = sorted(items.items(), key=lambda item: item[1])[-keep:]
                self.items = dict(ranked)


class _Agent:
    __slots__ = ("keys", "slots", "values")

    def __init__(self, capacity: int, forget: float) -> None:
        self.slots: OrderedDict[int, list[float]] = OrderedDict()  # slot id → [n, d]
        self.keys = _Memory(capacity, forget)  # (slot, value) pairs used
        self.values = _Memory(capacity, forget)  # values handled in any slot


def _shown(arg: Argument) -> str:
    """How a value reads in an explanation: secrets never, long values cut."""
    # The redaction rules live with storage, which the worker and replay load anyway;
    # imported here, on the first finding, the detector's import stays light.
    from agentwatch.storage.redact import is_secret_key, redact_text

    name = arg.slot.rsplit(".", 1)[-1]
    if is_secret_key(name):
        return "[REDACTED]"
    text = redact_text(arg.raw)
    return repr(text if len(text) <= 60 else text[:57] + "…")


@register("new_argument")
class NewArgumentDetector:
    """New values in repetitive argument slots; see the module documentation."""

    name = "new_argument"
    family = "argument"

    def __init__(self, settings: DetectSettings, max_slots: int = MAX_SLOTS) -> None:
        self.capacity = settings.novelty_capacity
        self.forget = settings.novelty_forget_after_s
        half_life = settings.novelty_half_life
        self.decay = 0.5 ** (1.0 / half_life) if half_life > 0 else 1.0
        self.max_slots = max_slots
        self.max_joint = MAX_JOINT
        self._agents: dict[str, _Agent] = {}

    def agents(self) -> int:
        return len(self._agents)

    def _agent(self, agent_id: str) -> _Agent:
        agent = self._agents.get(agent_id)
        if agent is None:
            agent = self._agents[agent_id] = _Agent(self.capacity, self.forget)
        return agent

    def score(self, event: Event, ctx: EventContext) -> Finding | None:
        if event.type != "tool_call" or not event.tool_args:
            return None
        agent = self._agents.get(ctx.agent_id)
        if agent is None:
            return None
        now = event.ts.timestamp()
        found: list[tuple[float, Argument, float, str, float]] = []
        places: list[str] | None = None
        known, forget = agent.keys.items, self.forget
        for arg in argument_values(event):
            last = known.get(arg.key_hash)
            if last is not None and now - last <= forget:
                continue
            stat = agent.slots.get(arg.slot_hash)
            if stat is None:
                continue  # a slot never seen: the tool or argument is what is new
            p_slot = (stat[1] + 1.0) / (stat[0] + 2.0)
            if places is None:
                places = [value.casefold() for _, value in ctx.destinations]
            if agent.values.knows(arg.value_hash, now):
                origin = "a value it only used elsewhere"
            elif places and any(place in arg.value for place in places):
                # where the event goes is the destination detectors' to judge first:
                # counted like a known value, not twice at full weight
                origin = "a value naming a destination of the call"
            else:
                origin = "a value this agent never used"
            p = p_slot if origin.endswith("never used") else p_slot**KNOWN_VALUE_POWER
            found.append((p, arg, p_slot, origin, stat[0]))
        if not found:
            return None
        found.sort(key=lambda f: f[0])
        p = 1.0
        for item in found[: self.max_joint]:
            p *= item[0]
        if p > REPORT_P:
            return None
        _best_p, best, best_slot_p, best_origin, best_n = found[0]
        explanation = (
            f"{best.slot} = {_shown(best)}, {best_origin} ({best_slot_p:.1%} of the last "
            f"{best_n:.0f} values of this argument were new)"
        )
        if len(found) > 1:
            explanation += f"; {len(found) - 1} more new argument value(s)"
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=tuple(
                Contribution(
                    feature=f"argument {arg.slot}",
                    value=_shown(arg),
                    typical=f"{n:.0f} recent values, {p_slot:.1%} new",
                    unusual=f"{origin.removeprefix('a value ')}; p={item_p:.2g}",
                )
                for item_p, arg, p_slot, origin, n in found[:5]
            ),
            event_ids=(event.event_id,),
            keys=tuple(f"{self.family}/{arg.slot}/#{arg.key_hash:08x}" for _, arg, *_ in found),
        )

    def learn(self, event: Event, ctx: EventContext) -> None:
        if event.type != "tool_call" or not event.tool_args:
            return
        args = argument_values(event)
        if not args:
            return
        agent = self._agent(ctx.agent_id)
        now = event.ts.timestamp()
        decay = self.decay
        forget = self.forget
        slots = agent.slots
        keys, values = agent.keys, agent.values
        known_keys, known_values = keys.items, values.items
        for arg in args:
            sid = arg.slot_hash
            stat = slots.get(sid)
            if stat is None:
                stat = slots[sid] = [0.0, 0.0]
                while len(slots) > self.max_slots:
                    slots.popitem(last=False)
            elif len(slots) > 1:
                slots.move_to_end(sid)
            last = known_keys.get(arg.key_hash)
            stat[0] = stat[0] * decay + 1.0
            if last is None or now - last > forget:
                stat[1] = stat[1] * decay + 1.0
                keys.add(arg.key_hash, now)
            else:
                stat[1] *= decay
                if now - last > REFRESH_S:  # last-use times need no finer grain
                    known_keys[arg.key_hash] = now
            last = known_values.get(arg.value_hash)
            if last is None or now - last > REFRESH_S:
                values.add(arg.value_hash, now)

    def accept(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: ``argument/<slot>/#<hash>`` keys are benign for this agent."""
        prefix = f"{self.family}/"
        agent = self._agent(agent_id)
        now = time.time()
        for key in keys:
            if key.startswith(prefix) and "/#" in key:
                agent.keys.add(int(key.rsplit("/#", 1)[1], 16), now)

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self._agents.pop(agent_id, None)

    def state_of(self, agent_id: str) -> Any:
        agent = self._agents.get(agent_id)
        if agent is None:
            return None
        return {
            # counts in tenths, as integers: a third of the bytes of floats
            "s": [[k, round(v[0] * 10), round(v[1] * 10)] for k, v in agent.slots.items()],
            "k": [[k, t] for k, t in sorted(agent.keys.items.items(), key=lambda kv: kv[1])],
            "v": [[k, t] for k, t in sorted(agent.values.items.items(), key=lambda kv: kv[1])],
        }

    def load_state(self, agent_id: str, state: Any) -> None:
        if not state:
            return
        agent = _Agent(self.capacity, self.forget)
        for slot, n, d in state.get("s", ()):
            agent.slots[int(slot)] = [n / 10.0, d / 10.0]
        for key, last in state.get("k", ()):
            agent.keys.add(int(key), float(last))
        for key, last in state.get("v", ()):
            agent.values.add(int(key), float(last))
        self._agents[agent_id] = agent
