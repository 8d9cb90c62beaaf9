"""Simulated agent fleet: peer-group profiles and a deterministic event generator.

Used by ``agentwatch up --demo`` to feed the pipeline with realistic, mostly benign agent
telemetry plus occasional injected attacks whose ground truth is kept in
:attr:`Fleet.injected`.
"""

from agentwatch.sim.fleet import AgentSpec, Fleet, InjectedAttack
from agentwatch.sim.profiles import PROFILE_BY_GROUP, PROFILES, Profile

__all__ = ["PROFILES", "PROFILE_BY_GROUP", "AgentSpec", "Fleet", "InjectedAttack", "Profile"]
