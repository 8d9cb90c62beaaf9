"""Imports every built-in detector module so that each registers itself."""

from agentwatch.models import new_destination  # noqa: F401
