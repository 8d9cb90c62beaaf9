"""The JSON Schemas of the wire contract, as shipped in the installed package.

``agentwatch/schemas/json/`` holds byte-identical copies of the files in ``schemas/`` at the
repository root (a unit test keeps them equal), so ``agentwatch schema`` can print or export
them without a source checkout.

>>> schema_json("agent_event.v1")["$id"]
'https://agentwatch.dev/schemas/agent_event.v1.json'
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any

SCHEMA_NAMES: tuple[str, ...] = ("agent_event.v1", "anomaly.v1")


def _check(name: str) -> None:
    if name not in SCHEMA_NAMES:
        known = ", ".join(SCHEMA_NAMES)
        raise ValueError(f"unknown schema {name!r}; known schemas: {known}")


@cache
def schema_text(name: str) -> str:
    """The JSON Schema ``name`` (e.g. ``"agent_event.v1"``) exactly as shipped."""
    _check(name)
    resource = files("agentwatch.schemas").joinpath("json").joinpath(f"{name}.json")
    return resource.read_text(encoding="utf-8")


def schema_json(name: str) -> dict[str, Any]:
    """The JSON Schema ``name`` parsed; a fresh object on every call."""
    parsed: dict[str, Any] = json.loads(schema_text(name))
    return parsed
