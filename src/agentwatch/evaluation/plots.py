"""PNG plots of an evaluation (matplotlib's object API, no pyplot state, Agg canvas)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from agentwatch.evaluation.metrics import precision_recall_curve
from agentwatch.evaluation.run import AGENTWATCH, ModeResult
from agentwatch.evaluation.scoring import SystemResult

COLORS = {AGENTWATCH: "#1f77b4"}
OTHER_COLOR = "#d62728"
TTD_FLOOR_S = 1.0


def _color(system: str) -> str:
    return COLORS.get(system, OTHER_COLOR)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _unit_names(mode: ModeResult) -> tuple[str, str]:
    if mode.kind == "scenarios":
        return "attack instances", "benign time slices"
    return "positive sessions", "negative sessions"


def pr_curves(mode: ModeResult, path: Path) -> None:
    """Both systems' precision-recall curves on one plot, with their operating points."""
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.add_subplot()
    for system in mode.systems:
        _pr_curve(ax, system)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    pos, neg = _unit_names(mode)
    ax.set_title(f"precision-recall: {pos} vs {neg}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    _save(fig, path)


def _pr_curve(ax: Axes, system: SystemResult) -> None:
    color = _color(system.system)
    m = system.overall
    ap = "n/a" if m.average_precision is None else f"{m.average_precision:.3f}"
    if system.pos_scores:
        scores = [*system.pos_scores, *system.neg_scores]
        labels = [1] * len(system.pos_scores) + [0] * len(system.neg_scores)
        precision, recall, _ = precision_recall_curve(scores, labels)
        ax.step(
            np.r_[0.0, recall],
            np.r_[precision[0], precision],
            where="pre",
            color=color,
            label=f"{system.system} (AP {ap})",
        )
    if m.recall is not None and m.precision is not None:
        ax.plot(
            [m.recall],
            [m.precision],
            marker="o",
            color=color,
            linestyle="none",
            label=f"{system.system} alerts (P {m.precision:.2f}, R {m.recall:.2f})",
        )


def score_distributions(mode: ModeResult, path: Path, flag_score: float) -> None:
    """Per system: the units' scores, attack vs benign, as shares of each class."""
    fig = Figure(figsize=(4.2 * len(mode.systems), 3.8))
    axes = fig.subplots(1, len(mode.systems), squeeze=False)[0]
    pos_name, neg_name = _unit_names(mode)
    bins = [float(b) for b in np.linspace(0, 100, 21)]
    for ax, system in zip(axes, mode.systems, strict=True):
        for scores, name, color in (
            (system.neg_scores, neg_name, "#7f7f7f"),
            (system.pos_scores, pos_name, _color(system.system)),
        ):
            if scores:
                weights = np.full(len(scores), 1 / len(scores))
                ax.hist(
                    np.clip(scores, 0, 100),
                    bins=bins,
                    weights=weights,
                    alpha=0.55,
                    color=color,
                    label=f"{name} ({len(scores):,})",
                )
        if system.system == AGENTWATCH:
            ax.axvline(flag_score, color="black", linestyle="--", linewidth=1, label="flag score")
        ax.set_title(system.system)
        ax.set_xlabel("highest score of the unit")
        ax.set_ylabel("share of units")
        ax.set_yscale("log")
        largest = max(len(system.pos_scores), len(system.neg_scores), 1)
        ax.set_ylim(0.5 / largest, 1.5)  # a share of 1 unit is visible, ticks span decades
        ax.legend(fontsize="small")
    _save(fig, path)


def time_to_detect(mode: ModeResult, path: Path) -> None:
    """Histogram of time to detect (event time) of each system's detected positives."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    values = [np.maximum(np.asarray(s.overall.ttd_s), TTD_FLOOR_S) for s in mode.systems]
    if any(len(v) for v in values):
        high = max(float(v.max()) for v in values if len(v))
        bins = [float(b) for b in np.logspace(0, np.log10(max(high, 10.0)) + 0.01, 25)]
        for system, v in zip(mode.systems, values, strict=True):
            if len(v):
                ax.hist(
                    v,
                    bins=bins,
                    alpha=0.55,
                    color=_color(system.system),
                    label=f"{system.system} ({len(v):,} detected)",
                )
        ax.set_xscale("log")
        ax.legend(fontsize="small")
    else:
        ax.text(0.5, 0.5, "nothing detected", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"time to detect, seconds of event time (≤ {TTD_FLOOR_S:g} s shown at 1 s)")
    ax.set_ylabel("detected units")
    ax.set_title("time to detect")
    _save(fig, path)
