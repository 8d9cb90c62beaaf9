"""Multivariate novelty of a whole window against the agent's peer group (Half-Space Trees).

Pure code. One river :class:`~river.anomaly.HalfSpaceTrees` per **peer group**, never per
agent (one model is ≈ 170 KB): every agent of the group teaches it what the group's windows
look like, and each window of a member is scored against it. The window vector is a fixed
subset of features (:data:`PEER_FEATURES`), each log-scaled into ``[0, 1]`` with a fixed
range — ``log1p(x / unit) / log1p(cap / unit)``, clipped — so the trees see the same scale
from the first window and no state needs a scaler.

The trees' raw score is not a probability, and its spread differs per group, so it is
calibrated per group into a tail probability against the scores of the group's recent
windows (a bounded window of the last ``reservoir`` scores): ``p`` is the fraction
of them at least as high, ``(k + 1) / (n + 1)``, and beyond the top ``tail_fraction`` an
exponential tail fitted to the excesses (peaks over threshold) extrapolates, so a window
far outside everything seen still gets a small ``p`` rather than ``1 / n``.

Only **active** windows (at least one event) are learned and scored: most windows of a
session-driven agent are silent, all alike, and a model of the group's windows that is
mostly silence finds every working minute isolated (silence is the rate detector's
business). The trees learn only the windows the engine tells them to (never flagged ones),
but the calibration sees every scored window: a flagged window's score joins the reservoir
when it is observed (or the next window is scored). Leaving flagged windows out would erode
the reservoir's tail and flag ever more windows.

The group's tail probability is finally calibrated **per agent**
(:class:`~agentwatch.models.robust.TailCalibrator`): an agent whose ordinary windows are
always the group's odd ones (the one that reads large documents) is compared with its own
record, so ``p = 0.01`` means one window in a hundred of that agent.

The calibrated ``p`` is uniform over an agent's ordinary windows by construction, so on
its own it would flag one window in a hundred at ``p = 0.01`` — more than one false alert
per agent and two hours of one-minute windows. The reported ``p`` is therefore per
``period_s`` of the agent (:func:`~agentwatch.models.calibration.per_period` over the
period's windows): the chance that an ordinary hour holds a window at least this unlike
the group. A score of 50 means once in a hundred agent-hours.

The explanation names the features that differ most from the group's running mean, in
units of the group's running scale.

Examples
--------
>>> from datetime import UTC, datetime, timedelta
>>> from agentwatch.features.windows import WindowFeatures
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> def window(i, agent, calls, bytes_out):
...     start = t0 + timedelta(minutes=i)
...     values = {"events": calls, "tool_calls": calls, "bytes_out": bytes_out}
...     return WindowFeatures(agent, "support", "window", start.isoformat(), start,
...                           start + timedelta(minutes=1), values, int(calls))
>>> peer = PeerGroupDetector(PeerConfig(hst_window=50, min_scores=50))
>>> for i in range(300):
...     peer.learn(window(i // 3, f"a{i % 3}", 10.0 + i % 4, 20_000.0 + 1000 * (i % 5)))
>>> peer.models()
1
>>> peer.score(window(100, "a0", 11.0, 21_000.0)) is None
True
>>> odd = peer.score(window(100, "a1", 11.0, 5e8))
>>> odd.p < 0.01, odd.contributions[0].feature
(True, 'bytes_out')
"""

from __future__ import annotations

import bisect
import math
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from river import anomaly

from agentwatch.config import DetectSettings
from agentwatch.features.windows import WindowFeatures
from agentwatch.models.base import Finding, fmt, register, settings_overrides
from agentwatch.models.calibration import P_FLOOR, per_period
from agentwatch.models.robust import TailCalibrator
from agentwatch.schemas.anomaly import Contribution

__all__ = ["PEER_FEATURES", "PeerConfig", "PeerGroupDetector"]

