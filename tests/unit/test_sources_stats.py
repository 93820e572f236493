"""The delegation-statistics parser on fixtures in the five registries' real formats, and on bad files."""

from __future__ import annotations

import hashlib
import tracemalloc
from pathlib import Path

import pytest
from netaddr import IPAddress

from whoiscrawl import rirs
from whoiscrawl.sources import stats

PUBLISHED = Path(__file__).parent.parent / "data" / "published"


def _local(url: str) -> Path:
    return Path(rirs.published_at(url, str(PUBLISHED)))


def _read(registry: str) -> tuple[stats.Header, list[stats.Delegation]]:
    path = _local(rirs.BY_ID[registry].stats_url)
    return stats.read_path(path, Path(f"{path}.md5").read_text())


@pytest.mark.parametrize("registry", rirs.REGISTRIES)
def test_every_registrys_file_reads_and_checks(registry: str):
    """Version line, summaries, md5 (GNU style at ARIN, BSD elsewhere), APNIC's banner, and only
    IPv4 rows out."""
    header, rows = _read(registry)
    assert header.registry == registry
    assert rows and all(d.registry == registry for d in rows)
    assert sum(1 for d in rows if d.handed_out) >= 1


def test_quirks_read_the_same_way():
    _, ripe = _read("ripencc")
    by_start = {str(IPAddress(d.first)): d for d in ripe}
    # 768 addresses: not a power of two, two CIDRs
    assert by_start["193.0.8.0"].cidrs() == ["193.0.8.0/23", "193.0.10.0/24"]
    # RIPE NCC's 7-field rows for reserved and available space: no country, no date, no id
    reserved = by_start["193.0.11.0"]
    assert (reserved.status, reserved.country, reserved.date) == ("reserved", None, None)
    assert reserved.opaque_id == ""
    assert by_start["193.0.0.0"].country == "NL" and by_start["193.0.0.0"].date == "19930901"
    _, afrinic = _read("afrinic")
    free = next(d for d in afrinic if d.status == "reserved")
    assert free.country is None  # ZZ
    header, _ = _read("apnic")
    assert header.start_date == "" and header.version == "2.3"


