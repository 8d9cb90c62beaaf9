"""Fixtures that start real parts: the embedded broker and a worker on chDB."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.config import (
    DetectSettings,
    KafkaSettings,
    LimitSettings,
    Settings,
    WorkerSettings,
)
from agentwatch.embedded.stack import Stack

WARMUP = 20
MAX_MESSAGE_BYTES = 256 * 1024


def pipeline_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        kafka=KafkaSettings(partitions=4, session_timeout_ms=6000, heartbeat_interval_ms=2000),
        limits=LimitSettings(max_message_bytes=MAX_MESSAGE_BYTES),
        worker=WorkerSettings(batch_within_s=0.05),
        detect=DetectSettings(warmup_events=WARMUP),
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    data_dir = tmp_path_factory.mktemp("agentwatch")
    with Stack(pipeline_settings(data_dir), log_dir=data_dir / "logs") as running:
        running.start(workers=1)
        yield running
