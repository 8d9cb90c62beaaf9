"""Alertmanager label matchers: ``name="value"``, ``name!="value"``, ``name=~"re"``, ``name!~"re"``.

Regular expressions are anchored (they must match the whole value), as in Alertmanager. A
label that is absent has the value ``""``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["Matcher", "matches_all", "parse_matcher"]

Op = Literal["=", "!=", "=~", "!~"]

_MATCHER_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$", re.DOTALL
)


class Matcher(BaseModel):
    """One label condition."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    op: Op = "="
    value: str = ""

    @model_validator(mode="after")
    def _check_regex(self) -> Matcher:
        if self.op in ("=~", "!~"):
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"matcher {self}: invalid regular expression: {exc}") from exc
        return self

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return re.compile(self.value)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher.

        >>> parse_matcher('agent_id=~"billing-.*"').matches({"agent_id": "billing-7"})
        True
        """
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = self._regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found

    def matches_empty(self) -> bool:
        """Whether this matcher matches a label set without the label."""
        return self.matches({})

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """A matcher from its text form (quotes around the value are optional).

    >>> str(parse_matcher('severity != info'))
    'severity!="info"'
    """
    match = _MATCHER_RE.match(text)
    if match is None:
        raise ValueError(f"invalid matcher {text!r}: expected name=value, !=, =~ or !~")
    value = match["value"]
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return Matcher(name=match["name"], op=match["op"], value=value)  # type: ignore[arg-type]


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
