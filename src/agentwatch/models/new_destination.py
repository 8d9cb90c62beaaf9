"""First-seen destination per agent: a place it never sent data or money to.

The clearest behavioural sign of a hijack (prompt-injected exfiltration, a stolen credential
used through the agent). Destinations compare canonically (host case, URL origin, account
spacing), per kind: ``host/api.example.com``, ``email/ap@customer.example``.

A destination is scored with the agent's discovery rate for the tool (or event type) and
kind it was reached with — ``git_push url``, ``send_email email`` — shrunk towards the
agent-wide rate while that context is young (see :mod:`agentwatch.models.novelty`).
"""

from __future__ import annotations

from agentwatch.features.context import EventContext
from agentwatch.models.base import register
from agentwatch.models.novelty import NoveltyDetector
from agentwatch.schemas.events import Event


@register("new_destination")
class NewDestinationDetector(NoveltyDetector):
    name = "new_destination"
    family = "destination"
    noun = ("destination", "destinations")

    def keys(self, event: Event, ctx: EventContext) -> list[str]:
        return [f"{kind}/{value}" for kind, value in ctx.destinations]

    def context(self, key: str, event: Event, ctx: EventContext) -> str | None:
        return f"{ctx.tool or event.type} {key.partition('/')[0]}"

    def label(self, key: str) -> str:
        kind, _, value = key.partition("/")
        return f"{kind} {value}"

    def verb(self) -> str:
        return "sent to"
