"""Per-session evaluation: session score = max over its events' scores.

Besides the overall figures (:func:`evaluate_sessions`), :func:`breakdown` gives recall and
false-positive rate per group of sessions (per agent, say) at one threshold, and
:func:`detector_counts` which detectors lie behind the sessions flagged there.

>>> lines = [
...     {"session_id": "s1", "score": 80.0, "detectors": ["new_argument"]},
...     {"session_id": "s1", "score": 10.0, "detectors": ["new_transition"]},
...     {"session_id": "s2", "score": 60.0, "detectors": ["rate"]},
...     {"session_id": "s3", "score": 0.0, "detectors": []},
... ]
>>> scores, detectors = session_scores(lines), session_detectors(lines)
>>> scores["s1"], detectors["s1"]
(80.0, ('new_argument',))
>>> labels = {"s1": True, "s2": False, "s3": False}
>>> detector_counts(scores, detectors, labels, threshold=60.0)
({'new_argument': 1}, {'rate': 1})
>>> breakdown(scores, labels, {"s1": "a", "s2": "a", "s3": "b"}, threshold=70.0)
{'a': (1.0, 0.0, 1, 1), 'b': (0.0, 0.0, 0, 1)}
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from agentwatch.evaluation.metrics import average_precision, recall_at_fpr


@dataclass(frozen=True)
class SessionReport:
    sessions: int
    positives: int
    average_precision: float
    recall: float
    fpr: float
    threshold: float
    max_fpr: float

    def lines(self) -> list[str]:
        return [
            f"sessions {self.sessions:,} ({self.positives:,} positive)",
            f"average precision {self.average_precision:.3f}",
            f"recall {self.recall:.3f} at false-positive rate {self.fpr:.3%} "
            f"(≤ {self.max_fpr:.0%}; score ≥ {self.threshold:g})",
        ]


def read_labels(path: Path, field: str = "malicious_action") -> dict[str, bool]:
    labels: dict[str, bool] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row: dict[str, Any] = msgspec.json.decode(line)
                labels[str(row["session_id"])] = bool(row[field])
    return labels


def session_scores(score_lines: Iterable[dict[str, Any]]) -> dict[str, float]:
    scores: dict[str, float] = {}
    for line in score_lines:
        session = line.get("session_id")
        if session:
            scores[session] = max(scores.get(session, 0.0), float(line["score"]))
    return scores


def evaluate_sessions(
    scores: dict[str, float], labels: dict[str, bool], max_fpr: float = 0.02
) -> SessionReport:
    ids = sorted(labels)
    s = [scores.get(i, 0.0) for i in ids]
    y = [int(labels[i]) for i in ids]
    recall, fpr, threshold = recall_at_fpr(s, y, max_fpr)
    return SessionReport(
        sessions=len(ids),
        positives=sum(y),
        average_precision=average_precision(s, y),
        recall=recall,
        fpr=fpr,
        threshold=threshold,
        max_fpr=max_fpr,
    )


def session_detectors(score_lines: Iterable[dict[str, Any]]) -> dict[str, tuple[str, ...]]:
    """The detectors behind each session's score: those of its highest-scoring line."""
    best: dict[str, tuple[float, tuple[str, ...]]] = {}
    for line in score_lines:
        session = line.get("session_id")
        if not session:
            continue
        score = float(line["score"])
        if session not in best or score > best[session][0]:
            best[session] = (score, tuple(line.get("detectors") or ()))
    return {session: found for session, (_, found) in best.items()}


def detector_counts(
    scores: Mapping[str, float],
    detectors: Mapping[str, tuple[str, ...]],
    labels: Mapping[str, bool],
    threshold: float,
) -> tuple[dict[str, int], dict[str, int]]:
    """Sessions flagged at ``threshold`` per detector: (true positives, false positives)."""
    hits: Counter[str] = Counter()
    false: Counter[str] = Counter()
    for session, positive in labels.items():
        if scores.get(session, 0.0) >= threshold:
            (hits if positive else false).update(detectors.get(session, ()))
    return dict(hits.most_common()), dict(false.most_common())


def breakdown(
    scores: Mapping[str, float],
    labels: Mapping[str, bool],
    groups: Mapping[str, str],
    threshold: float,
) -> dict[str, tuple[float, float, int, int]]:
    """Per group of sessions at ``threshold``: (recall, false-positive rate, positives,
    negatives)."""
    counts: dict[str, list[int]] = {}
    for session, positive in labels.items():
        row = counts.setdefault(groups.get(session, ""), [0, 0, 0, 0])
        flagged = scores.get(session, 0.0) >= threshold
        if positive:
            row[0] += 1
            row[1] += flagged
        else:
            row[2] += 1
            row[3] += flagged
    return {
        group: (tp / p if p else 0.0, fp / n if n else 0.0, p, n)
        for group, (p, tp, n, fp) in sorted(counts.items())
    }


def read_groups(path: Path, field: str = "agent_id") -> dict[str, str]:
    """``session_id → field`` (the agent, by default) from a labels file."""
    groups: dict[str, str] = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row: dict[str, Any] = msgspec.json.decode(line)
                groups[str(row["session_id"])] = str(row.get(field, ""))
    return groups
