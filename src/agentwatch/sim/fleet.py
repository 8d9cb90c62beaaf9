"""A simulated fleet of agents emitting schema-v1 events, with occasional injected attacks.

The fleet is a discrete-event simulation in event time: every agent runs sessions of tool
calls (a Markov chain over its peer group's tools, see :mod:`agentwatch.sim.profiles`),
LLM calls, occasional reads of its usual secrets and a metric event every ~30 s. A driver
asks for the events up to a time; a real-time driver calls :meth:`Fleet.events_until` with
``datetime.now(UTC)`` every ~100 ms, a fast one steps through simulated time. The output
depends on the seed and the start time only, never on how the calls are spaced.

Each agent opens with a short burst in which it uses every one of its usual destinations
once, so a first-seen-destination detector has learned them all within the agent's first
20 events. Afterwards benign behaviour never leaves that set, and the only first-seen
destinations are the injected exfiltrations, recorded in :attr:`Fleet.injected`.

>>> from datetime import UTC, datetime, timedelta
>>> start = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
>>> fleet = Fleet(8, seed=1, start=start)
>>> events = fleet.events_until(start + timedelta(minutes=5))
>>> len(events) > 200, all(a.ts <= b.ts for a, b in zip(events, events[1:]))
(True, True)
>>> sorted({e.agent_type for e in events})
['coding-agent', 'finance-assistant', 'research-crawler', 'support-bot']
>>> fleet.injected[0].kind, fleet.injected[0].event_ids[0] in {e.event_id for e in events}
('exfiltration', True)
"""

from __future__ import annotations

import random
from bisect import bisect
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from heapq import heapify, heapreplace
from itertools import count
from typing import Any, TypeVar

from agentwatch.schemas.events import Destination, DestinationKind, Event, Status
from agentwatch.sim.profiles import (
    BASE_VOCAB,
    GENERATED_FIELDS,
    PROFILES,
    ArgValue,
    ExfilChannel,
    LogNormal,
    ModelSpec,
    Profile,
    ToolSpec,
)

