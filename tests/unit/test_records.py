"""Messages: round trips, and malformed ones rejected with a message that names the problem."""

from __future__ import annotations

import pytest

from whoiscrawl.records import NetworkRecord, RecordError, Shard

RECORD = NetworkRecord("ripencc", "193.0.0.0 - 193.0.7.255", "193.0.0.0", "193.0.7.255", ["193.0.0.0/21"])


def test_round_trips():
    shard = Shard("c", "8.0.0.0-8.0.255.255", 0x08000000, 0x0800FFFF)
    assert Shard.from_json(shard.to_json()) == shard
    assert NetworkRecord.from_json(RECORD.to_json()) == RECORD


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"{not json", "shard message is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"schema": "whoiscrawl.shard/v1", "crawl": "c"}', "'shard_id' is a required property"),
        (
            b'{"schema": "whoiscrawl.shard/v1", "crawl": "c", "shard_id": "s", "first": -1, "last": 5,'
            b' "strategy": "sweep", "resolution": 24, "samples": 0}',
            "invalid at first",
        ),
        (
            b'{"schema": "whoiscrawl.shard/v1", "crawl": "c", "shard_id": "s", "first": 1, "last": 5,'
            b' "strategy": "spiral", "resolution": 24, "samples": 0}',
            "invalid at strategy",
        ),
    ],
)
def test_bad_shards_say_what_is_wrong(raw, message):
    with pytest.raises(RecordError, match=message):
        Shard.from_json(raw)


def test_bad_result_names_the_field():
    doc = RECORD.to_dict() | {"registry": "ripe"}
    with pytest.raises(RecordError, match="invalid at registry"):
        NetworkRecord.from_dict(doc)
