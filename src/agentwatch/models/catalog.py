"""Imports every built-in detector module so that each registers itself."""

from agentwatch.models import (  # noqa: F401
    new_destination,
    new_tool,
    new_tool_destination,
    new_transition,
)
