"""Messages: round trips, and malformed ones rejected with a message that names the problem."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from whoiscrawl.records import DEAD_LETTER_BYTES, DeadLetter, NetworkRecord, RecordError, Shard

RECORD = NetworkRecord("ripencc", "193.0.0.0 - 193.0.7.255", "193.0.0.0", "193.0.7.255", ["193.0.0.0/21"])


@settings(max_examples=300, deadline=None)
@given(st.text(st.characters(codec=None, categories=None)), st.lists(st.text(max_size=8), max_size=3),
       st.one_of(st.none(), st.text(max_size=3)))
def test_a_records_json_is_the_standard_librarys_whatever_its_text(name: str, emails: list[str],
                                                                     country: str | None):
    """A map written fast (orjson where its bytes are the same) reads and diffs as it always did:
    printable ASCII, control characters, DEL, accents, emoji, surrogates."""
    record = NetworkRecord("ripencc", "193.0.0.0 - 193.0.7.255", "193.0.0.0", "193.0.7.255", ["193.0.0.0/21"],
                           name=name, country=country, abuse_emails=emails, registrant=name[::-1])
    assert record.to_json() == json.dumps(record.to_dict(), separators=(",", ":")).encode()
    lone = NetworkRecord("ripencc", "h", "193.0.0.0", "193.0.7.255", ["193.0.0.0/21"], name="\ud800")
    assert lone.to_json() == json.dumps(lone.to_dict(), separators=(",", ":")).encode()


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


def test_provenance_every_record_says_where_and_when():
    """A live answer is observed when it arrived; a dump's record keeps the file's serial and date;
    a record written before these fields reads back with them filled, so old result sets still load."""
    assert RECORD.source == "rdap" and RECORD.observed_at == RECORD.fetched_at
    dumped = NetworkRecord("lacnic", "200.3.0.0/22", "200.3.0.0", "200.3.3.255", ["200.3.0.0/22"],
                           source="dump", serial="20261206", observed_at="2026-12-06T00:00:00+00:00")
    assert NetworkRecord.from_json(dumped.to_json()) == dumped
    old = RECORD.to_dict()
    del old["observed_at"], old["serial"]
    assert NetworkRecord.from_dict(old).observed_at == RECORD.fetched_at
    with pytest.raises(RecordError, match="invalid at source"):
        NetworkRecord.from_dict({**RECORD.to_dict(), "source": "guess"})



def test_a_field_filled_live_says_so_and_the_rest_stays_the_files():
    """A dumped network whose abuse addresses its contact's entity gave: still the dump's record
    (source, serial, date), `filled` naming the field, where, when and whom it asked; a record
    without one writes no `filled` at all."""
    dumped = NetworkRecord("lacnic", "200.3.0.0/22", "200.3.0.0", "200.3.3.255", ["200.3.0.0/22"],
                           source="dump", serial="20261206", observed_at="2026-12-06T00:00:00+00:00")
    assert "filled" not in dumped.to_dict() and b'"filled"' not in dumped.to_json()
    filled = dumped.with_filled("abuse_emails", ["abuse@example.net"], "rdap", "ABC12")
    assert (filled.source, filled.serial, filled.observed_at) == ("dump", dumped.serial, dumped.observed_at)
    assert filled.abuse_emails == ["abuse@example.net"] and dumped.abuse_emails == []
    assert filled.filled == {"abuse_emails": {"source": "rdap", "observed_at": filled.fetched_at,
                                              "entity": "ABC12"}}
    line = filled.to_json()
    assert NetworkRecord.from_json(line) == filled == NetworkRecord.from_own_json(line)
    with pytest.raises(RecordError, match="filled"):
        NetworkRecord.from_dict({**filled.to_dict(), "filled": {"abuse_emails": {"source": "guess"}}})

@pytest.mark.parametrize("raw", [b'{"handle": "NET-1",', "h\u00e9llo\u202e\x00".encode(),
                                 b"\xff\xfe\x00" * 40_000])
def test_a_dead_letter_keeps_the_bytes_as_received_up_to_its_bound(raw: bytes):
    """Text stays readable, other bytes go as base64; past DEAD_LETTER_BYTES only the first are kept,
    said so, with the size received; what comes back from the JSON is the same bytes."""
    letter = DeadLetter.of("answer", "not JSON", "https://rdap.lacnic.net/rdap/ip/186.0.3.1", raw, "lacnic")
    back = DeadLetter.from_json(letter.to_json())
    assert back == letter and back.raw() == raw[:DEAD_LETTER_BYTES]
    assert (back.size, back.truncated) == (len(raw), len(raw) > DEAD_LETTER_BYTES)
    assert back.encoding == ("utf-8" if raw.isascii() or raw.startswith(b"h") else "base64")
    with pytest.raises(RecordError, match="invalid at kind"):
        DeadLetter.from_json(letter.to_json().replace(b'"answer"', b'"guess"'))


def test_a_record_of_our_own_file_reads_back_as_written():
    """`from_own_json` (a map's records, no schema check) gives the record written, raw or not,
    observed_at unset or not, and refuses another schema."""
    for record in (RECORD, NetworkRecord("lacnic", "h", "200.0.0.0", "200.0.0.255", ["200.0.0.0/24"],
                                          raw={"abuse-c": ["X"]}, observed_at="2026-12-07", serial="1")):
        back = NetworkRecord.from_own_json(record.to_json())
        assert back == record and back.to_json() == record.to_json()
    unset = RECORD.to_dict() | {"observed_at": None}
    assert NetworkRecord.from_own_json(json.dumps(unset)).observed_at == RECORD.fetched_at
    with pytest.raises(RecordError, match="schema"):
        NetworkRecord.from_own_json(json.dumps(RECORD.to_dict() | {"schema": "other/v9"}))


def test_a_record_read_back_fast_has_no_filled_field_and_a_filled_one_keeps_its_label():
    # a line omits `raw` and `filled` when None, and `from_own_json` skips __init__ on a usual line
    plain = NetworkRecord(registry="lacnic", handle="200.0.0.0/24", start_address="200.0.0.0",
                          end_address="200.0.0.255", cidrs=["200.0.0.0/24"], source="dump",
                          observed_at="2026-01-01T00:00:00Z")
    filled = plain.with_filled("abuse_emails", ["abuse@example.net"], "rdap", "AB1-LACNIC")
    for record in (plain, filled):
        again = NetworkRecord.from_own_json(record.to_json())
        assert again == record and again.raw is None
    assert NetworkRecord.from_own_json(plain.to_json()).filled is None
    assert NetworkRecord.from_own_json(filled.to_json()).filled == filled.filled
