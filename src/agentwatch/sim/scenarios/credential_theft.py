"""Credential theft: the agent reads secrets — at least one it never needs — and then sends
a few kilobytes to a host it has never contacted, in the same session.

Signature: ``secret_access`` events followed, in the same session and trace, by a
``network`` POST to a never-used ``host`` destination.
"""

from __future__ import annotations

import random

from agentwatch.schemas.events import Destination, Event
from agentwatch.sim.agent import Episode, SimAgent
from agentwatch.sim.scenarios.base import Scenario, ScenarioContext, human_bytes, register
from agentwatch.sim.truth import Instance

# High-value credentials no simulated agent reads in normal work.
CROWN_JEWELS = (
    "vault:kv/prod/aws-root-credentials",
    "vault:kv/prod/db-admin-password",
    "vault:kv/ci/github-org-admin-token",
    "vault:kv/prod/stripe-live-secret-key",
    "vault:kv/infra/ssh-ca-private-key",
    "vault:kv/prod/okta-api-token",
)


class _Theft(Episode):
    def __init__(
        self, instance: Instance, secrets: list[str], dest: Destination, bytes_out: int
    ) -> None:
        super().__init__(instance)
        self.secrets = secrets
        self.dest = dest
        self.bytes_out = bytes_out
        self.trace: str | None = None

    def step(self, agent: SimAgent) -> list[tuple[int, Event]]:
        rng = agent.rng
        ms = agent.action_ms
        out: list[tuple[int, Event]] = []
        if self.trace is None:  # the hijacked agent plans, then collects the secrets ...
            self.trace = agent.new_trace()
            event, duration = agent.llm(ms, self.trace)
            out.append((ms, event))
            ms += duration + rng.randint(20, 200)
            for name in self.secrets:
                event, duration = agent.secret(ms, self.trace, name)
                out.append((ms, event))
                ms += duration + rng.randint(50, 900)
            agent.action_ms = ms + rng.randint(500, 4000)
            return out
        # ... and posts them to a host it never used.
        duration_f = 120.0 + self.bytes_out / 2_000 * (0.7 + 0.6 * rng.random())
        event = agent.network(
            ms,
            self.trace,
            self.dest,
            bytes_out=self.bytes_out,
            bytes_in=rng.randint(150, 900),
            duration_ms=duration_f,
            attributes={"network.protocol.name": "https", "http.request.method": "POST"},
        )
        self.done = True
        agent.action_ms = ms + int(duration_f) + rng.randint(300, 3000)
        return [(ms, event)]


@register
class CredentialTheft(Scenario):
    name = "credential_theft"
    attack = True
    summary = "reads secrets (one it never uses), then posts to a host it never contacted"

    def place(self, ctx: ScenarioContext, rng: random.Random) -> bool:
        slot = ctx.find_slot(rng, ctx.span(600, 0.2))
        if slot is None:
            return False
        agent, t0 = slot
        usual = list(agent.spec.profile.secrets)
        secrets = rng.sample(CROWN_JEWELS, rng.randint(1, 2))
        if usual and rng.random() < 0.6:
            secrets.insert(rng.randrange(len(secrets) + 1), rng.choice(usual))
        dest = agent.fresh_destination("host", rng)
        bytes_out = rng.randint(800, 24_000)
        instance = ctx.instance(
            self,
            agent,
            f"{agent.spec.agent_id} read {', '.join(secrets)} and then posted "
            f"{human_bytes(bytes_out)} to {dest.value}, a host it had never contacted, "
            "in the same session",
        )
        episode = _Theft(instance, secrets, dest, bytes_out)
        ctx.at(t0, lambda ms: ctx.run_episode(agent, episode, ms))
        return True
