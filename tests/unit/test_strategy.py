"""The sweep finds every block at least one grid cell large, with no leaf looked up twice."""

from __future__ import annotations

import pytest

from whoiscrawl.blocks import KnownBlocks
from whoiscrawl.records import NetworkRecord, Shard
from whoiscrawl.strategy import Answer, is_terminal, sample_addresses, walk_for, worth_listing

# (first, last, type) of a /16 allocation, offsets from 0: a laminar hierarchy like a registry's.
HIERARCHY = [
    (0, 65535, "ALLOCATED PA"),
    (0, 255, "ASSIGNED PA"),  # at the very start
    (300, 307, "ASSIGNED PA"),  # a /29 in a gap: below the /24 grid
    (1024, 2047, "ASSIGNED PA"),  # a /22 after a gap
    (2048, 2303, "ASSIGNED PA"),  # right behind it
    (4096, 8191, "SUB-ALLOCATED PA"),  # a parent inside the parent
    (4096, 4351, "ASSIGNED PA"),
    (6000, 7999, "ASSIGNED PA"),  # not on a CIDR boundary, after a gap inside the sub-allocation
    (9100, 9131, "ASSIGNED PA"),  # packed right before the next one, in a gap between grid points
    (9132, 9500, "ASSIGNED PA"),  # starts mid-cell, holds the grid point 9216
    (40000, 40999, "ASSIGNED PI"),  # odd range across /24 cells
    (65280, 65535, "ASSIGNED PA"),  # at the very end
]


def most_specific(address: int) -> tuple[int, int, str]:
    holding = [h for h in HIERARCHY if h[0] <= address <= h[1]]
    return min(holding, key=lambda h: h[1] - h[0])


def run(shard: Shard, known: KnownBlocks | None = None) -> tuple[list[int], list[tuple[int, int, str]]]:
    known = known or KnownBlocks()
    walk = walk_for(shard)
    probes, answers = [], []
    while (address := walk.next_address(known)) is not None:
        assert address not in probes, "the walk went backwards"
        first, last, kind = most_specific(address)
        probes.append(address)
        answers.append((first, last, kind))
        answer = Answer(first, last, is_terminal(first, last, kind, [], shard.resolution))
        known.add(first, last, answer.terminal)
        walk.observe(address, answer)
    return probes, answers


def findable(resolution: int) -> set[tuple[int, int, str]]:
    """Blocks that are the most specific answer for some address, at least one grid cell large."""
    size = 1 << (32 - resolution)
    answers = {most_specific(a) for a in range(0, 65536)}
    return {b for b in answers if b[1] - b[0] + 1 >= size}


def test_sweep_finds_every_block_at_resolution_without_waste():
    shard = Shard("t", "s", 0, 65535, "sweep", 24)
    probes, answers = run(shard)
    assert findable(24) <= set(answers)
    leaves = [a for a in answers if is_terminal(a[0], a[1], a[2], [], 24)]
    assert len(leaves) == len(set(leaves)), "a leaf was looked up twice"
    # Gap probes cost one lookup per empty /24 cell of a parent, never more.
    assert len(probes) <= 256 + len(HIERARCHY)


def test_sweep_probes_backwards_into_skipped_space_before_a_leaf():
    _, answers = run(Shard("t", "s", 0, 65535, "sweep", 24))
    # 9100-9131 is smaller than the grid and lies between grid points: found from its neighbour.
    assert (9100, 9131, "ASSIGNED PA") in answers
    assert answers.index((9100, 9131, "ASSIGNED PA")) == answers.index((9132, 9500, "ASSIGNED PA")) + 1


def test_sweep_resumes_from_a_checkpointed_cursor_without_repeating():
    shard = Shard("t", "s", 0, 65535, "sweep", 24)
    known = KnownBlocks()
    walk = walk_for(shard)
    first_probes = []
    for _ in range(10):
        address = walk.next_address(known)
        assert address is not None
        first, last, kind = most_specific(address)
        walk.observe(address, Answer(first, last, is_terminal(first, last, kind, [], 24)))
        known.add(first, last, is_terminal(first, last, kind, [], 24))
        first_probes.append(address)
    resumed = walk_for(shard, walk.checkpoint())
    assert resumed.next_address(known) not in first_probes


