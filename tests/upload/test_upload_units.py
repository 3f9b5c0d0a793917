"""Pure parts of the upload: positions (gaps open below a newly seen counter, fill when late rows
commit, close when the database horizon has passed after a grace, or after the timeout; JSON
round trip), the fast key encoder and the lost-producer budget of the channel upload."""

from __future__ import annotations

from cdx.connectors.upload.positions import Gap, UploadPosition, resume

C = "REPLICATIONCOUNTERFROMORIGIN"


def spans(p: UploadPosition) -> list[tuple[int, int]]:
    return [(g.start, g.end) for g in p.gaps]


def test_contiguous_counters_advance_the_watermark() -> None:
    p = UploadPosition(C)
    adv = p.advance([3, 1, 2, 2], now_ms=0)
    assert adv.publish == [1, 2, 3] and not adv.opened and p.low == p.high == 3 and p.published == 3
    assert p.advance([3, 2], now_ms=1).publish == []  # already published: never again


def test_out_of_order_commit_fills_the_gap() -> None:
    p = UploadPosition(C)
    p.advance([1, 2], now_ms=0)
    adv = p.advance([4, 5, 7], now_ms=10, horizon_token=100)
    assert adv.publish == [4, 5, 7] and spans(p) == [(3, 3), (6, 6)] and p.low == 2 and p.high == 7
    assert [g.horizon for g in p.gaps] == [100, 100]
    assert p.is_new(3) and p.is_new(6) and not p.is_new(5) and p.is_new(8)
    adv = p.advance([6], now_ms=20, horizon_token=120, horizon_passed=50)
    assert adv.publish == [6] and adv.late == 1 and spans(p) == [(3, 3)] and p.low == 2
    adv = p.advance([3], now_ms=30)
    assert adv.publish == [3] and not p.gaps and p.low == 7


def test_a_wide_gap_splits_as_rows_arrive() -> None:
    p = UploadPosition(C)
    p.advance([10], now_ms=0)
    assert spans(p) == [(1, 9)]
    p.advance([5, 1, 9], now_ms=1)
    assert spans(p) == [(2, 4), (6, 8)] and p.low == 1


def test_gap_closes_when_horizon_passed_and_grace_elapsed() -> None:
    p = UploadPosition(C)
    p.advance([1, 3], now_ms=0, horizon_token=500)
    # the transaction that may hold 2 could still be running (horizon 400 < 500): kept, however old
    assert not p.advance([], now_ms=10_000, horizon_passed=400, grace_ms=1000, timeout_ms=60_000).closed
    # horizon passed but younger than the grace: kept
    p2 = UploadPosition(C)
    p2.advance([1, 3], now_ms=0, horizon_token=500)
    assert not p2.advance([], now_ms=500, horizon_passed=600, grace_ms=1000).closed
    adv = p2.advance([], now_ms=1500, horizon_passed=600, grace_ms=1000)
    assert [(g.start, g.end) for g in adv.closed] == [(2, 2)] and p2.low == 3 and p2.skipped == 1
    # no horizon (None): only the timeout closes it
    assert not p.advance([], now_ms=59_999, horizon_passed=None, timeout_ms=60_000).closed
    assert p.advance([], now_ms=60_000, horizon_passed=None, timeout_ms=60_000).closed and p.low == 3


def test_a_gap_opened_in_this_read_is_not_closed_by_it() -> None:
    p = UploadPosition(C)
    adv = p.advance([5], now_ms=0, horizon_token=1, horizon_passed=10, grace_ms=0, timeout_ms=0)
    assert adv.opened and not adv.closed and spans(p) == [(1, 4)]
    adv = p.advance([2], now_ms=0, horizon_passed=10, grace_ms=0)
    assert adv.publish == [2] and [(g.start, g.end) for g in adv.closed] == [(1, 1), (3, 4)] and p.low == 5


def test_json_round_trip_and_resume() -> None:
    p = UploadPosition(C, high=41, gaps=[Gap(9, 9, 1000, 812), Gap(20, 22, 2000, 900)], published=37, skipped=1)
    back = UploadPosition.decode(p.encode())
    assert (back.counter, back.high, spans(back), back.published, back.skipped, back.low) == (
        C, 41, [(9, 9), (20, 22)], 37, 1, 8)
    assert back.gaps[1].first_seen_ms == 2000 and back.gaps[1].horizon == 900
    assert resume(back, C.lower()).high == 41
    assert resume(back, "OTHERCOUNTER").high == 0  # counter column changed: start over (HQ ignores duplicates)
    assert resume(None, C).high == 0


def test_fast_key_encoding_matches_the_codec() -> None:
    from cdx.codec import SchemaStore, SingleObjectCodec
    from cdx.connectors.upload.records import KEY_SCHEMA, KeyEncoder

    codec, fast = SingleObjectCodec(SchemaStore()), KeyEncoder()
    for table, counter in [("ax.RETAILTRANSACTIONTABLE", 0), ("ax.T", 1), ("ext.X", 63), ("ext.X", 64),
                           ("ax.RETAILTRANSACTIONSALESTRANS", 2**40 + 5), ("t", 2**63 - 1), ("é", 300)]:
        assert fast.encode(table, counter) == codec.encode_key("t", KEY_SCHEMA, {"table": table, "counter": counter})
        assert codec.decode_key("t", fast.encode(table, counter)) == {"table": table, "counter": counter}


def test_gaps_beyond_an_incomplete_reread_are_not_closed() -> None:
    p = UploadPosition(C)
    p.advance([9], now_ms=0, horizon_token=1)            # a big transaction holds 1..8, commits late
    assert spans(p) == [(1, 8)]
    adv = p.advance([1, 2, 3], now_ms=60_000, horizon_passed=5, grace_ms=0, gaps_read_upto=3)
    assert adv.publish == [1, 2, 3] and not adv.closed and spans(p) == [(4, 8)]  # 4..8 not read yet: kept
    adv = p.advance([4, 5, 6, 7, 8], now_ms=60_001, horizon_passed=5, grace_ms=0)
    assert adv.publish == [4, 5, 6, 7, 8] and not p.gaps and p.low == 9


def test_a_lost_producer_is_recovered_within_the_budget_then_the_upload_stops() -> None:
    import pytest

    from cdx.connectors.upload.channel_writer import upload_target
    from cdx.errors import FatalError

    class Lost:  # what the target's recovery uses of its producer
        def reopen(self) -> None:
            pass

    target = upload_target("cdx", "s01", {"bootstrap.servers": "127.0.0.1:1"}, 1_000_000, lambda _p: [])
    target.producer = Lost()  # type: ignore[assignment]
    for n in range(1, 11):
        target.lost = RuntimeError("fenced")
        target.recover()  # no lease (no --ha): any uploader may recover
        assert target.lost is None and target.recoveries == n
    target.recover()  # nothing lost since: nothing to do
    assert target.recoveries == 10
    target.lost = RuntimeError("fenced again")
    with pytest.raises(FatalError, match="channel s01 upload: lost producers: 11 failures within 600 s"):
        target.recover()
