"""A tool sequence never seen for the agent: previous tool → this tool within a session.

``^ → send_money`` is a session that starts with a payment; ``read_file → send_money`` a
payment right after reading a document. Injected instructions change the order of work
before they change anything else. Transitions into a tool the agent never called are
learned but not scored: the new tool is :mod:`~agentwatch.models.new_tool`'s finding, and
every first call of a tool would otherwise count twice.
"""

from __future__ import annotations

from agentwatch.features.context import SESSION_START, EventContext
from agentwatch.models.base import register
from agentwatch.models.novelty import NoveltyDetector
from agentwatch.schemas.events import Event


@register("new_transition")
class NewTransitionDetector(NoveltyDetector):
    name = "new_transition"
    family = "transition"
    noun = ("tool transition", "tool transitions")
    needs_known_part = True  # the tool called

    def keys(self, event: Event, ctx: EventContext) -> list[str]:
        if ctx.transition is None:
            return []
        before, after = ctx.transition
        return [f"{before}>{after}"]

    def label(self, key: str) -> str:
        before, _, after = key.partition(">")
        return f"{'session start' if before == SESSION_START else before} → {after}"

    def verb(self) -> str:
        return "made"