__all__ = ["AgentSpec", "Fleet", "InjectedAttack", "build_agents", "random_destination"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_HOUR_MS = 3_600_000
_WEEK_H = 7 * 24
_METRIC_EVERY_MS = 30_000
_ERROR_TYPES = ("timeout", "http_502", "rate_limited", "invalid_argument", "connection_reset")
_TLDS = ("com", "net", "io", "xyz", "top", "ru", "cc", "info", "site", "online", "link")
_IBAN_COUNTRIES = (("DE", 18), ("ES", 20), ("BE", 12), ("PL", 24), ("PT", 21), ("FR", 23))
_CONSONANTS = "bcdfghjklmnprstvwxz"
_VOWELS = "aeiouy"


# ---------------------------------------------------------------------------------------------
# Random values: ids, IBANs, never-seen destinations


def _uuid4(rng: random.Random) -> str:
    """A version-4 UUID string drawn from ``rng`` (deterministic for a seed)."""
    n = (rng.getrandbits(128) & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _iban(rng: random.Random, country: str | None = None, length: int = 18) -> str:
    """An IBAN-like account number with valid ISO 13616 check digits."""
    if country is None:
        country, length = rng.choice(_IBAN_COUNTRIES)
    bban = "".join(rng.choice("0123456789") for _ in range(length))
    digits = bban + "".join(str(ord(c) - 55) for c in country) + "00"
    check = 98 - int(digits) % 97
    return f"{country}{check:02d}{bban}"


def _label(rng: random.Random, low: int = 2, high: int = 4) -> str:
    return "".join(
        rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(rng.randint(low, high))
    )


def _random_host(rng: random.Random) -> str:
    suffix = rng.choice(("", "-cdn", "-sync", "-api", "-drop", "-files", "-backup", "-cloud"))
    sub = rng.choice(("", "", "upload.", "api.", "s3.", "files."))
    return f"{sub}{_label(rng)}{suffix}{rng.randint(0, 99) if rng.random() < 0.4 else ''}." + (
        rng.choice(_TLDS)
    )


def _random_ip(rng: random.Random) -> str:
    while True:
        a = rng.randint(11, 223)
        if a not in (100, 127, 169, 172, 192):
            return f"{a}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def random_destination(rng: random.Random, kind: DestinationKind) -> str:
    """A freshly generated destination value of ``kind`` (not drawn from any fixed list)."""
    if kind == "host":
        return _random_host(rng)
    if kind == "ip":
        return _random_ip(rng)
    if kind == "url":
        return f"https://{_random_host(rng)}/{_label(rng, 1, 3)}/{rng.getrandbits(32):08x}"
    if kind == "email":
        return f"{_label(rng)}{rng.randint(1, 999)}@{_random_host(rng)}"
    if kind == "account":
        return _iban(rng)
    if kind == "user":
        return f"{_label(rng)}{rng.randint(1, 9999)}"
    return f"/tmp/.{_label(rng)}/{rng.getrandbits(32):08x}"


_SPECIAL: dict[str, Callable[[random.Random], str]] = {
    "n": lambda rng: str(rng.randint(10_000, 99_999)),
    "hex": lambda rng: f"{rng.getrandbits(28):07x}",
    "iban": lambda rng: _iban(rng, "DE", 18),
}

assert set(_SPECIAL) == GENERATED_FIELDS


class _Fill(dict[str, str]):
    """Template fields: set keys (``dest``) first, then generators, then the vocabulary."""

    __slots__ = ("rng", "vocab")

    def __init__(self, rng: random.Random, vocab: dict[str, tuple[str, ...]]) -> None:
        super().__init__()
        self.rng = rng
        self.vocab = vocab

    def __missing__(self, key: str) -> str:
        special = _SPECIAL.get(key)
        if special is not None:
            return special(self.rng)
        return self.rng.choice(self.vocab[key])


# ---------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """Identity and usual behaviour of one simulated agent."""

    agent_id: str
    agent_type: str
    agent_version: str
    utc_offset_h: int
    destinations: dict[str, tuple[str, ...]]  # pool name -> usual destination values
    secrets: tuple[str, ...]
    models: tuple[str, ...]
    profile: Profile

    def usual_destinations(self) -> set[tuple[str, str]]:
        """Every ``(kind, value)`` the agent sends to in normal work (LLM hosts included)."""
        found: set[tuple[str, str]] = {
            (self.profile.pools[pool].kind, value)
            for pool, values in self.destinations.items()
            for value in values
        }
        found.update(("host", m.host) for m in self.profile.models)
        return found


@dataclass(frozen=True, slots=True)
class InjectedAttack:
    """Ground truth of one injected attack: what, who, when and which events."""

    kind: str
    agent_id: str
    agent_type: str
    session_id: str | None
    start: datetime
    event_ids: tuple[str, ...]
    destination: Destination
    channel: str  # tool name, or "network" for a raw network event
    secret_name: str | None


# ---------------------------------------------------------------------------------------------
# Compiled per-agent tables


def _compile_args(args: tuple[tuple[str, ArgValue], ...]) -> tuple[tuple[str, int, Any], ...]:
    compiled: list[tuple[str, int, Any]] = []
    for name, value in args:
        if isinstance(value, LogNormal):
            compiled.append((name, 2, value))
        elif isinstance(value, str) and "{" in value:
            compiled.append((name, 1, value))
        else:
            compiled.append((name, 0, value))
    return tuple(compiled)


def _cumulative(weights: Sequence[float]) -> list[float]:
    total = 0.0
    out: list[float] = []
    for w in weights:
        total += w
        out.append(total)
    return out


class _Tool:
    __slots__ = ("args", "dests", "spec")

    def __init__(self, spec: ToolSpec, dests: list[Destination]) -> None:
        self.spec = spec
        self.args = _compile_args(spec.args)
        self.dests = dests


class _Agent:
    __slots__ = (
        "action_ms",
        "actions_left",
        "attack",
        "attack_pending",
        "boosts",
        "cpu_base",
        "dests",
        "emitted",
        "fill",
        "hour_shift",
        "in_session",
        "mem_mb",
        "model_cum",
        "model_dests",
        "pending",
        "pool_values",
        "prev_tool",
        "profile",
        "rng",
        "session_actions",
        "session_cost",
        "session_id",
        "session_ms",
        "spec",
        "tools",
        "tour",
        "tour_models",
        "trans_cum",
        "usual",
        "version",
        "week_curve",
    )

    def __init__(
        self, spec: AgentSpec, rng: random.Random, dests: dict[str, list[Destination]]
    ) -> None:
        profile = spec.profile
        self.spec = spec
        self.profile = profile
        self.rng = rng
        self.version = spec.agent_version
        self.hour_shift = (spec.utc_offset_h + 3 * 24) % _WEEK_H  # the epoch was a Thursday
        self.boosts: list[tuple[int, int, float]] = []  # (start ms, end ms, rate factor)
        self.pool_values: dict[str, list[str]] = {}
        self.session_cost = 0.0
        self.fill = _Fill(rng, {**BASE_VOCAB, **profile.vocab})
        self.dests = dests  # pool name -> the agent's usual destinations
        self.use_profile(profile, dests)
        base = [t.weight for t in profile.tools]
        base_total = sum(base)
        self.prev_tool = bisect(_cumulative(base), rng.random() * base_total)
        self.usual = {(d.kind, d.value) for values in dests.values() for d in values}
        self.usual.update((d.kind, d.value) for d in self.model_dests)
        # Opening burst: every usual destination once, every model once.
        tour: list[tuple[int, Destination]] = []
        for pool, values in dests.items():
            users = [i for i, t in enumerate(profile.tools) if t.pool == pool]
            for dest in values:
                tour.append((rng.choice(users), dest))
        rng.shuffle(tour)
        self.tour = deque(tour)
        self.tour_models = deque(range(len(profile.models)))
        # Generated events not yet returned, with what they belong to (an attack record).
        self.pending: deque[tuple[int, Event, Any]] = deque()
        self.emitted = 0
        self.in_session = False
        self.session_id: str | None = None
        self.session_ms = 0
        self.session_actions = 0
        self.actions_left = 0
        self.action_ms = 0
        self.attack_pending = False
        self.attack: InjectedAttack | None = None
        self.cpu_base = profile.cpu_pct.sample(rng)
        self.mem_mb = profile.memory_mb.sample(rng)

    def use_profile(self, profile: Profile, dests: dict[str, list[Destination]]) -> None:
        """Compile the tables the agent draws from: tools, transitions, models, rates."""
        self.profile = profile
        # Rate factor per local hour of the week (Monday 00:00 = 0).
        self.week_curve = tuple(
            profile.daily_curve[h % 24] * profile.weekly_curve[h // 24] for h in range(_WEEK_H)
        )
        self.tools = [_Tool(t, dests[t.pool] if t.pool else []) for t in profile.tools]
        self.model_dests = [Destination(kind="host", value=m.host) for m in profile.models]
        self.model_cum = _cumulative([m.weight for m in profile.models])
        # Next tool given the current one: base weights mixed with the transition row.
        base = [t.weight for t in profile.tools]
        base_total = sum(base)
        names = profile.tool_names
        self.trans_cum: list[list[float]] = []
        for name in names:
            row = profile.transitions.get(name, {})
            row_total = sum(row.values())
            follow = profile.follow if row_total > 0 else 0.0
            mixed = [
                (1 - follow) * w / base_total + follow * row.get(n, 0.0) / (row_total or 1.0)
                for n, w in zip(names, base, strict=True)
            ]
            self.trans_cum.append(_cumulative(mixed))

    # -- helpers ---------------------------------------------------------------------------

    def curve(self, ms: int) -> float:
        """The agent's activity factor at ``ms``: hour of its local week, times any boost."""
        factor = self.week_curve[(ms // _HOUR_MS + self.hour_shift) % _WEEK_H]
        if self.boosts:
            for start, end, boost in self.boosts:
                if start <= ms < end:
                    factor *= boost
        return factor

    def args(self, tool_args: tuple[tuple[str, int, Any], ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, how, value in tool_args:
            if how == 0:
                out[name] = value
            elif how == 1:
                out[name] = value.format_map(self.fill)
            else:
                out[name] = round(value.sample(self.rng), 2)
        return out

    def event(self, ms: int, type_: Any, trace_id: str | None, **fields: Any) -> Event:
        spec = self.spec
        rng = self.rng
        return Event(
            schema_version="1",
            event_id=_uuid4(rng),
            ts=_EPOCH + ms * _MS,
            agent_id=spec.agent_id,
            type=type_,
            agent_version=self.version,
            agent_type=spec.agent_type,
            session_id=self.session_id,
            trace_id=trace_id,
            span_id=f"{rng.getrandbits(64):016x}" if trace_id else None,
            **fields,
        )

    # -- steps -----------------------------------------------------------------------------

    def step(self) -> list[tuple[int, Event]]:
        """The agent's next events (one session boundary or one action), in time order."""
        if not self.in_session:
            return self._session_start()
        if self.attack_pending:
            return self._exfiltration()
        if self.actions_left <= 0:
            return self._session_end()
        return self._action()

    def _session_start(self) -> list[tuple[int, Event]]:
        rng = self.rng
        ms = self.action_ms
        self.in_session = True
        self.session_id = _uuid4(rng)
        self.session_ms = ms
        self.session_cost = 0.0
        n = max(1, round(self.profile.session_actions.sample(rng)))
        if self.tour:
            n = max(n, len(self.tour) + 3)
        self.actions_left = self.session_actions = n
        self.action_ms = ms + rng.randint(50, 600)
        return [(ms, self.event(ms, "session_start", None))]

    def _session_end(self) -> list[tuple[int, Event]]:
        rng = self.rng
        ms = self.action_ms
        ev = self.event(
            ms,
            "session_end",
            None,
            duration_ms=float(ms - self.session_ms),
            cost_usd=round(self.session_cost, 6),
            attributes={"actions": self.session_actions},
        )
        self.in_session = False
        self.session_id = None
        idle_ms = self.profile.idle_s.sample(rng) * 1000 / self.curve(ms)
        self.action_ms = ms + 200 + int(idle_ms)
        return [(ms, ev)]

    def _llm(self, ms: int, trace_id: str, model_index: int) -> tuple[Event, int]:
        model: ModelSpec = self.profile.models[model_index]
        tokens_in = int(model.tokens_in.sample(self.rng))
        tokens_out = max(1, int(model.tokens_out.sample(self.rng)))
        return self._llm_event(ms, trace_id, model_index, tokens_in, tokens_out)

    def _llm_event(
        self, ms: int, trace_id: str, model_index: int, tokens_in: int, tokens_out: int
    ) -> tuple[Event, int]:
        """An LLM call of ``model_index`` with the given usage; cost and latency follow."""
        model: ModelSpec = self.profile.models[model_index]
        duration = (model.base_latency_ms + tokens_out * model.ms_per_token_out) * (
            0.75 + 0.5 * self.rng.random()
        )
        cost = round(
            tokens_in * model.usd_per_1k_in / 1000 + tokens_out * model.usd_per_1k_out / 1000, 6
        )
        self.session_cost += cost
        ev = self.event(
            ms,
            "llm_call",
            trace_id,
            destinations=[self.model_dests[model_index]],
            duration_ms=round(duration, 1),
            bytes_in=tokens_out * 4 + 350,
            bytes_out=tokens_in * 4 + 500,
            model=model.name,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
        )
        return ev, int(duration)

    def _secret(self, ms: int, trace_id: str, name: str) -> tuple[Event, int]:
        duration = self.rng.randint(3, 30)
        ev = self.event(
            ms,
            "secret_access",
            trace_id,
            secret_name=name,
            duration_ms=float(duration),
            attributes={"secret.store": "vault"},
        )
        return ev, duration

    def _tool_call(
        self, ms: int, trace_id: str, tool: _Tool, dest: Destination | None
    ) -> tuple[Event, int]:
        """One call of ``tool`` (to ``dest``) at ``ms``, with the tool's outcome rates."""
        rng = self.rng
        spec = tool.spec
        duration_f = spec.duration_ms.sample(rng)
        roll = rng.random()
        status: Status = "ok"
        attributes: dict[str, Any] | None = None
        bytes_in = int(spec.bytes_in.sample(rng))
        if roll < spec.error_rate:
            status = "error"
            attributes = {"error.type": rng.choice(_ERROR_TYPES)}
            bytes_in = min(bytes_in, 512)
        elif roll < spec.error_rate + spec.denied_rate:
            status = "denied"
            attributes = {"error.type": "policy_denied"}
            bytes_in = min(bytes_in, 256)
        if dest is not None:
            self.fill["dest"] = dest.value
        ev = self.event(
            ms,
            "tool_call",
            trace_id,
            tool_name=spec.name,
            tool_args=self.args(tool.args),
            destinations=[dest] if dest is not None else None,
            status=status,
            duration_ms=round(duration_f, 1),
            bytes_in=bytes_in,
            bytes_out=int(spec.bytes_out.sample(rng)),
            attributes=attributes,
        )
        return ev, int(duration_f)

    def _action(
        self, force: tuple[int, Destination | None] | None = None
    ) -> list[tuple[int, Event]]:
        """One tool call with what precedes it; ``force`` = (tool index, destination)."""
        rng = self.rng
        start = ms = self.action_ms
        trace_id = f"{rng.getrandbits(128):032x}"
        out: list[tuple[int, Event]] = []
        touring = bool(self.tour) and force is None
        dest: Destination | None
        if touring:
            index, dest = self.tour.popleft()
            tool = self.tools[index]
        elif force is not None:
            index, dest = force
            tool = self.tools[index]
        else:
            cum = self.trans_cum[self.prev_tool]
            index = bisect(cum, rng.random() * cum[-1])
            tool = self.tools[index]
            dest = rng.choice(tool.dests) if tool.dests else None
        spec = tool.spec
        self.prev_tool = index
        # The LLM decides on the call (and writes its content) ...
        model_index = -1
        if self.tour_models and force is None:
            model_index = self.tour_models.popleft()
        elif not touring and rng.random() < spec.llm_rate:
            model_index = bisect(self.model_cum, rng.random() * self.model_cum[-1])
        if model_index >= 0:
            ev, duration = self._llm(ms, trace_id, model_index)
            out.append((ms, ev))
            ms += duration + rng.randint(5, 60)
        # ... the tool reads its credential now and then ...
        if spec.secret is not None and not touring and rng.random() < spec.secret_rate:
            ev, duration = self._secret(ms, trace_id, spec.secret)
            out.append((ms, ev))
            ms += duration + rng.randint(1, 10)
        # ... and the tool runs.
        ev, duration = self._tool_call(ms, trace_id, tool, dest)
        out.append((ms, ev))
        end = ms + duration
        self.actions_left -= 1
        # Pace: events_per_minute (scaled by the daily curve) counted from action start.
        if touring:
            self.action_ms = end + rng.randint(300, 1200)
        else:
            self.action_ms = self.pace(start, end, len(out))
        return out

    def pace(self, start: int, end: int, events: int) -> int:
        """When the next action starts after one of ``events`` events from start to end."""
        mean_ms = events * 60_000 / (self.profile.events_per_minute * self.curve(start))
        think = max(mean_ms - (end - start), 0.2 * mean_ms)
        return end + 20 + int(self.rng.expovariate(1 / think))

    def _exfiltration(self) -> list[tuple[int, Event]]:
        """A hijacked step: read a secret, then send data to a place never used before."""
        rng = self.rng
        profile = self.profile
        self.attack_pending = False
        ms = start = self.action_ms
        trace_id = f"{rng.getrandbits(128):032x}"
        secrets = profile.secrets or ("prod-db-password",)
        secret = rng.choice(secrets)
        channel: ExfilChannel = rng.choices(profile.exfil, [c.weight for c in profile.exfil])[0]
        value = random_destination(rng, channel.kind)
        while (channel.kind, value) in self.usual:  # pragma: no cover - vanishingly rare
            value = random_destination(rng, channel.kind)
        dest = Destination(kind=channel.kind, value=value)
        secret_ev, duration = self._secret(ms, trace_id, secret)
        ms += duration + rng.randint(200, 2500)
        bytes_out = int(channel.bytes_out.sample(rng))
        send_ms = 150.0 + bytes_out / 8_000.0 * (0.7 + 0.6 * rng.random())  # ~8 MB/s
        self.fill["dest"] = value
        if channel.event_type == "tool_call":
            send = self.event(
                ms,
                "tool_call",
                trace_id,
                tool_name=channel.tool,
                tool_args=self.args(_compile_args(channel.args)),
                destinations=[dest],
                duration_ms=round(send_ms, 1),
                bytes_in=rng.randint(200, 900),
                bytes_out=bytes_out,
            )
        else:
            send = self.event(
                ms,
                "network",
                trace_id,
                destinations=[dest],
                duration_ms=round(send_ms, 1),
                bytes_in=rng.randint(200, 900),
                bytes_out=bytes_out,
                attributes={"network.protocol.name": "https", "http.request.method": "POST"},
            )
        self.action_ms = ms + int(send_ms) + rng.randint(500, 3000)
        self.attack = InjectedAttack(
            kind="exfiltration",
            agent_id=self.spec.agent_id,
            agent_type=self.spec.agent_type,
            session_id=self.session_id,
            start=secret_ev.ts,
            event_ids=(secret_ev.event_id, send.event_id),
            destination=dest,
            channel=channel.tool or "network",
            secret_name=secret,
        )
        return [(start, secret_ev), (ms, send)]

    def metric(self, ms: int) -> Event:
        rng = self.rng
        busy = 1.0 if self.in_session else 0.3
        cpu = min(100.0, self.cpu_base * busy * rng.lognormvariate(0.0, 0.25))
        self.mem_mb = max(64.0, self.mem_mb * (1.0 + rng.gauss(0.0, 0.01)))
        return Event(
            schema_version="1",
            event_id=_uuid4(rng),
            ts=_EPOCH + ms * _MS,
            agent_id=self.spec.agent_id,
            type="metric",
            agent_version=self.version,
            agent_type=self.spec.agent_type,
            metrics={"cpu_pct": round(cpu, 2), "memory_mb": round(self.mem_mb, 1)},
        )


# ---------------------------------------------------------------------------------------------
# Building agents (shared by the fleet and the scenario simulation)

_A = TypeVar("_A", bound=_Agent)


def shared_destinations(seed: int, profile: Profile) -> dict[str, list[str]]:
    """The destinations every agent of ``profile``'s group uses, per pool."""
    rng = random.Random(f"agentwatch-group:{seed}:{profile.group}")
    fill = _Fill(rng, {**BASE_VOCAB, **profile.vocab})
    return {
        name: list(dict.fromkeys(v.format_map(fill) for v in pool.shared))
        for name, pool in profile.pools.items()
    }


def make_agent(
    cls: type[_A], profile: Profile, number: int, rng: random.Random, shared: dict[str, list[str]]
) -> _A:
    """Agent ``number`` of ``profile``'s group: its usual destinations, version and zone."""
    fill = _Fill(rng, {**BASE_VOCAB, **profile.vocab})
    values: dict[str, list[str]] = {}
    for name, pool in profile.pools.items():
        chosen = list(shared[name])
        for _ in range(pool.per_agent):
            for _attempt in range(20):
                value = pool.template.format_map(fill)
                if value not in chosen:
                    chosen.append(value)
                    break
        values[name] = chosen
    used_pools = {t.pool for t in profile.tools if t.pool is not None}
    dests = {
        name: [Destination(kind=profile.pools[name].kind, value=v) for v in vals]
        for name, vals in values.items()
        if name in used_pools
    }
    spec = AgentSpec(
        agent_id=f"{profile.group}-{number:02d}",
        agent_type=profile.group,
        agent_version=rng.choice(profile.versions),
        utc_offset_h=rng.choice(profile.utc_offsets),
        destinations={name: tuple(d.value for d in ds) for name, ds in dests.items()},
        secrets=profile.secrets,
        models=tuple(m.name for m in profile.models),
        profile=profile,
    )
    agent = cls(spec, rng, dests)
    agent.pool_values = values
    return agent


def build_agents(cls: type[_A], n_agents: int, seed: int, profiles: Sequence[Profile]) -> list[_A]:
    """``n_agents`` agents, round-robin over ``profiles``, numbered per group (``-01``...)."""
    shared = {p.group: shared_destinations(seed, p) for p in profiles}
    numbers: dict[str, int] = {}
    agents: list[_A] = []
    for i in range(n_agents):
        profile = profiles[i % len(profiles)]
        number = numbers[profile.group] = numbers.get(profile.group, 0) + 1
        rng = random.Random(f"agentwatch-agent:{seed}:{i}")
        agents.append(make_agent(cls, profile, number, rng, shared[profile.group]))
    return agents


# ---------------------------------------------------------------------------------------------
# The fleet


def _to_ms(t: datetime) -> int:
    """Milliseconds since the epoch, rounded down (so ``ms <= _to_ms(t)`` ⇔ ts ≤ t)."""
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("datetimes passed to the fleet must be timezone-aware")
    return (t - _EPOCH) // _MS


_ATTACK = -1


class Fleet:
    """A deterministic simulated fleet of ``n_agents`` agents of the built-in peer groups.

    ``attack_every_s`` is the mean event-time spacing of injected exfiltrations across the
    whole fleet (0 disables them); the first comes ``first_attack_s`` after ``start``, and
    only agents that have already sent ``baseline_events`` events are hijacked.
    """

    def __init__(
        self,
        n_agents: int,
        seed: int,
        start: datetime | None = None,
        *,
        attack_every_s: float = 60.0,
        first_attack_s: float = 30.0,
        baseline_events: int = 25,
        profiles: Sequence[Profile] = PROFILES,
    ) -> None:
        if n_agents < 1:
            raise ValueError("n_agents must be >= 1")
        if attack_every_s < 0 or first_attack_s < 0 or baseline_events < 0:
            raise ValueError("attack_every_s, first_attack_s and baseline_events must be >= 0")
        if not profiles:
            raise ValueError("at least one profile is needed")
        self.seed = seed
        self.start = start if start is not None else datetime.now(UTC)
        self.attack_every_s = attack_every_s
        self.baseline_events = baseline_events
        self.injected: list[InjectedAttack] = []
        self.emitted = 0
        self._last_ms = _to_ms(self.start)
        self._last_t = self.start
        self._rng = random.Random(f"agentwatch-fleet:{seed}")
        self._seq = count()
        self.agents: list[AgentSpec] = []
        self._agents: list[_Agent] = []
        self._heap: list[tuple[int, int, int]] = []
        for i, agent in enumerate(build_agents(_Agent, n_agents, seed, profiles)):
            rng = agent.rng
            self.agents.append(agent.spec)
            self._agents.append(agent)
            agent.action_ms = self._last_ms + rng.randint(50, 8000)
            self._refill(agent)
            self._heap.append((agent.pending[0][0], next(self._seq), 2 * i))
            metric_ms = self._last_ms + rng.randint(1000, _METRIC_EVERY_MS)
            self._heap.append((metric_ms, next(self._seq), 2 * i + 1))
        if attack_every_s > 0:
            self._heap.append(
                (self._last_ms + int(first_attack_s * 1000), next(self._seq), _ATTACK)
            )
        heapify(self._heap)

    @staticmethod
    def _refill(agent: _Agent) -> None:
        """Queue the agent's next step; an attack is recorded when its first event goes out."""
        for ms, event in agent.step():
            agent.pending.append((ms, event, agent.attack))
            agent.attack = None

    # -- driving ---------------------------------------------------------------------------

    @property
    def last_t(self) -> datetime:
        """The end of the last interval returned (``start`` before the first call)."""
        return self._last_t

    def events_until(self, t: datetime) -> list[Event]:
        """All events with ``last_t < ts <= t`` in time order; moves ``last_t`` to ``t``."""
        limit = _to_ms(t)
        if t <= self._last_t:
            return []
        self._last_t = t
        out: list[Event] = []
        append = out.append
        heap = self._heap
        agents = self._agents
        seq = self._seq
        while heap and heap[0][0] <= limit:
            ms, _, source = heap[0]
            if source >= 0:
                index = source >> 1
                agent = agents[index]
                if source & 1:
                    append(agent.metric(ms))
                    agent.emitted += 1
                    heapreplace(heap, (ms + agent.rng.randint(28_000, 32_000), next(seq), source))
                    continue
                _, event, attack = agent.pending.popleft()
                append(event)
                agent.emitted += 1
                if attack is not None:
                    self.injected.append(attack)
                if not agent.pending:
                    self._refill(agent)
                heapreplace(heap, (agent.pending[0][0], next(seq), source))
            else:
                self._trigger_attack(ms)
        self.emitted += len(out)
        self._last_ms = limit
        return out

    def advance(self, seconds: float) -> list[Event]:
        """The events of the next ``seconds`` of event time (a fast driver's step)."""
        return self.events_until(self._last_t + timedelta(seconds=seconds))

    def _trigger_attack(self, ms: int) -> None:
        rng = self._rng
        eligible = [
            a
            for a in self._agents
            if a.in_session and not a.attack_pending and a.emitted >= self.baseline_events
        ]
        if not eligible:
            heapreplace(self._heap, (ms + 5_000, next(self._seq), _ATTACK))
            return
        rng.choice(eligible).attack_pending = True
        gap = self.attack_every_s * 1000 * rng.uniform(0.7, 1.3)
        heapreplace(self._heap, (ms + max(1, int(gap)), next(self._seq), _ATTACK))

    def agent(self, agent_id: str) -> AgentSpec:
        for spec in self.agents:
            if spec.agent_id == agent_id:
                return spec
        raise KeyError(agent_id)


def benchmark(n_agents: int = 200, minutes: float = 60.0) -> None:  # pragma: no cover
    import time

    fleet = Fleet(n_agents, seed=1, start=datetime(2026, 11, 24, 8, 0, tzinfo=UTC))
    t0 = time.perf_counter()
    total = 0
    for _ in range(int(minutes * 60)):
        total += len(fleet.advance(1.0))
    elapsed = time.perf_counter() - t0
    print(
        f"{n_agents} agents, {minutes:g} min of event time: {total:,} events in "
        f"{elapsed:.2f} s = {total / elapsed:,.0f} events/s; {len(fleet.injected)} attacks"
    )
