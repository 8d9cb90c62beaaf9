"""The evaluation report: Markdown (pure rendering), JSON and plots written to a directory."""

from __future__ import annotations

import json
from pathlib import Path

from agentwatch.evaluation.run import AGENTWATCH, STATIC, EvalReport, ModeResult
from agentwatch.evaluation.scoring import Metrics, SystemResult

PLOTS = ("pr_curve", "score_distributions", "time_to_detect")


def fmt_ratio(value: float | None) -> str:
    """Three decimals, or ``n/a``.

    >>> fmt_ratio(0.83333), fmt_ratio(None)
    ('0.833', 'n/a')
    """
    return "n/a" if value is None else f"{value:.3f}"


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f}"


def fmt_duration(seconds: float | None) -> str:
    """A duration for people.

    >>> [fmt_duration(s) for s in (None, 0.25, 42, 150, 7200)]
    ['n/a', '0.2 s', '42 s', '2.5 min', '2.0 h']
    """
    if seconds is None:
        return "n/a"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200 - 1e-9:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def fmt_count(n: int, of: int | None = None) -> str:
    return f"{n:,}" if of is None else f"{n:,} / {of:,}"


def plot_names(report: EvalReport) -> dict[str, dict[str, str]]:
    """File name of each plot of each mode: the first mode unprefixed, others prefixed."""
    names: dict[str, dict[str, str]] = {}
    for i, mode in enumerate(report.modes()):
        prefix = "" if i == 0 else f"{mode.kind}_"
        names[mode.kind] = {plot: f"{prefix}{plot}.png" for plot in PLOTS}
    return names


