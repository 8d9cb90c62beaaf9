"""Which partition of a topic a key lands in: Kafka's default (Java client) partitioner.

``murmur2(key bytes) & 0x7fffffff % partitions`` — what kafka-python, aiokafka and the
Java client do for a message with a key. The SDK keys every message by ``agent_id``, so an
agent's events, and the control messages about it (``agentwatch.feedback.v1``, also keyed
by ``agent_id``, with as many partitions), share one partition number, and faust assigns
co-partitioned topics to the same worker. Producers with another partitioner (librdkafka's
default ``consistent_random`` hashes with CRC32) break that; the worker records the
partition each agent's messages really came from and uses this function only for agents
it has not seen a message of.

>>> partition_for("billing-assistant", 8) == partition_for("billing-assistant", 8)
True
>>> 0 <= partition_for("billing-assistant", 8) < 8
True
"""

from __future__ import annotations

from kafka.partitioner.default import murmur2

__all__ = ["partition_for", "partition_of"]


def partition_of(key: bytes, partitions: int) -> int:
    """The partition (of ``partitions``) Kafka's default partitioner picks for ``key``."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    digest: int = murmur2(key)
    return (digest & 0x7FFFFFFF) % partitions


def partition_for(agent_id: str, partitions: int) -> int:
    """The partition (of ``partitions``) Kafka's default partitioner picks for ``agent_id``."""
    return partition_of(agent_id.encode("utf-8"), partitions)
