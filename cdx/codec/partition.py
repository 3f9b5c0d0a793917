"""Kafka's default key partitioning (Java ``BuiltInPartitioner.partitionForKey``), in Python.

``partition = toPositive(murmur2(key_bytes)) % num_partitions`` with ``toPositive(h) = h & 0x7fffffff``.
Producers written with confluent-kafka must set ``PRODUCER_PARTITIONER`` so librdkafka picks the
same partitions as Java clients (its own default, ``consistent_random``, uses CRC32). Never use
Python's ``hash``: it is salted per process.
"""

from __future__ import annotations

# The confluent-kafka / librdkafka producer setting matching Java's default partitioner for keyed records.
PRODUCER_PARTITIONER = "murmur2_random"
PRODUCER_PARTITIONER_CONFIG: dict[str, str] = {"partitioner": PRODUCER_PARTITIONER}

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's ``Utils.murmur2``: the 32-bit hash as Java's signed int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    n4 = length & ~3
    for i in range(0, n4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = (h * _M) & _MASK
        h ^= k
    rest = length & 3
    if rest == 3:
        h ^= data[n4 + 2] << 16
    if rest >= 2:
        h ^= data[n4 + 1] << 8
    if rest >= 1:
        h ^= data[n4]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def to_positive(h: int) -> int:
    """Java's ``Utils.toPositive``: clear the sign bit."""
    return h & 0x7FFFFFFF


def murmur2_partition(key_bytes: bytes, num_partitions: int) -> int:
    """The partition Kafka's default partitioner (and librdkafka's ``murmur2_random``) gives a non-null key."""
    if num_partitions < 1:
        raise ValueError(f"num_partitions must be >= 1, not {num_partitions}")
    return to_positive(murmur2(key_bytes)) % num_partitions
