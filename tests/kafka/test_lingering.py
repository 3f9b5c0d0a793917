"""cdx.kafka.lingering: a failed block keeps its admin client until LINGER_S passed; a normal one does not."""

import time

import pytest

from cdx.kafka import lingering


def test_a_failed_block_keeps_its_client_until_the_linger_time_passed() -> None:
    lingering.sweep(now=time.monotonic() + 10 * lingering.LINGER_S)  # start empty
    with lingering.admin_client({"bootstrap.servers": "127.0.0.1:1"}):
        pass
    assert lingering.sweep() == 0
    with pytest.raises(TimeoutError), lingering.admin_client({"bootstrap.servers": "127.0.0.1:1"}, linger=5):
        raise TimeoutError("the broker did not answer")
    assert lingering.sweep() == 1
    assert lingering.sweep(now=time.monotonic() + 6) == 0
