"""Evaluation of detection against labels: agentwatch and a static rule baseline.

``evaluate(events_path, labels_path, ...) -> EvalReport`` (:mod:`.run`) and
``write_report(report, out_dir)`` (:mod:`.report`) are the library API behind
``agentwatch eval``; the pure parts are :mod:`.metrics` (ranking metrics),
:mod:`.scoring` (units, matching, metrics) and :mod:`.static_rules` (the baseline).
:mod:`.sessions` keeps the older per-session helpers used by ``benchmarks/agentdojo.py``.
"""

from agentwatch.evaluation.report import write_report
from agentwatch.evaluation.run import EvalReport, ProgressHook, evaluate, evaluate_events

__all__ = ["EvalReport", "ProgressHook", "evaluate", "evaluate_events", "write_report"]
