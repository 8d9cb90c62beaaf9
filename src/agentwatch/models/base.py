"""Detector interfaces and the detector registry.

Two kinds of detector, both in river's shape (score first, then learn):

* :class:`EventDetector` sees every event of an agent in event-time order (novelty, flow
  rules, metric samples) and answers within the batch;
* :class:`WindowDetector` sees the per-agent feature vector of each closed tumbling window
  or session (rates, volumes, peer-group novelty, drift).

A detector returns a :class:`Finding` — a tail probability plus the readable reasons — or
``None``. The engine turns findings into calibrated scores and anomalies, and tells the
detectors to learn only from what was not flagged (river's ``protect_anomaly_detector``),
so repetition cannot make an attack normal. Detector state is per agent (or per peer
group), serialisable with :meth:`state_of`/:meth:`load_state` for snapshots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar, runtime_checkable

from agentwatch.config import DetectSettings
from agentwatch.features.context import EventContext
from agentwatch.features.windows import WindowFeatures
from agentwatch.schemas.anomaly import Contribution
from agentwatch.schemas.events import Event


@dataclass(frozen=True, slots=True)
class Finding:
    """What one detector found about one event or window."""

    detector: str
    p: float
    explanation: str
    contributions: tuple[Contribution, ...] = ()
    event_ids: tuple[str, ...] = ()
    # Baseline items an analyst can accept as benign (e.g. "destination/host/x.example").
    keys: tuple[str, ...] = ()
    # A fixed minimum score regardless of p (rules written by people carry their own).
    min_score: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class EventDetector(Protocol):
    name: str

    def score(self, event: Event, ctx: EventContext) -> Finding | None:
        """How unusual ``event`` is for its agent (no state change)."""
        ...

    def learn(self, event: Event, ctx: EventContext) -> None:
        """Fold ``event`` into the agent's baseline."""
        ...

    def accept(self, agent_id: str, keys: Iterable[str]) -> None:
        """Analyst feedback: these flagged items are benign for this agent."""
        ...

    def state_of(self, agent_id: str) -> Any:
        """The agent's state as plain data (msgpack-able), or None."""
        ...

    def load_state(self, agent_id: str, state: Any) -> None: ...

    def agents(self) -> int: ...


@runtime_checkable
class WindowDetector(Protocol):
    """A detector of closed windows and sessions.

    Optional: ``observe(window)``, called by the engine for a scored window it does not
    learn (it was flagged) — to count it in a calibration or a fast average without
    teaching the baseline; ``prepare(windows)``, called with every batch of windows that
    close together before any of them is scored — to compare each agent with its peer
    group at that moment.
    """

    name: str

    def score(self, window: WindowFeatures) -> Finding | None: ...

    def learn(self, window: WindowFeatures) -> None: ...

    def state_of(self, agent_id: str) -> Any: ...

    def load_state(self, agent_id: str, state: Any) -> None: ...

    def agents(self) -> int: ...


Detector = EventDetector | WindowDetector
DetectorFactory = Callable[[DetectSettings], Detector]

REGISTRY: dict[str, DetectorFactory] = {}


def register(name: str) -> Callable[[DetectorFactory], DetectorFactory]:
    """Decorator adding a detector factory to :data:`REGISTRY` under ``name``."""

    def wrap(factory: DetectorFactory) -> DetectorFactory:
        if name in REGISTRY:
            raise ValueError(f"detector {name!r} registered twice")
        REGISTRY[name] = factory
        return factory

    return wrap


def build_detectors(settings: DetectSettings, names: list[str] | None = None) -> list[Detector]:
    """Instantiate the named detectors (the enabled ones from settings by default)."""
    from agentwatch.models import catalog  # noqa: F401  (registers the built-in detectors)

    chosen = names if names is not None else list(settings.detectors or sorted(REGISTRY))
    unknown = [n for n in chosen if n not in REGISTRY]
    if unknown:
        raise ValueError(f"unknown detector(s) {unknown}; known: {sorted(REGISTRY)}")
    return [REGISTRY[n](settings) for n in chosen]


# -- helpers shared by the detectors -----------------------------------------------------------

T = TypeVar("T")


def settings_overrides(settings: object, prefix: str, config_type: type[T]) -> dict[str, Any]:
    """Scalar fields of the dataclass ``config_type`` that ``settings`` sets as ``prefix+name``.

    Lets a detector factory read ``DetectSettings.rate_alpha`` into ``RateConfig.alpha``
    when the settings object has such a field (of the default's type), and keep the
    default otherwise. Rule tables (tuples) are never read from settings.

    >>> from dataclasses import dataclass
    >>> @dataclass
    ... class Config:
    ...     alpha: float = 0.03
    ...     rules: tuple[str, ...] = ()
    >>> class S:
    ...     rate_alpha = 0.1
    ...     rate_rules = ("x",)
    >>> settings_overrides(S(), "rate_", Config)
    {'alpha': 0.1}
    """
    out: dict[str, Any] = {}
    for spec in fields(config_type):  # type: ignore[arg-type]
        value = getattr(settings, prefix + spec.name, None)
        default = spec.default
        if value is None or isinstance(default, tuple):
            continue  # rule tables are code-level configuration, not settings
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, type(default))
        if ok:
            out[spec.name] = value
    return out


def fmt(x: float) -> str:
    """A short human-readable number for explanations.

    >>> fmt(12.0), fmt(0.0123), fmt(2_500_000.0), fmt(3.14159)
    ('12', '0.0123', '2.5e+06', '3.14')
    """
    if x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return f"{x:.3g}"
