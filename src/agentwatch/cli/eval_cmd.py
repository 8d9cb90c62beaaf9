"""``agentwatch eval``: detection quality of agentwatch and a static rule baseline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeElapsedColumn
from rich.table import Table

from agentwatch.cli.common import console, settings_or_exit

if TYPE_CHECKING:
    from agentwatch.evaluation.run import EvalReport


class _RichProgress:
    """The evaluation's :class:`~agentwatch.evaluation.run.ProgressHook` on a rich bar."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def stage(self, name: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
        self.task = self.progress.add_task(name, total=total)

    def advance(self, steps: int) -> None:
        if self.task is not None:
            self.progress.advance(self.task, steps)


def eval_(
    events_file: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="events .jsonl[.gz] (schema v1)"
    ),
    labels_file: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        help="labels .jsonl[.gz]: session labels or scenario ground truth (detected per line)",
    ),
    out_dir: Path = typer.Option(
        Path("report"), "--out-dir", "-o", help="where report.md, report.json and plots go"
    ),
    label_field: str = typer.Option(
        "malicious_action", "--label-field", help="boolean field of session labels = positive"
    ),
    grace: float | None = typer.Option(
        None,
        "--grace",
        min=0,
        help="seconds after a scenario's end an alert still counts (default: 2 windows)",
    ),
    slice_s: float = typer.Option(
        3600.0, "--slice", min=1, help="seconds per negative time slice (scenario labels)"
    ),
    static_rules: Path | None = typer.Option(
        None, "--static-rules", exists=True, dir_okay=False, help="baseline rules YAML"
    ),
) -> None:
    """Replay EVENTS through agentwatch and a static rule baseline; measure both against LABELS."""
    from agentwatch.evaluation.labels import LabelError
    from agentwatch.evaluation.report import write_report
    from agentwatch.evaluation.run import evaluate
    from agentwatch.evaluation.static_rules import StaticRuleError

    settings = settings_or_exit()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        try:
            report = evaluate(
                events_file,
                labels_file,
                settings=settings.detect,
                label_field=label_field,
                grace_s=grace,
                slice_s=slice_s,
                static_rules=static_rules,
                progress=_RichProgress(progress),
            )
        except (LabelError, StaticRuleError, ValueError) as exc:
            console.print(f"[red]cannot evaluate:[/red] {exc}")
            raise typer.Exit(2) from exc
        hook = _RichProgress(progress)
        hook.stage("writing report and plots", None)
        written = write_report(report, out_dir)
    _print(report)
    console.print(
        f"evaluated {report.events:,} events ({report.invalid_lines:,} invalid lines skipped) "
        f"in {sum(report.timings_s.values()):.1f} s; wrote {len(written)} files to {out_dir}/ "
        f"(report.md)"
    )


def _print(report: EvalReport) -> None:
    from agentwatch.evaluation.report import fmt_count, fmt_duration, fmt_ratio, overall_rows

    for mode in report.modes():
        title = "scenario instances" if mode.kind == "scenarios" else "sessions"
        overall = Table(title=f"detection quality: {title}")
        overall.add_column("")
        for system in mode.systems:
            overall.add_column(system.system, justify="right")
        for name, values in overall_rows(mode):
            overall.add_row(name, *values)
        console.print(overall)
        groups = Table(title=f"per {mode.group_label}: recall · average precision · median TTD")
        groups.add_column(mode.group_label)
        groups.add_column("positives", justify="right")
        for system in mode.systems:
            groups.add_column(system.system, justify="right")
        for group in sorted({g for s in mode.systems for g in s.groups}):
            cells = []
            for system in mode.systems:
                m = system.groups.get(group)
                cells.append(
                    "n/a"
                    if m is None
                    else f"{fmt_ratio(m.recall)} · {fmt_ratio(m.average_precision)} · "
                    f"{fmt_duration(m.ttd_median_s)}"
                )
            positives = next(s.groups[group].positives for s in mode.systems if group in s.groups)
            groups.add_row(group, fmt_count(positives), *cells)
        console.print(groups)
