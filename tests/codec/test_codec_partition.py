"""murmur2 partitioning identical to Kafka's Java default partitioner."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cdx.codec.partition import PRODUCER_PARTITIONER, murmur2, murmur2_partition, to_positive

# Kafka's own test vectors (clients UtilsTest.testMurmur2).
KAFKA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "h"), KAFKA_VECTORS)
def test_kafka_vectors(data: bytes, h: int) -> None:
    assert murmur2(data) == h


def test_partition_is_to_positive_mod_n() -> None:
    assert murmur2_partition(b"21", 10) == (-973932308 & 0x7FFFFFFF) % 10
    assert to_positive(-1) == 0x7FFFFFFF
    assert PRODUCER_PARTITIONER == "murmur2_random"
    with pytest.raises(ValueError):
        murmur2_partition(b"x", 0)


@given(key=st.binary(max_size=64), n=st.integers(1, 1000))
def test_partition_in_range_and_hash_is_a_java_int(key: bytes, n: int) -> None:
    h = murmur2(key)
    assert -(2**31) <= h < 2**31
    assert 0 <= murmur2_partition(key, n) < n
    assert murmur2_partition(key, n) == murmur2_partition(bytes(key), n)