@pytest.mark.parametrize("stop", range(1, 40))
def test_sweep_resumed_from_its_checkpoint_probes_what_the_whole_walk_would(stop):
    """Stopped after any probe (or with one out, which is redone), a resumed walk still makes the
    backward probes the interrupted one had pending: the same answers as a walk never stopped."""
    shard = Shard("t", "s", 0, 65535, "sweep", 24)
    _, whole = run(shard)
    known = KnownBlocks()
    walk = walk_for(shard)
    answers = []
    for n in range(stop):
        address = walk.next_address(known)
        if address is None:
            break
        if n == stop - 1:
            break  # this probe was in flight at the interrupt: never observed
        first, last, kind = most_specific(address)
        answers.append((first, last, kind))
        terminal = is_terminal(first, last, kind, [], 24)
        known.add(first, last, terminal)
        walk.observe(address, Answer(first, last, terminal))
    resumed = walk_for(shard, walk.checkpoint())
    while (address := resumed.next_address(known)) is not None:
        first, last, kind = most_specific(address)
        answers.append((first, last, kind))
        terminal = is_terminal(first, last, kind, [], 24)
        known.add(first, last, terminal)
        resumed.observe(address, Answer(first, last, terminal))
    assert set(answers) == set(whole)


def test_a_pending_backward_probe_found_meanwhile_goes_on_below_the_block_found():
    """Another walk found the block at a pending backward probe: go on below that block, as the
    walk would after probing it itself."""
    shard = Shard("t", "s", 0, 65535, "sweep", 24)
    walk = walk_for(shard)
    walk._resolved_upto = 8191
    walk.cursor = 9216
    known = KnownBlocks()
    walk.observe(9216, Answer(9132, 9500, True))
    known.add(9132, 9500, True)
    known.add(9100, 9131, True)  # 9131's block, found by someone else
    assert walk.next_address(known) == 9099


@pytest.mark.parametrize(
    ("first", "last", "net_type", "status", "resolution", "terminal"),
    [
        (0, 255, "ALLOCATED PA", [], 24, True),  # one grid cell: a leaf at this resolution
        (0, 1023, "ALLOCATED PA", [], 24, False),
        (0, 1023, "ASSIGNED PA", [], 24, True),
        (0, 1023, "ASSIGNED NON-PORTABLE", [], 24, True),
        (0, 1023, "REASSIGNMENT", [], 24, True),
        (0, 1023, "Reassigned", [], 24, True),  # ARIN's WHOIS spelling
        (0, 1023, "Reallocated", [], 24, False),
        (0, 1023, "Unallocated", [], 24, True),
        (0, 1023, "assigned", [], 24, True),  # LACNIC's WHOIS, lower case
        (0, 1023, "DIRECT ASSIGNMENT", [], 24, True),
        (0, 1023, "DIRECT ALLOCATION", [], 24, False),
        (0, 1023, "REALLOCATION", [], 24, False),
        (0, 1023, "SUB-ALLOCATED PA", [], 24, False),
        (0, 1023, "LEGACY", [], 24, False),
        (0, 1023, None, [], 24, False),  # unknown: probe it, never guess a leaf
        (0, 1023, "UNALLOCATED", ["reserved"], 24, True),
        (0, 1023, "ALLOCATED PA", [], 22, True),
    ],
)
def test_is_terminal(first, last, net_type, status, resolution, terminal):
    assert is_terminal(first, last, net_type, status, resolution) is terminal


def test_sample_walk_skips_known_leaves():
    shard = Shard("t", "s", 0, 65535, "sample", 24, samples=64)
    probes, _answers = run(shard)
    # Samples 6656 and 7680 both fall in the leaf 6000-7999: the second is never looked up.
    assert 7680 not in probes and 6656 in probes
    assert len(probes) == 63
    assert len(set(sample_addresses(shard))) == 64


