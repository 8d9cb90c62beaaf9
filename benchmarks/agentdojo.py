"""Detection quality on the AgentDojo recordings (per session, score = max over events).

Runs ``agentwatch replay --all`` on the events file, then scores sessions against
``labels.jsonl`` (``malicious_action``): average precision and recall at ≤ 2 % false-positive
sessions, the same per agent, and which detectors lie behind the sessions flagged at that
operating point (true and false positives). Usage::

    .venv/bin/python -m benchmarks.agentdojo [--data ../shared/datasets/agentdojo-gpt-4o]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentwatch.evaluation.sessions import (
    breakdown,
    detector_counts,
    evaluate_sessions,
    read_groups,
    read_labels,
    session_detectors,
    session_scores,
)
from agentwatch.replay import iter_score_lines

DEFAULT = Path(__file__).resolve().parents[1].parent / "shared/datasets/agentdojo-gpt-4o"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--max-fpr", type=float, default=0.02)
    parser.add_argument("--scores", type=Path, help="keep the scores file here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        scores_path = args.scores or Path(tmp) / "scores.jsonl"
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "agentwatch",
                "replay",
                str(args.data / "events.jsonl.gz"),
                "--out",
                str(scores_path),
                "--all",
            ],
            check=True,
        )
        elapsed = time.perf_counter() - started
        lines = list(iter_score_lines(scores_path))
    labels = read_labels(args.data / "labels.jsonl")
    scores = session_scores(lines)
    report = evaluate_sessions(scores, labels, args.max_fpr)
    print(f"replay --all of {len(lines):,} events: {elapsed:.1f} s (incl. start-up)")
    for line in report.lines():
        print(line)
    agents = read_groups(args.data / "labels.jsonl")
    for agent, (recall, fpr, positives, negatives) in breakdown(
        scores, labels, agents, report.threshold
    ).items():
        print(
            f"  {agent}: recall {recall:.3f} of {positives:,}, "
            f"false-positive rate {fpr:.2%} of {negatives:,}"
        )
    hits, false = detector_counts(scores, session_detectors(lines), labels, report.threshold)
    print(f"detectors behind flagged sessions (score ≥ {report.threshold:g}):")
    print(f"  true positives:  {hits}")
    print(f"  false positives: {false}")


if __name__ == "__main__":
    main()
