"""The real delegation statistics the simulator is built from (all five registries, 2018) pass the
parser's checks, and `sim/data.py` and `sources/stats.py` read the same IPv4 delegations from them."""

from __future__ import annotations

from whoiscrawl.rirs import REGISTRIES
from whoiscrawl.sim.data import ensure_data, load_delegations
from whoiscrawl.sources import stats


def test_the_real_files_read_and_agree_with_the_simulators_reading():
    directory = ensure_data()
    ours = []
    for registry in REGISTRIES:
        header, rows = stats.read_path(directory / f"delegated-{registry}-extended-latest")
        assert header.registry == registry and rows
        ours += rows
    theirs = load_delegations()
    assert sorted((d.first, d.count, d.status) for d in ours) == sorted(
        (d.start, d.count, d.status) for d in theirs)
    lacnic = [d for d in ours if d.registry == "lacnic" and d.handed_out]
    assert len(lacnic) == 15_182  # issue 22's figure
