"""The benchmark suite runs end to end at smoke size (the figures are not checked for speed)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_suite_smoke_run_reports_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    table = tmp_path / "figures.md"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--smoke",
            "--json",
            str(out),
            "--markdown",
            str(table),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["smoke"] is True
    assert "CPUs" in report["machine"]
    figures = {(f["bench"], f["name"]): f for f in report["figures"]}
    assert {bench for bench, _ in figures} == {"ingest", "naive", "detect", "e2e"}
    for (bench, name), figure in figures.items():
        if name.endswith("anomalies"):
            continue
        assert math.isfinite(figure["value"]), (bench, name)
        assert figure["value"] > 0, (bench, name)
    # every planted exfiltration was found and delivered
    assert figures[("e2e", "SDK → anomaly stored: p99")]["note"].endswith("3/3 found")
    assert figures[("e2e", "SDK → webhook: p99")]["note"] == "3/3 delivered"
    assert "| e2e | SDK → webhook: p50 |" in table.read_text()
