"""Routing: which routes (and so which receivers and grouping) an anomaly goes to.

Routes are tried in order; the first that matches takes the anomaly unless it says
``continue: true``, in which case later routes are tried too. An anomaly no route matched
goes to ``default_receivers`` (the route named ``default``), or nowhere if there are none.

>>> from agentwatch.alerts.config import AlertSettings
>>> settings = AlertSettings.model_validate({
...     "receivers": [{"name": "pager", "type": "webhook", "url": "http://x"},
...                   {"name": "chat", "type": "webhook", "url": "http://y"}],
...     "routes": [{"name": "high", "match": {"min_severity": "high"}, "receivers": "pager",
...                 "continue": True},
...                {"name": "all", "receivers": "chat"}]})
>>> router = Router(settings)
>>> [r.name for r in router.routes_for({"severity": "critical"})]
['high', 'all']
>>> [r.name for r in router.routes_for({"severity": "low"})]
['all']
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from dataclasses import dataclass

from agentwatch.alerts.config import (
    SEVERITY_RANK,
    AlertSettings,
    GroupTiming,
    RouteConfig,
    RouteMatch,
)

__all__ = ["DEFAULT_ROUTE", "Route", "Router", "TeamIndex"]

DEFAULT_ROUTE = "default"


def _globs(patterns: tuple[str, ...] | None) -> re.Pattern[str] | None:
    if patterns is None:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)")


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled route: its match, receivers and grouping timers."""

    name: str
    receivers: tuple[str, ...]
    timing: GroupTiming
    continue_: bool
    compiled: _CompiledMatch

    @property
    def match(self) -> RouteMatch:
        return self.compiled.match

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.compiled.matches(labels)


@dataclass(frozen=True, slots=True)
class _CompiledMatch:
    severities: frozenset[str] | None
    min_rank: int | None
    globs: tuple[tuple[str, re.Pattern[str]], ...]
    labels: tuple[tuple[str, str], ...]
    match: RouteMatch

    def matches(self, labels: Mapping[str, str]) -> bool:
        severity = labels.get("severity", "")
        if self.severities is not None and severity not in self.severities:
            return False
        if self.min_rank is not None and SEVERITY_RANK.get(severity, -1) < self.min_rank:
            return False
        for name, pattern in self.globs:
            if pattern.fullmatch(labels.get(name, "")) is None:
                return False
        for name, value in self.labels:
            if labels.get(name, "") != value:
                return False
        return all(m.matches(labels) for m in self.match.matchers)


def _compile_match(match: RouteMatch) -> _CompiledMatch:
    globs = []
    for name, patterns in (
        ("detector", match.detector),
        ("agent_id", match.agent),
        ("agent_type", match.agent_type),
        ("peer_group", match.peer_group),
        ("team", match.team),
    ):
        compiled = _globs(patterns)
        if compiled is not None:
            globs.append((name, compiled))
    return _CompiledMatch(
        severities=frozenset(match.severity) if match.severity is not None else None,
        min_rank=SEVERITY_RANK[match.min_severity] if match.min_severity else None,
        globs=tuple(globs),
        labels=tuple(sorted(match.labels.items())),
        match=match,
    )


def _route(config: RouteConfig, defaults: GroupTiming) -> Route:
    return Route(
        name=config.name,
        receivers=config.receivers,
        timing=config.timing(defaults),
        continue_=config.continue_,
        compiled=_compile_match(config.match),
    )


class Router:
    """The routes of ``settings``, compiled."""

    def __init__(self, settings: AlertSettings) -> None:
        self.routes = tuple(_route(r, settings.defaults) for r in settings.routes)
        self.default: Route | None = None
        if settings.default_receivers:
            self.default = Route(
                name=DEFAULT_ROUTE,
                receivers=settings.default_receivers,
                timing=settings.defaults,
                continue_=False,
                compiled=_compile_match(RouteMatch()),
            )
        self._by_name = {r.name: r for r in self.routes}
        if self.default is not None:
            self._by_name.setdefault(DEFAULT_ROUTE, self.default)

    def get(self, name: str) -> Route | None:
        return self._by_name.get(name)

    def routes_for(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes ``labels`` go to, in order (empty: the anomaly is not alerted)."""
        found: list[Route] = []
        for route in self.routes:
            if route.matches(labels):
                found.append(route)
                if not route.continue_:
                    break
        if not found and self.default is not None:
            found.append(self.default)
        return found


class TeamIndex:
    """agent_id -> team from ``teams`` (team -> agent_id glob patterns); first team wins."""

    def __init__(self, teams: Mapping[str, tuple[str, ...]]) -> None:
        self._teams = [(team, _globs(patterns)) for team, patterns in teams.items()]
        self._cache: dict[str, str] = {}

    def get(self, agent_id: str, default: str | None = None) -> str | None:
        if not self._teams:
            return default
        team = self._cache.get(agent_id)
        if team is None:
            team = ""
            for name, pattern in self._teams:
                if pattern is not None and pattern.fullmatch(agent_id):
                    team = name
                    break
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[agent_id] = team
        return team or default
