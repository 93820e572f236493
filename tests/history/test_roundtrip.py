"""A change set applied to the map it was taken from gives the new map back, for any two maps."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from whoiscrawl.history.store import apply
from whoiscrawl.ipv4 import ip_str
from whoiscrawl.results.diff import classify, facts
from whoiscrawl.results.source import block_key, parse_line

REGISTRIES = ("arin", "ripencc", "apnic")
# blocks inside 10.0.0.0/16: a /16, /20s and /24s, so ranges nest and share first addresses
BASE = 0x0A000000
SPANS = [(BASE, BASE + 0xFFFF)] + [(BASE + (i << 12), BASE + (i << 12) + 0xFFF) for i in range(4)] \
    + [(BASE + (i << 8), BASE + (i << 8) + 0xFF) for i in range(0, 40, 3)]

# a block is a range at a registry: one range may be held at two registries (as real maps have)
blocks = st.dictionaries(st.tuples(st.sampled_from(SPANS), st.sampled_from(REGISTRIES)), st.tuples(
    st.sampled_from(["A", "B", "C"]), st.sampled_from(["NL", "US", None])))


def _map(chosen: dict[tuple[tuple[int, int], str], tuple[str, str | None]]) -> list[dict]:
    docs = []
    for ((first, last), registry), (holder, country) in chosen.items():
        doc = {"registry": registry, "handle": f"H-{first}-{last}", "start_address": ip_str(first),
               "end_address": ip_str(last), "cidrs": [], "registrant": holder, "country": country}
        docs.append(parse_line(json.dumps(doc)))
    return sorted(docs, key=lambda d: (block_key(d["_first"], d["_last"]), d["registry"]))


def _stored(change) -> dict:
    doc = change.to_dict()
    if change.kind != "removed":
        doc["record"] = {k: v for k, v in change.record.items() if not k.startswith("_")}
    return json.loads(json.dumps(doc))  # as it would be read back from the file


def _said(docs) -> list[tuple]:
    return sorted((d["start_address"], d["end_address"], *map(str, facts(d).values())) for d in docs)



@settings(max_examples=200, deadline=None)
@given(blocks, blocks)
def test_apply_of_classify_gives_the_new_map(old: dict, new: dict):
    before, after = _map(old), _map(new)
    changes = [_stored(c) for c in classify(before, after)]
    assert _said(apply(iter(before), iter(changes))) == _said(after)
