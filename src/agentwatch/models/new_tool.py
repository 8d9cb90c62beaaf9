"""First use of a tool by an agent: capabilities outside its usual set (excessive agency)."""

from __future__ import annotations

from agentwatch.features.context import EventContext
from agentwatch.models.base import register
from agentwatch.models.novelty import NoveltyDetector
from agentwatch.schemas.events import Event


@register("new_tool")
class NewToolDetector(NoveltyDetector):
    name = "new_tool"
    family = "tool"
    noun = ("tool", "tools")

    def keys(self, event: Event, ctx: EventContext) -> list[str]:
        return [ctx.tool] if ctx.tool else []

    def verb(self) -> str:
        return "called"
