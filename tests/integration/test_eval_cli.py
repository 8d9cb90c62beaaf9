"""``agentwatch eval`` as a user runs it, on a slice of the AgentDojo recordings."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
AGENTDOJO = ROOT.parent / "shared/datasets/agentdojo-gpt-4o"
SESSIONS_PER_AGENT = 120  # benign sessions come first in each agent's stream, then attacks


def agentdojo_slice(out: Path) -> tuple[Path, Path]:
    """The first sessions of every agent (events gzipped, as the full set) and their labels."""
    kept: dict[str, list[str]] = {}
    events = out / "events.jsonl.gz"
    with gzip.open(AGENTDOJO / "events.jsonl.gz", "rt") as src, gzip.open(events, "wt") as dst:
        for line in src:
            event = json.loads(line)
            sessions = kept.setdefault(event["agent_id"], [])
            if event["session_id"] not in sessions:
                if len(sessions) == SESSIONS_PER_AGENT:
                    continue
                sessions.append(event["session_id"])
            dst.write(line)
    wanted = {s for sessions in kept.values() for s in sessions}
    labels = out / "labels.jsonl"
    with open(AGENTDOJO / "labels.jsonl") as src, open(labels, "w") as dst:
        dst.writelines(line for line in src if json.loads(line)["session_id"] in wanted)
    return events, labels


@pytest.mark.skipif(not AGENTDOJO.exists(), reason="AgentDojo recordings not present")
def test_eval_on_agentdojo_writes_the_report_and_prints_both_systems(tmp_path: Path) -> None:
    events, labels = agentdojo_slice(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "agentwatch", "eval", str(events), str(labels),
         "--out-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=120, env={**env, "COLUMNS": "120"}, check=False,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert elapsed < 20, f"agentwatch eval took {elapsed:.1f} s"
    out = done.stderr
    assert "detection quality: sessions" in out
    assert "agentwatch" in out
    assert "static rules" in out
    assert "average precision" in out
    assert "gpt4o-slack-assistant" in out
    report = tmp_path / "report"
    for name in ("report.md", "report.json", "pr_curve.png", "score_distributions.png",
                 "time_to_detect.png"):  # fmt: skip
        assert (report / name).stat().st_size > 0, name
    data = json.loads((report / "report.json").read_text())
    labelled = len(labels.read_text().splitlines())
    for system in ("agentwatch", "static rules"):
        overall = data["sessions"]["systems"][system]["overall"]
        assert overall["positives"] + overall["negatives"] == labelled
        assert 0 <= overall["average_precision"] <= 1
    assert data["sessions"]["systems"]["agentwatch"]["overall"]["alerts"] > 0
    assert "| average precision |" in (report / "report.md").read_text()


def test_eval_refuses_bad_labels_with_exit_code_2(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"schema_version":"1","event_id":"e","ts":"2026-01-01T00:00:00Z","agent_id":"a",'
        '"type":"llm_call"}\n'
    )
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"nothing": true}\n')
    done = subprocess.run(
        [sys.executable, "-m", "agentwatch", "eval", str(events), str(labels),
         "--out-dir", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "labels.jsonl:1" in done.stderr
    assert not (tmp_path / "report").exists()
