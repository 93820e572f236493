"""What a lookup asks for: an address, or the first prefix of the delegation holding it."""

from __future__ import annotations

import pytest
from netaddr import IPAddress

from whoiscrawl.registry.client import lookup_key


def ip(text: str) -> int:
    return int(IPAddress(text))


@pytest.mark.parametrize(("address", "delegation", "smallest", "key"), [
    ("192.12.20.0", None, 256, "192.12.20.0"),  # no delegation starts there (or no statistics)
    ("192.12.20.0", ("192.12.20.0", "192.12.21.255"), 256, "192.12.20.0/23"),  # one CIDR: all of it
    ("12.0.0.0", ("12.0.0.0", "12.0.2.255"), 256, "12.0.0.0/23"),  # 768 addresses: its first prefix
    ("12.0.2.0", ("12.0.2.0", "12.0.4.255"), 256, "12.0.2.0/23"),
    ("192.12.20.0", ("192.12.20.0", "192.12.20.127"), 256, "192.12.20.0"),  # under a grid cell: the address
    ("192.12.20.0", ("192.12.20.0", "192.12.20.127"), 1, "192.12.20.0/25"),
    ("192.12.21.7", ("192.12.20.0", "192.12.21.255"), 256, "192.12.20.0/23"),  # inside it: all of it
    ("12.0.1.7", ("12.0.0.0", "12.0.2.255"), 256, "12.0.0.0/23"),  # inside its first prefix
    ("12.0.2.5", ("12.0.0.0", "12.0.2.255"), 256, "12.0.2.5"),  # past it: that answer would not hold it
    ("12.0.3.0", ("12.0.0.0", "12.0.2.255"), 256, "12.0.3.0"),  # outside the delegation
    ("192.12.20.0", ("192.12.20.0", "192.12.20.0"), 1, "192.12.20.0"),  # a single address is the address
])
def test_a_lookup_asks_the_first_prefix_of_the_delegation_holding_it(
    address: str, delegation: tuple[str, str] | None, smallest: int, key: str
):
    span = None if delegation is None else (ip(delegation[0]), ip(delegation[1]))
    assert lookup_key(ip(address), span, smallest) == key