def test_sample_2016_density():
    shard = Shard("t", "s", 0, 65535, "sample", 24)
    # Every 12th /24, hosts .1/.65/.129/.193: 22 of 256 /24s here.
    assert len(sample_addresses(shard)) == 22 * 4


def test_a_failed_backward_probe_ends_the_chain():
    known = KnownBlocks()
    walk = walk_for(Shard("t", "s", 9216, 65535, "sweep", 24))
    walk._resolved_upto = 8191  # the space 8192-9215 was skipped by the grid, as in a real walk
    assert walk.next_address(known) == 9216
    walk.observe(9216, Answer(9132, 9500, True))
    known.add(9132, 9500, True)
    # 9131 is outside this shard (it starts at 9216): nothing to probe backwards here.
    assert walk.next_address(known) == 9501

    walk = walk_for(Shard("t", "s", 0, 65535, "sweep", 24))
    walk._resolved_upto = 8191
    walk.cursor = 9216
    walk.observe(9216, Answer(9132, 9500, True))
    known.add(9132, 9500, True)
    assert walk.next_address(known) == 9131  # backwards into the skipped space
    walk.skip(9131)  # it failed (or nothing is registered): the chain ends there
    assert walk.next_address(known) == 9501  # not 9130, 9129, ... one failure after another


def observe_answer(walk, known: KnownBlocks, address: int) -> tuple[int, int, str]:
    first, last, kind = most_specific(address)
    terminal = is_terminal(first, last, kind, [], 24)
    known.add(first, last, terminal)
    walk.observe(address, Answer(first, last, terminal))
    return first, last, kind


@pytest.mark.parametrize("behind", [1, 2, 4])
@pytest.mark.parametrize("start", range(0, 40, 3))
def test_a_walk_resumed_behind_another_finds_what_the_whole_walk_would(start, behind):
    """A partition's next owner resumes a shard from the checkpoint its last owner wrote `behind`
    probes ago, while that owner's last probes stored their blocks (a revocation acked before the
    old lane ended, a checkpoint lost with a killed worker). Blocks the old walk stored ahead are
    skipped as known, yet the space before them that no one probed is still probed backwards."""
    shard = Shard("t", "s", 0, 65535, "sweep", 24)
    _, whole = run(shard)
    known = KnownBlocks()
    old = walk_for(shard)
    answers = []
    checkpoint = old.checkpoint()
    for n in range(start + behind):
        address = old.next_address(known)
        if address is None:
            break
        if n == start:
            checkpoint = old.checkpoint()
        answers.append(observe_answer(old, known, address))
    resumed = walk_for(shard, checkpoint)
    while (address := resumed.next_address(known)) is not None:
        answers.append(observe_answer(resumed, known, address))
    assert set(whole) <= set(answers)


@pytest.mark.parametrize(
    ("registry", "net_type", "worth"),
    [
        ("ripencc", "ASSIGNED PA", False),  # RIPE NCC's database refuses children under it
        ("ripencc", "ASSIGNED PI", False),
        ("afrinic", "ASSIGNED PA", False),  # AFRINIC runs RIPE NCC's software
        ("ripencc", "AGGREGATED-BY-LIR", True),
        ("ripencc", "SUB-ALLOCATED PA", True),
        ("apnic", "ASSIGNED NON-PORTABLE", True),  # APNIC's server takes any parent
        ("arin", "REASSIGNMENT", True),  # no rule found that ARIN's database enforces
    ],
)
def test_listing_is_not_asked_of_a_status_its_registry_keeps_childless(registry, net_type, worth):
    # A /22: an assignment this large used to be listed everywhere (7,806 of standard's 23,024
    # requests were RIPE NCC listings of assignments answered 404).
    record = NetworkRecord(registry, "h", "10.0.0.0", "10.0.3.255", ["10.0.0.0/22"], type=net_type)
    assert worth_listing(record, 24) is worth
