"""A known destination reached through a tool that never sent there before.

An agent that pays a known account only through ``update_scheduled_transaction`` and now
calls ``send_money`` to it, or mails a known colleague from a tool that never mailed
anyone, is acting outside its usual flows even though every place is familiar: the pair
``tool → destination`` is what is new. Pairs whose destination is itself new to the agent
are learned but not scored: that is :mod:`~agentwatch.models.new_destination`'s finding,
and counting it twice would make one novelty look like two.
"""

from __future__ import annotations

from agentwatch.features.context import EventContext
from agentwatch.models.base import register
from agentwatch.models.novelty import NoveltyDetector
from agentwatch.schemas.events import Event


@register("new_tool_destination")
class NewToolDestinationDetector(NoveltyDetector):
    name = "new_tool_destination"
    family = "tool_destination"
    noun = ("tool → destination pair", "tool → destination pairs")
    needs_known_part = True  # the destination

    def keys(self, event: Event, ctx: EventContext) -> list[str]:
        if not ctx.tool:
            return []
        return [f"{ctx.tool}>{kind}/{value}" for kind, value in ctx.destinations]

    def context(self, key: str, event: Event, ctx: EventContext) -> str | None:
        return key.partition(">")[0]  # the tool: one that always sends to the same places

    def label(self, key: str) -> str:
        tool, _, destination = key.partition(">")
        kind, _, value = destination.partition("/")
        return f"{tool} → {kind} {value}"

    def verb(self) -> str:
        return "used"
