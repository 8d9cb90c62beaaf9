"""The whole pipeline on one machine: broker, topics, worker processes.

Used by ``agentwatch up`` and by the integration tests. Kafka is the embedded Tansu broker
unless ``settings.kafka.bootstrap`` names a cluster; storage is the worker's DSN (chDB in
``data_dir`` by default). Workers run as child processes (``agentwatch worker``), exactly as
they run in production, and report through their HTTP stats page.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from agentwatch.config import Settings
from agentwatch.embedded.broker import EmbeddedBroker, free_port
from agentwatch.streams.topics import ensure_topics


class StackError(RuntimeError):
    pass


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    web_port: int
    log_path: Path

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}/agentwatch/stats/"

    def stats(self, timeout: float = 2.0) -> dict[str, Any] | None:
        """The worker's counters, or ``None`` while it is not answering."""
        try:
            with urllib.request.urlopen(self.stats_url, timeout=timeout) as response:
                data: dict[str, Any] = json.loads(response.read())
                return data
        except (urllib.error.URLError, OSError, ValueError):
            return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class Stack:
    settings: Settings
    log_dir: Path
    broker: EmbeddedBroker | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    bootstrap: str = ""

    def start(self, *, workers: int = 1, wait_ready_s: float = 60.0) -> Stack:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if self.settings.kafka.bootstrap:
            self.bootstrap = self.settings.kafka.bootstrap
        else:
            self.broker = EmbeddedBroker(log_path=self.log_dir / "broker.log").start()
            self.bootstrap = self.broker.bootstrap
        ensure_topics(self.bootstrap, self.settings.kafka)
        for _ in range(workers):
            self.start_worker()
        self.wait_workers_ready(wait_ready_s)
        return self

    def worker_env(self, web_port: int) -> dict[str, str]:
        """The child's environment: this stack's settings as a YAML file, nothing else."""
        data = self.settings.model_dump(mode="json")
        data["data_dir"] = str(self.settings.data_dir.resolve())
        data["kafka"]["bootstrap"] = self.bootstrap
        data["worker"]["web_port"] = web_port
        run_dir = self.settings.data_dir / "run"
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / f"worker-{web_port}.yaml"
        # The file may hold a storage password: readable by this user only.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(data, fh, sort_keys=False)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
        env["AGENTWATCH_CONFIG"] = str(path)
        return env

    def start_worker(self) -> WorkerProcess:
        web_port = free_port()
        index = len(self.workers)
        log_path = self.log_dir / f"worker-{index}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - the child owns it; closed here after fork
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "agentwatch", "worker"],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.worker_env(web_port),
                start_new_session=True,
            )
        finally:
            log.close()
        worker = WorkerProcess(proc, web_port, log_path)
        self.workers.append(worker)
        return worker

    def wait_workers_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(self.workers)
        while pending and time.monotonic() < deadline:
            for worker in list(pending):
                if not worker.alive:
                    raise StackError(
                        f"worker exited with code {worker.proc.returncode}; "
                        f"see {worker.log_path}:\n{tail(worker.log_path)}"
                    )
                if worker.stats(timeout=0.5) is not None:
                    pending.remove(worker)
            time.sleep(0.2)
        if pending:
            raise StackError(f"worker not ready after {timeout_s:.0f}s; see {pending[0].log_path}")

    def stop_worker(
        self, worker: WorkerProcess, *, kill: bool = False, timeout_s: float = 30.0
    ) -> None:
        if worker.alive:
            os.killpg(worker.proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
            try:
                worker.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(worker.proc.pid, signal.SIGKILL)
                worker.proc.wait(timeout=timeout_s)
        if worker in self.workers:
            self.workers.remove(worker)

    def stop(self) -> None:
        for worker in list(self.workers):
            self.stop_worker(worker)
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