def _table(header: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def overall_rows(mode: ModeResult) -> list[tuple[str, list[str]]]:
    """(figure, value per system) for the side-by-side table."""
    unit = "attack instances" if mode.kind == "scenarios" else "positive sessions"
    neg = "negative slices" if mode.kind == "scenarios" else "negative sessions"
    ms = [s.overall for s in mode.systems]
    return [
        (unit, [fmt_count(m.positives) for m in ms]),
        ("detected", [fmt_count(m.detected, m.positives) for m in ms]),
        ("recall", [fmt_ratio(m.recall) for m in ms]),
        ("precision", [fmt_ratio(m.precision) for m in ms]),
        ("average precision", [fmt_ratio(m.average_precision) for m in ms]),
        (f"{neg} flagged", [fmt_count(m.flagged_negatives, m.negatives) for m in ms]),
        ("alerts", [fmt_count(m.alerts) for m in ms]),
        ("false alerts", [fmt_count(m.false_alerts) for m in ms]),
        ("share of alerts that are true", [fmt_ratio(m.alert_precision) for m in ms]),
        ("false alerts / 1,000 agent-hours", [fmt_rate(m.false_alerts_per_1000h) for m in ms]),
        ("time to detect, median", [fmt_duration(m.ttd_median_s) for m in ms]),
        ("time to detect, p90", [fmt_duration(m.ttd_p90_s) for m in ms]),
    ]


def group_rows(mode: ModeResult) -> tuple[list[str], list[list[str]]]:
    names = [s.system for s in mode.systems]
    per_scenario = mode.kind == "scenarios"
    figures = ["recall", "precision", "AP", "TTD median"]
    if not per_scenario:
        figures.insert(3, "false alerts / 1,000 h")
    header = [mode.group_label, "positives"]
    header += [f"{f} ({n})" for f in figures for n in names]
    groups = sorted({g for s in mode.systems for g in s.groups})
    rows: list[list[str]] = []
    for group in groups:
        ms: list[Metrics | None] = [s.groups.get(group) for s in mode.systems]
        first = next(m for m in ms if m is not None)
        row = [f"`{group}`", fmt_count(first.positives)]
        for figure in figures:
            for m in ms:
                row.append("n/a" if m is None else _figure(m, figure))
        rows.append(row)
    return header, rows


def _figure(m: Metrics, figure: str) -> str:
    if figure == "recall":
        return fmt_ratio(m.recall)
    if figure == "precision":
        return fmt_ratio(m.precision)
    if figure == "AP":
        return fmt_ratio(m.average_precision)
    if figure == "TTD median":
        return fmt_duration(m.ttd_median_s)
    return fmt_rate(m.false_alerts_per_1000h)


def _detector_table(system: SystemResult, kind: str) -> list[str]:
    rows = [
        [
            f"`{name}`",
            fmt_count(m.alerts),
            fmt_count(m.false_alerts),
            fmt_ratio(m.precision),
            fmt_ratio(m.recall),
            fmt_ratio(m.average_precision),
            fmt_rate(m.false_alerts_per_1000h),
            fmt_duration(m.ttd_median_s),
        ]
        for name, m in sorted(system.detectors.items(), key=lambda kv: -kv[1].alerts)
    ]
    if not rows:
        return ["No alert and no score from any of them."]
    what = "detector" if system.system == AGENTWATCH else "rule"
    header = [what, "alerts", "false alerts", "precision", "recall", "AP"]
    header += ["false alerts / 1,000 h", "TTD median"]
    return _table(header, rows)


def _hard_negative_table(mode: ModeResult) -> list[str]:
    names = sorted({h for s in mode.systems for h in s.hard_negatives})
    if not names:
        return []
    header = ["scenario", "instances"]
    for s in mode.systems:
        header += [f"instances alerted ({s.system})", f"alerts ({s.system})"]
        header += [f"alerts / 1,000 h ({s.system})"]
    rows: list[list[str]] = []
    for name in names:
        row = [f"`{name}`"]
        for i, s in enumerate(mode.systems):
            h = s.hard_negatives[name]
            if i == 0:
                row.append(fmt_count(h.instances))
            row += [fmt_count(h.alerted, h.instances), fmt_count(h.alerts)]
            row.append(fmt_rate(h.alerts_per_1000h))
        rows.append(row)
    return [
        "### Hard negatives (benign scenarios)",
        "",
        "Alerts inside benign scenario instances (time or events matched as for attacks) are "
        "false alerts; they are counted in the figures above and broken down here.",
        "",
        *_table(header, rows),
        "",
    ]


def render_markdown(report: EvalReport) -> str:
    names = plot_names(report)
    lines = [
        "# agentwatch evaluation",
        "",
        *_table(
            ["", ""],
            [
                [
                    "events",
                    f"`{report.events_path}`: {report.events:,} events "
                    f"({report.invalid_lines:,} invalid lines skipped), {report.agents:,} agents, "
                    f"{report.agent_hours:,.1f} agent-hours",
                ],
                ["labels", f"`{report.labels_path}`" + _label_summary(report)],
                [
                    AGENTWATCH,
                    f"the workers' detection engine (replay); an alert is an anomaly "
                    f"(score ≥ {report.flag_score:g}); {report.anomalies:,} anomalies",
                ],
                [
                    STATIC,
                    f"{len(report.static_rules)} hand-written threshold rules; "
                    f"{report.static_alerts:,} alerts",
                ],
                *(
                    [
                        [
                            "matching",
                            f"grace {fmt_duration(report.grace_s)} after a scenario's end; "
                            f"negatives are {fmt_duration(report.slice_s)} per-agent slices",
                        ]
                    ]
                    if report.scenarios is not None
                    else []
                ),
            ],
            "ll",
        ),
        "",
        "Precision and recall are on units (a unit is flagged when an alert matches it), so "
        "the operating point lies on the precision-recall curve of the same units; average "
        "precision ranks units by their highest score. Definitions: `docs/evaluation.md`.",
        "",
    ]
    for mode in report.modes():
        plots = names[mode.kind]
        title = "Scenario instances" if mode.kind == "scenarios" else "Sessions"
        header, rows = group_rows(mode)
        lines += [
            f"## {title}",
            "",
            *_mode_note(mode, report),
            "",
            *_table(
                ["", *[s.system for s in mode.systems]],
                [[name, *values] for name, values in overall_rows(mode)],
            ),
            "",
            f"![precision-recall curves]({plots['pr_curve']})",
            "",
            f"### Per {mode.group_label}",
            "",
            *_table(header, rows),
            "",
            *_hard_negative_table(mode),
        ]
        for system in mode.systems:
            what = "detector" if system.system == AGENTWATCH else "rule"
            lines += [f"### Per {what}: {system.system}", "", *_detector_table(system, what), ""]
        lines += [
            "### Score distributions and time to detect",
            "",
            f"![score distributions]({plots['score_distributions']})",
            "",
            f"![time to detect]({plots['time_to_detect']})",
            "",
        ]
    lines += [
        "## Static rules",
        "",
        *_table(["rule", "fires when"], [[f"`{n}`", d] for n, d in report.static_rules], "ll"),
        "",
    ]
    return "\n".join(lines)


def _label_summary(report: EvalReport) -> str:
    parts = []
    if report.scenarios is not None:
        m = report.scenarios.systems[0].overall
        benign = sum(h.instances for h in report.scenarios.systems[0].hard_negatives.values())
        parts.append(f"{m.positives:,} attack and {benign:,} benign scenario instances")
    if report.sessions is not None:
        m = report.sessions.systems[0].overall
        parts.append(
            f"{m.positives + m.negatives:,} labelled sessions, {m.positives:,} positive "
            f"(`{report.label_field}`)"
        )
    return ": " + "; ".join(parts)


def _mode_note(mode: ModeResult, report: EvalReport) -> list[str]:
    if mode.kind == "scenarios":
        return [
            "Positives: attack scenario instances, each detected when an alert of its agent "
            f"falls in [start, end + {fmt_duration(report.grace_s)}] or names one of its "
            "events; scored by the highest matched score. Negatives: per-agent "
            f"{fmt_duration(report.slice_s)} slices outside attacks, scored by their highest "
            "score. Time to detect: first matched alert − scenario start (event time)."
        ]
    return [
        "Units: labelled sessions, each scored by the highest score of its events and of the "
        "windows and sessions they fall in; flagged when an alert covers it. Time to detect: "
        "first covering alert − the session's first event (event time)."
    ]


def write_report(report: EvalReport, out_dir: Path) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the plots to ``out_dir``; their paths."""
    from agentwatch.evaluation import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    names = plot_names(report)
    for mode in report.modes():
        files = {plot: out_dir / name for plot, name in names[mode.kind].items()}
        plots.pr_curves(mode, files["pr_curve"])
        plots.score_distributions(mode, files["score_distributions"], report.flag_score)
        plots.time_to_detect(mode, files["time_to_detect"])
        written += files.values()
    md = out_dir / "report.md"
    md.write_text(render_markdown(report), encoding="utf-8")
    js = out_dir / "report.json"
    js.write_text(json.dumps(report.to_dict(), indent=1) + "\n", encoding="utf-8")
    return [md, js, *written]
