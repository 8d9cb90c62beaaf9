"""Simulated agent fleets: peer-group profiles, a deterministic event generator, scenarios.

* :class:`Fleet` — the demo fleet of ``agentwatch up --demo``: benign agents plus occasional
  injected exfiltrations whose ground truth is kept in :attr:`Fleet.injected`.
* :class:`Simulation` — ``agentwatch simulate``: the same agents over a simulated period
  with labelled scenarios (:mod:`agentwatch.sim.scenarios`) and their ground truth
  (:mod:`agentwatch.sim.truth`). ``generate(SimConfig(...))`` returns events and truth in
  memory; see ``docs/simulator.md``.
"""

from agentwatch.sim.engine import DEFAULT_START, SimConfig, Simulation, generate, simulate
from agentwatch.sim.fleet import AgentSpec, Fleet, InjectedAttack
from agentwatch.sim.profiles import PROFILE_BY_GROUP, PROFILES, Profile
from agentwatch.sim.scenarios import ATTACKS, BENIGN, SCENARIOS, select
from agentwatch.sim.truth import TruthRecord, read_truth, truth_path, write_truth

__all__ = [
    "ATTACKS",
    "BENIGN",
    "DEFAULT_START",
    "PROFILES",
    "PROFILE_BY_GROUP",
    "SCENARIOS",
    "AgentSpec",
    "Fleet",
    "InjectedAttack",
    "Profile",
    "SimConfig",
    "Simulation",
    "TruthRecord",
    "generate",
    "read_truth",
    "select",
    "simulate",
    "truth_path",
    "write_truth",
]
