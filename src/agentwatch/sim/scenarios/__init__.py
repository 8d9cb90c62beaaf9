"""Labelled scenarios of the simulation, one module each, found and registered on import.

Attacks: ``prompt_injection_exfiltration``, ``credential_theft``, ``runaway_loop``,
``excessive_agency``, ``lateral_movement``, ``slow_poisoning``, ``agent_silent``,
``resource_abuse``. Benign hard negatives (``attack: false``): ``version_deploy``,
``new_shared_destination``, ``daily_peak``. Adding a scenario is adding a module here whose
class is decorated with :func:`~agentwatch.sim.scenarios.base.register`.

>>> sorted(SCENARIOS)[:3]
['agent_silent', 'credential_theft', 'daily_peak']
>>> select("credential_theft=2,agent_silent", count=1)
{'credential_theft': 2, 'agent_silent': 1}
"""

from __future__ import annotations

import importlib
import pkgutil

from agentwatch.sim.scenarios.base import SCENARIOS, Scenario, ScenarioContext, register

__all__ = [
    "ATTACKS",
    "BENIGN",
    "SCENARIOS",
    "Scenario",
    "ScenarioContext",
    "register",
    "select",
]

for _module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _module.name.startswith("_") and _module.name != "base":
        importlib.import_module(f"{__name__}.{_module.name}")

ATTACKS: tuple[str, ...] = tuple(sorted(n for n, c in SCENARIOS.items() if c.attack))
BENIGN: tuple[str, ...] = tuple(sorted(n for n, c in SCENARIOS.items() if not c.attack))

_GROUPS = {"all": ATTACKS + BENIGN, "attacks": ATTACKS, "benign": BENIGN, "none": ()}


def select(spec: str, count: int = 1) -> dict[str, int]:
    """Scenario names and placements from ``all``, ``attacks``, ``benign``, ``none`` or a
    comma-separated list of names, each optionally ``name=N`` (default ``count``)."""
    if count < 0:
        raise ValueError("count must be >= 0")
    chosen: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, n = part.partition("=")
        name = name.strip()
        try:
            times = int(n) if n.strip() else count
        except ValueError:
            raise ValueError(f"bad count in {part!r}") from None
        if times < 0:
            raise ValueError(f"bad count in {part!r}")
        if name in _GROUPS:
            for member in _GROUPS[name]:
                chosen[member] = times
        elif name in SCENARIOS:
            chosen[name] = times
        else:
            known = ", ".join([*_GROUPS, *sorted(SCENARIOS)])
            raise ValueError(f"unknown scenario {name!r} (known: {known})")
    return {name: n for name, n in chosen.items() if n > 0}