PEER_FEATURES: tuple[tuple[str, float, float], ...] = (
    # (feature, unit, cap): scaled = log1p(x / unit) / log1p(cap / unit), clipped to [0, 1];
    # a unit of 0 means a rate already in [0, 1], used as it is.
    ("events", 1.0, 10_000.0),
    ("tool_calls", 1.0, 10_000.0),
    ("events.llm_call", 1.0, 10_000.0),
    ("events.network", 1.0, 10_000.0),
    ("events.file_access", 1.0, 10_000.0),
    ("distinct_tools", 1.0, 256.0),
    ("distinct_destinations", 1.0, 1_000.0),
    ("new_destinations", 1.0, 1_000.0),
    ("secret_accesses", 1.0, 1_000.0),
    ("error_rate", 0.0, 1.0),
    ("denied_rate", 0.0, 1.0),
    ("bytes_in", 1024.0, 1e11),
    ("bytes_out", 1024.0, 1e11),
    ("tokens_in", 100.0, 1e9),
    ("tokens_out", 100.0, 1e9),
    ("cost_usd", 0.01, 1e5),
    ("duration_p95_ms", 10.0, 3.6e6),
)
"""The window vector: a fixed subset of :mod:`agentwatch.features.aggregate` features."""


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Tunables of :class:`PeerGroupDetector`.

    Parameters
    ----------
    n_trees, height
        Half-Space Trees size (cost is linear in trees, exponential in height).
    hst_window
        Windows per HST reference period (river's ``window_size``): the mass profile the
        trees score against is that of the previous ``hst_window`` learned windows.
    seed
        Random seed of the trees (the same for every group, so a snapshot only holds masses).
    reservoir
        Recent learned-window scores kept per group for calibration.
    tail_fraction
        Top share of the reservoir fitted with an exponential tail.
    min_scores
        Scores in a group's reservoir before its windows are scored.
    max_groups
        Peer groups with a model (least recently used evicted).
    stats_alpha
        EW weight of the group's per-feature mean and scale (for explanations).
    report_p
        Windows with a larger (calibrated) tail probability produce no finding.
    calibration_memory
        Windows over which the per-agent calibration decays.
    max_contributions
        Features listed in a finding.
    period_s
        The reported ``p`` is per agent and period of this length (see the module
        documentation); 0 reports the per-window ``p``.
    features
        The window vector (:data:`PEER_FEATURES`).
    """

    n_trees: int = 10
    height: int = 8
    hst_window: int = 250
    seed: int = 7
    reservoir: int = 1000
    tail_fraction: float = 0.05
    min_scores: int = 200
    max_groups: int = 256
    stats_alpha: float = 0.01
    report_p: float = 0.01
    calibration_memory: float = 10_000.0
    max_contributions: int = 3
    period_s: float = 3600.0
    features: tuple[tuple[str, float, float], ...] = PEER_FEATURES

    def __post_init__(self) -> None:
        if self.n_trees < 1 or self.height < 1 or self.hst_window < 2:
            raise ValueError("n_trees and height must be >= 1 and hst_window >= 2")
        if self.reservoir < 20 or not 0 < self.tail_fraction < 0.5:
            raise ValueError("reservoir must be >= 20 and tail_fraction in (0, 0.5)")
        if not self.features:
            raise ValueError("at least one feature is needed")


def _scaler(unit: float, cap: float) -> tuple[float, float]:
    """``(unit, 1 / log1p(cap / unit))``, or ``(0, 1)`` for a rate used as it is."""
    if unit <= 0.0:
        return 0.0, 1.0
    return unit, 1.0 / math.log1p(cap / unit)


class _Group:
    """One peer group's model, score reservoir and per-feature running statistics."""

    __slots__ = ("hst", "learned", "mean", "ranked", "recent", "var")

    def __init__(self, cfg: PeerConfig) -> None:
        # river's HST is untyped: kept as Any so the strict typing of this module holds.
        self.hst: Any = anomaly.HalfSpaceTrees(
            n_trees=cfg.n_trees, height=cfg.height, window_size=cfg.hst_window, seed=cfg.seed
        )
        self.recent: deque[float] = deque()
        self.ranked: list[float] = []
        self.mean = [0.0] * len(cfg.features)
        self.var = [0.0] * len(cfg.features)
        self.learned = 0

    def ready(self, cfg: PeerConfig) -> bool:
        return len(self.ranked) >= cfg.min_scores and not self.hst._first_window

    def add_score(self, score: float, limit: int) -> None:
        self.recent.append(score)
        bisect.insort(self.ranked, score)
        if len(self.recent) > limit:
            old = self.recent.popleft()
            del self.ranked[bisect.bisect_left(self.ranked, old)]

    def tail_p(self, score: float, tail_fraction: float) -> float:
        """Calibrated tail probability of ``score`` among the group's recent scores."""
        ranked = self.ranked
        n = len(ranked)
        at_least = n - bisect.bisect_left(ranked, score)
        p = (at_least + 1) / (n + 1)
        k = max(5, int(tail_fraction * n))
        threshold = ranked[n - k]
        if score > threshold:
            excess = sum(ranked[n - k :]) / k - threshold
            if excess > 0.0:
                p = min(p, (k / (n + 1)) * math.exp(-(score - threshold) / excess))
            elif score > ranked[-1]:
                p = min(p, P_FLOOR)
        return max(P_FLOOR, p)


class PeerGroupDetector:
    """Half-Space Trees per peer group over a fixed, log-scaled window vector.

    Parameters
    ----------
    config
        Tunables (defaults: :class:`PeerConfig`).

    Notes
    -----
    Per agent only the calibration counts (:meth:`state_of`, ≈ 60 bytes). A group's model
    is exported as plain data with :meth:`group_state_of` (tree masses, score reservoir,
    running statistics: ≈ 10 k integers with the default trees).
    """

    name = "peer_group"

    def __init__(self, config: PeerConfig | None = None) -> None:
        self.config = cfg = config or PeerConfig()
        self._names = [name for name, _, _ in cfg.features]
        self._scalers = [_scaler(unit, cap) for _, unit, cap in cfg.features]
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._calibrator = TailCalibrator(memory=cfg.calibration_memory)
        self._cal: dict[str, list[float]] = {}
        # The last scored window, its trees' score and its group tail probability, not yet
        # in the reservoir and the agent's calibration.
        self._pending: tuple[WindowFeatures, float, float] | None = None

    # -- vector -----------------------------------------------------------------------------

    def vector(self, window: WindowFeatures) -> list[float]:
        """The window's scaled feature vector, each in ``[0, 1]``."""
        values = window.values
        out: list[float] = []
        for name, (unit, inverse) in zip(self._names, self._scalers, strict=True):
            x = max(0.0, values.get(name, 0.0))
            scaled = math.log1p(x / unit) * inverse if unit else x
            out.append(scaled if scaled < 1.0 else 1.0)
        return out

    def _raw(self, scaled: float, index: int) -> float:
        """Inverse of the scaling: a scaled value in the feature's own units."""
        unit, inverse = self._scalers[index]
        if not unit:
            return scaled
        return unit * math.expm1(scaled / inverse)

    # -- protocol ---------------------------------------------------------------------------

    def agents(self) -> int:
        """Agents with state of their own (calibration counts; models are per group)."""
        return len(self._cal)

    def models(self) -> int:
        """Half-Space Trees models held: one per peer group."""
        return len(self._groups)

    def group_names(self) -> list[str]:
        return list(self._groups)

    def _hst_score(self, group: _Group, vector: list[float]) -> float:
        return float(group.hst.score_one(dict(zip(self._names, vector, strict=True))))

    @staticmethod
    def _active(window: WindowFeatures) -> bool:
        return window.kind == "window" and window.events > 0

    def score(self, window: WindowFeatures) -> Finding | None:
        """How unlike its peer group's recent windows the window is."""
        if not self._active(window):
            return None
        cfg = self.config
        group = self._groups.get(window.peer_group)
        if group is None or not group.ready(cfg):
            return None
        vector = self.vector(window)
        pending = self._pending
        if pending is not None and pending[0] is window:
            raw, p_group = pending[1], pending[2]
        else:
            if pending is not None:  # the previous window was not learned: still calibrate
                self._settle(pending)
            raw = self._hst_score(group, vector)
            p_group = group.tail_p(raw, cfg.tail_fraction)
            self._pending = (window, raw, p_group)
        p_window = self._calibrator.p(self._cal.get(window.agent_id), p_group)
        length = (window.end - window.start).total_seconds()
        p = per_period(p_window, cfg.period_s / length if length > 0 else 1.0)
        if p > cfg.report_p:
            return None
        deviations = []
        for i, scaled in enumerate(vector):
            sd = math.sqrt(max(group.var[i], 0.0))
            z = (scaled - group.mean[i]) / max(sd, 0.01)
            deviations.append((abs(z), z, i, scaled))
        deviations.sort(reverse=True)
        top = [d for d in deviations if d[0] >= 2.0][: cfg.max_contributions] or deviations[:1]
        contributions = tuple(
            Contribution(
                feature=self._names[i],
                value=self._raw(scaled, i),
                typical=self._raw(group.mean[i], i),
                unusual=f"{z:+.1f} peer-group scales from the group mean",
            )
            for _, z, i, scaled in top
        )
        listed = ", ".join(
            f"{c.feature} {fmt(float(c.value))} (group typical {fmt(float(c.typical))})"
            for c in contributions
        )
        higher = sum(1 for s in group.ranked if s < raw) / len(group.ranked)
        explanation = (
            f"window unlike its peer group {window.peer_group!r}: isolation score {raw:.2f}, "
            f"above {higher:.1%} of the group's recent windows, p={p_window:.1g} per window "
            f"(p={p:.1g} per {fmt(cfg.period_s / 3600)} h); "
            f"most different: {listed}"
        )
        return Finding(
            detector=self.name,
            p=p,
            explanation=explanation,
            contributions=contributions,
            event_ids=window.event_ids,
            extra={
                "peer_group": window.peer_group,
                "hst_score": raw,
                "group_p": p_group,
                "window_p": p_window,
            },
        )

    def _settle(self, pending: tuple[WindowFeatures, float, float]) -> None:
        """Count a scored window in its group's reservoir and its agent's calibration."""
        if self._pending is pending:
            self._pending = None
        window, raw, p_group = pending
        group = self._groups.get(window.peer_group)
        if group is not None:
            group.add_score(raw, self.config.reservoir)
        cal = self._cal.get(window.agent_id)
        if cal is None:
            cal = self._cal[window.agent_id] = self._calibrator.new()
        self._calibrator.count(cal, p_group)

    def observe(self, window: WindowFeatures) -> None:
        """A scored window that is not learned (it was flagged): calibrate on it anyway."""
        pending = self._pending
        if pending is not None and pending[0] is window:
            self._settle(pending)

    def learn(self, window: WindowFeatures) -> None:
        """Teach the window to its peer group's model (and calibrate on its score)."""
        if not self._active(window):
            return
        cfg = self.config
        group = self._groups.get(window.peer_group)
        if group is None:
            group = self._groups[window.peer_group] = _Group(cfg)
            while len(self._groups) > cfg.max_groups:
                self._groups.popitem(last=False)
        else:
            self._groups.move_to_end(window.peer_group)
        vector = self.vector(window)
        pending = self._pending
        if pending is not None:
            self._settle(pending)
        if (pending is None or pending[0] is not window) and not group.hst._first_window:
            group.add_score(self._hst_score(group, vector), cfg.reservoir)
        group.hst.learn_one(dict(zip(self._names, vector, strict=True)))
        a = max(cfg.stats_alpha, 1.0 / (group.learned + 1))
        for i, scaled in enumerate(vector):
            d = scaled - group.mean[i]
            group.mean[i] += a * d
            group.var[i] = (1.0 - a) * (group.var[i] + a * d * d)
        group.learned += 1

    def forget_agent(self, agent_id: str) -> None:
        """Drop everything this detector holds about the agent (a revert to a snapshot
        taken before it had any)."""
        self._cal.pop(agent_id, None)
        if self._pending is not None and self._pending[0].agent_id == agent_id:
            self._pending = None

    def state_of(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's calibration counts (the models are per peer group), or ``None``."""
        pending = self._pending
        if pending is not None and pending[0].agent_id == agent_id:
            self._settle(pending)
        cal = self._cal.get(agent_id)
        return None if cal is None else {"c": self._calibrator.state(cal)}

    def load_state(self, agent_id: str, state: Any) -> None:
        """Restore what :meth:`state_of` returned."""
        if state and state.get("c"):
            self._cal[agent_id] = self._calibrator.load(state["c"])

    # -- group snapshots --------------------------------------------------------------------

    def group_state_of(self, group: str) -> dict[str, Any] | None:
        """The group's model as plain data (lists of numbers), or ``None``."""
        model = self._groups.get(group)
        if model is None:
            return None
        hst = model.hst
        nodes = [node for tree in hst._tree_nodes for node in tree]
        return {
            "features": self._names,
            "counter": hst.counter,
            "first_window": hst._first_window,
            "l_mass": [node.l_mass for node in nodes],
            "r_mass": [node.r_mass for node in nodes],
            # A scored window not yet in the reservoir is settled into the snapshot.
            "scores": list(model.recent)
            + (
                [self._pending[1]] if self._pending and self._pending[0].peer_group == group else []
            ),
            "mean": list(model.mean),
            "var": list(model.var),
            "learned": model.learned,
        }

    def load_group_state(self, group: str, state: dict[str, Any]) -> None:
        """Restore what :meth:`group_state_of` returned (same features and tree settings)."""
        if list(state["features"]) != self._names:
            raise ValueError("snapshot was taken with a different peer feature set")
        cfg = self.config
        model = _Group(cfg)
        hst = model.hst
        # Trees are built on the first observation from the fixed seed: same shape again.
        hst.learn_one(dict.fromkeys(self._names, 0.0))
        nodes = [node for tree in hst._tree_nodes for node in tree]
        if len(nodes) != len(state["l_mass"]):
            raise ValueError("snapshot was taken with different tree settings")
        for node, left, right in zip(nodes, state["l_mass"], state["r_mass"], strict=True):
            node.l_mass, node.r_mass = int(left), int(right)
        hst.counter = int(state["counter"])
        hst._first_window = bool(state["first_window"])
        for score in state["scores"]:
            model.add_score(float(score), cfg.reservoir)
        model.mean = [float(x) for x in state["mean"]]
        model.var = [float(x) for x in state["var"]]
        model.learned = int(state["learned"])
        self._groups[group] = model


@register("peer_group")
def _build(settings: DetectSettings) -> PeerGroupDetector:
    return PeerGroupDetector(PeerConfig(**settings_overrides(settings, "peer_", PeerConfig)))