def _bad(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "delegated-test-extended-latest"
    path.write_text(text)
    return path


HEAD = "2|afrinic|20260924|2|00000000|20260924|00000\nafrinic|*|ipv4|*|2|summary\n"
ROW1 = "afrinic|ZA|ipv4|196.11.0.0|65536|19940101|allocated|F36B9F4B\n"
ROW2 = "afrinic|KE|ipv4|196.12.0.0|2048|20050101|allocated|F3612AB1\n"


def test_a_truncated_file_names_the_file_and_the_count(tmp_path: Path):
    path = _bad(tmp_path, HEAD + ROW1)
    with pytest.raises(stats.StatsError, match=r"extended-latest, line 3: .*says 2 records.*holds 1"):
        stats.read_path(path)


def test_a_summary_contradicting_the_rows_is_refused(tmp_path: Path):
    path = _bad(tmp_path, HEAD.replace("|2|summary", "|3|summary") + ROW1 + ROW2)
    with pytest.raises(stats.StatsError, match="ipv4 summary says 3 records"):
        stats.read_path(path)


def test_a_broken_row_names_its_line(tmp_path: Path):
    path = _bad(tmp_path, HEAD + ROW1 + "afrinic|KE|ipv4|196.12.0.300|2048|20050101|allocated|x\n")
    with pytest.raises(stats.StatsError, match=r"line 4: '196.12.0.300' is not an IPv4 address"):
        stats.read_path(path)
    path = _bad(tmp_path, HEAD + ROW1 + "afrinic|KE|ipv4|196.12.0.0\n")
    with pytest.raises(stats.StatsError, match=r"line 4: 4 fields"):
        stats.read_path(path)


def test_a_missing_version_line_is_refused(tmp_path: Path):
    with pytest.raises(stats.StatsError, match="line 1: the first line is not a version line"):
        stats.read_path(_bad(tmp_path, ROW1))


def test_md5_in_both_styles_and_a_mismatch(tmp_path: Path):
    path = _bad(tmp_path, HEAD + ROW1 + ROW2)
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    stats.read_path(path, f"MD5 ({path.name}) = {digest}\n")
    stats.read_path(path, f"{digest}  {path.name}\n")
    with pytest.raises(stats.StatsError, match=r"md5 .* does not match"):
        stats.read_path(path, f"MD5 ({path.name}) = {'0' * 32}\n")
    with pytest.raises(stats.StatsError, match="no digest"):
        stats.read_path(path, "nothing here\n")


def test_delegations_answer_the_country_of_handed_out_space():
    path = _local(rirs.BY_ID["ripencc"].stats_url)
    found = stats.Delegations.from_path(path.parent)  # a directory: its .md5 files are not read as statistics
    first = int(IPAddress("193.0.9.0"))
    assert found.country(first, first + 255) == "DE"
    free = int(IPAddress("193.0.12.0"))
    assert found.country(free, free + 255) is None


@pytest.mark.parametrize(("address", "holding"), [
    ("12.0.0.0", ("12.0.0.0", "12.0.2.255")),  # 768 addresses: not one CIDR
    ("12.0.1.0", ("12.0.0.0", "12.0.2.255")),  # inside it, not its first address
    ("12.0.3.0", ("12.0.3.0", "12.0.3.255")),  # the next one, adjacent
    ("12.0.4.0", None),  # free space: no delegation
    ("11.255.255.255", None),
])
def test_the_delegation_holding_an_address(address: str, holding: tuple[str, str] | None):
    rows = [stats.Delegation("arin", "US", int(IPAddress("12.0.0.0")), 768, "20200101", "allocated"),
            stats.Delegation("arin", "US", int(IPAddress("12.0.3.0")), 256, "20200101", "assigned"),
            stats.Delegation("arin", None, int(IPAddress("12.0.4.0")), 256, None, "available")]
    want = None if holding is None else tuple(int(IPAddress(a)) for a in holding)
    assert stats.Delegations(rows).at(int(IPAddress(address))) == want


def test_free_space_becomes_one_stats_record_a_run_of_adjacent_rows_of_one_registry():
    from whoiscrawl.sources.published import StatsPlan
    from whoiscrawl.space import Scope

    base = int(IPAddress("102.0.0.0"))
    rows = [  # AFRINIC's 102/8: a /10 and a /13 available side by side, then reserved, then held
        stats.Delegation("afrinic", None, base, 1 << 22, None, "available"),
        stats.Delegation("afrinic", None, base + (1 << 22), 1 << 19, None, "available"),
        stats.Delegation("afrinic", None, base + (1 << 22) + (1 << 19), 256, None, "reserved"),  # joined
        stats.Delegation("afrinic", "ZA", base + (1 << 22) + (1 << 19) + 256, 256, "20200101", "assigned"),
        stats.Delegation("ripencc", None, int(IPAddress("5.180.0.0")), 1 << 18, None, "available"),
    ]
    published = StatsPlan(delegations=rows, serials={"afrinic": "20261206"})
    got = list(published.free_records(Scope.of([(base, base + (1 << 24) - 1)])))
    assert [(r.start_address, r.end_address, r.status, r.source) for r in got] == [
        ("102.0.0.0", "102.72.0.255", ["available", "reserved"], "stats"),  # one, as RDAP says it
    ]  # the RIPE NCC row lies outside the scope, the assigned row is no free space
    assert got[0].cidrs == ["102.0.0.0/10", "102.64.0.0/13", "102.72.0.0/24"]
    assert got[0].type == rirs.FREE_TYPE_WORD
    assert got[0].serial == "20261206" and got[0].registrant == rirs.BY_ID["afrinic"].name


def test_free_space_beside_a_special_purpose_range_is_two_records_not_one_spanning_it():
    # APNIC lists 198.51.99.0, TEST-NET-2 198.51.100.0 and 198.51.101.0 (each a /24) reserved: its
    # placeholders are the two /24s on either side; TEST-NET-2 is IANA's, no registry's free space.
    # Joined across it, the map had one block 198.51.99.0-198.51.101.255 no registry answers.
    from whoiscrawl.sources.published import StatsPlan
    from whoiscrawl.space import Scope

    base = int(IPAddress("198.51.99.0"))
    rows = [stats.Delegation("apnic", None, base + 256 * k, 256, None, "reserved") for k in range(3)]
    got = list(StatsPlan(rows, {"apnic": "1"}).free_records(Scope.of([(base, base + 3 * 256 - 1)])))
    assert [(r.start_address, r.end_address) for r in got] == [
        ("198.51.99.0", "198.51.99.255"), ("198.51.101.0", "198.51.101.255")]


def test_only_delegations_reaching_into_special_purpose_space_are_named_for_the_plan():
    from whoiscrawl.sources.published import StatsPlan

    rows = [stats.Delegation("arin", "US", int(IPAddress("192.175.48.0")), 256, "19960105", "assigned"),
            stats.Delegation("arin", "US", int(IPAddress("192.175.49.0")), 256, "20150716", "assigned"),
            stats.Delegation("apnic", None, int(IPAddress("198.51.100.0")), 256, None, "reserved")]
    # ARIN's AS112 block, delegated; its neighbour is no special-purpose space, TEST-NET-2 no delegation
    assert StatsPlan(rows).special_delegations() == ["192.175.48.0-192.175.48.255"]


def test_rows_and_their_index_take_a_few_hundred_bytes_a_row(tmp_path: Path):
    """A crawl of all IPv4 keeps every row of the five files (`full`'s 196,307): slotted rows with
    their repeated texts shared, and one array index. Read as they were, 487 bytes a row and 65 an
    index (made twice, for the router and the holders)."""
    n = 20_000
    body = [f"arin|US|ipv4|{IPAddress(i << 10)}|1024|2011{i % 12 + 1:02d}01|allocated|{i % 3000:032x}"
            for i in range(1, n + 1)]
    head = [f"2.3|arin|20250101|{n}|19700101|20250101|-0500", f"arin|*|ipv4|*|{n}|summary"]
    text = "\n".join([*head, *body]) + "\n"
    path = tmp_path / "delegated-arin-extended-latest"
    path.write_text(text)
    tracemalloc.start()
    try:
        _, rows = stats.read_path(path)
        read = tracemalloc.get_traced_memory()[0]
        index = stats.Delegations(rows)
        indexed = tracemalloc.get_traced_memory()[0] - read
    finally:
        tracemalloc.stop()
    assert len(rows) == len(index) == n and index.registry(rows[5].first + 1) == "arin"
    assert read / n < 320, f"{read / n:.0f} bytes a row"
    assert indexed / n < 40, f"{indexed / n:.0f} bytes a row in the index"
