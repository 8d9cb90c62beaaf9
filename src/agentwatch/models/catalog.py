"""Imports every built-in detector module so that each registers itself."""

from agentwatch.models import (  # noqa: F401
    argument_size,
    drift,
    metric,
    new_argument,
    new_destination,
    new_tool,
    new_tool_destination,
    new_transition,
    payload_size,
    peer,
    rate,
)
