"""The corpus of real registry answers (tests/data/real-answers), each read through the client's own
parsers and compared with what a person reads off it; prints the per-registry accuracy table."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from unitsupport_answers import DATA, LABELS, REGISTRIES, parse

from whoiscrawl.records import NetworkRecord
from whoiscrawl.registry.outcome import MalformedAnswer

FIELDS = ("holder", "country", "abuse", "range", "handle")
FLOOR = 0.97  # the share of the corpus each field must be right for


def _name(text: str | None) -> str:
    return re.sub(r"\s+", " ", (text or "").strip().strip(".,").casefold())


def verdicts(label: dict[str, Any], record: NetworkRecord) -> dict[str, bool]:
    """Which of a record's fields say what the label says (holder: any of the names a person uses)."""
    names = {_name(n) for n in [label["holder"], *label.get("holder_also", [])]}
    return {
        "holder": _name(record.registrant) in names,
        "country": record.country == label["country"],
        "abuse": sorted(e.lower() for e in record.abuse_emails) == sorted(e.lower() for e in label["abuse"]),
        "range": [record.start_address, record.end_address] == label["range"],
        "handle": record.handle == label["handle"],
    }


@dataclass
class Tally:
    """Right answers per registry and field, the answers seen, and those that raised."""

    right: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    seen: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    crashes: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)

    def share(self, registry: str | None, name: str) -> float:
        regs = REGISTRIES if registry is None else (registry,)
        seen = sum(self.seen[r] for r in regs)
        return sum(self.right[r, name] for r in regs) / seen if seen else 0.0

    def table(self) -> str:
        """The Markdown table: per registry (and all), the share of answers each field is right for."""
        lines = ["| registry | answers | " + " | ".join(FIELDS) + " |", "|---" * (len(FIELDS) + 2) + "|"]
        for reg in (*REGISTRIES, None):
            count = sum(self.seen.values()) if reg is None else self.seen[reg]
            cells = " | ".join(f"{self.share(reg, f):.2f}" for f in FIELDS)
            lines.append(f"| {reg or '**all**'} | {count} | {cells} |")
        return "\n".join(lines) + f"\n\ncrashes: {len(self.crashes)}"


def _shown(record: NetworkRecord, name: str) -> Any:
    return {"holder": record.registrant, "country": record.country, "abuse": record.abuse_emails,
            "range": [record.start_address, record.end_address], "handle": record.handle}[name]


def run_corpus() -> Tally:
    tally = Tally()
    for label in LABELS:
        tally.seen[label["registry"]] += 1
        try:
            record = parse(label)
        except MalformedAnswer as exc:  # a failure the client records: every field wrong, no crash
            tally.wrong.append(f"{label['file']}: malformed: {exc}")
            continue
        except Exception as exc:  # a crash is what this counts
            tally.crashes.append(f"{label['file']}: {exc!r}")
            continue
        for name, ok in verdicts(label, record).items():
            tally.right[label["registry"], name] += ok
            if not ok:
                tally.wrong.append(f"{label['file']}: {name}: {_shown(record, name)!r}")
    return tally


def test_the_corpus_is_big_and_wide_enough():
    per = defaultdict(int)
    for label in LABELS:
        per[label["registry"]] += 1
        assert (DATA / label["file"].partition("#")[0]).is_file(), label["file"]
    assert len(LABELS) >= 60 and min(per[r] for r in REGISTRIES) >= 8
    assert {label["kind"] for label in LABELS} == {"rdap", "whois"}


def test_every_field_is_right_for_the_corpus(capsys: pytest.CaptureFixture[str]):
    tally = run_corpus()
    with capsys.disabled():
        print("\n" + tally.table())
        for line in tally.wrong:
            print("  wrong:", line)
    assert not tally.crashes
    assert all(tally.share(reg, f) >= FLOOR for reg in (*REGISTRIES, None) for f in FIELDS), tally.table()


# One real answer per class of error the parsers made (issue 25), each read right in every field.
BY_FILE = {label["file"]: label for label in LABELS}

CLASSES = {
    # ipwhois raised IPDefinedError for an address in 240/4: ARIN's answer is a real one
    "reserved space": "real-answers/arin/whois-abuse-spec-246.161.212.245.txt",
    # a `route:` smaller than the inetnum was taken for the network (range, no country)
    "RIPE route": "real-answers/ripencc/whois-abuse-spec-145.255.0.1.txt",
    "RIPE route, an org": "real-answers/ripencc/ripego-178.18.196.1.txt",
    "APNIC route": "real-answers/apnic/lab5-36.90.184.82.txt",
    # APNIC and a national registry's object: handle from the first, range from the other; the
    # abuse comment in the covering section
    "APNIC several objects": "real-answers/apnic/phpwhois-218.165.121.114.txt",
    "JPNIC-managed block": "real-answers/apnic/webtracker-220.212.128.1.txt",
    # KRNIC's helpdesk as the structured abuse contact, the holder's own address in a remark
    "national helpdesk, WHOIS": "real-registry/ipwhois-tests-whois.json#210.107.73.73",
    "national helpdesk, RDAP": "real-registry/ipwhois-tests-rdap.json#210.107.73.73",
    # registro.br names its contacts with nic-hdl-br:, and writes no country
    "nic-hdl-br": "real-answers/lacnic/phpwhois-200.165.206.74.txt",
    "registro.br country": "real-answers/lacnic/whois-abuse-spec-177.37.164.71.txt",
    # CR CR LF line ends left a CR in the handle
    "LACNIC CR CR LF": "real-answers/lacnic/whois-abuse-spec-138.36.27.5.txt",
    "LACNIC owner country, RDAP": "real-answers/lacnic/nicinfo-201.127.0.1.json",
    # ARIN: the network's RAbuseEmail (or network-level abuse entity) before the organisation's
    "ARIN RAbuseEmail": "real-answers/arin/phpwhois-63.95.254.3.txt",
    "ARIN network abuse entity, RDAP": "real-answers/arin/nicinfo-108.45.128.208.json",
    # ARIN answers with two networks: every field from the most specific one
    "ARIN two networks": "real-answers/arin/lab5-3.120.95.169.txt",
    "ARIN two networks, same org": "real-answers/arin/lab5-13.33.66.112.txt",
    "ARIN OrgName only": "real-answers/arin/webtracker-98.122.128.1.txt",
    # an AFRINIC organisation named only by its handle (fn = the handle, the maintainer the
    # registry's own): the entity's own answer names it, as the client asks for it
    "AFRINIC holder by handle, RDAP": "real-answers/afrinic/nicinfo-196.216.2.20.json",
    # an AFRINIC organisation left nameless by RDAP (fn = its handle): its maintainer names it
    "AFRINIC nameless org, RDAP": "real-registry/ipwhois-tests-rdap.json#196.11.240.215",
    # the IANA referral a client printed before the answer has an inetnum of its own
    "IANA referral first": "real-answers/afrinic/homework-196.239.239.239.txt",
    # go-whois obfuscated the abuse comment: the abuse-mailbox, not the mangled comment
    "mangled abuse comment": "real-answers/ripencc/go-whois-80.20.134.1.txt",
    # a RIPE NCC organisation without a vCard and a descr that is where the network is ("Zurich,
    # Switzerland"): the place was taken for the holder; its maintainer (SWITCH-MNT) names it
    "RIPE descr a place, RDAP": "real-answers/ripencc/whoisit-130.59.31.80.json",
}


@pytest.mark.parametrize("case", sorted(CLASSES))
def test_the_class_reads_right(case: str):
    label = BY_FILE[CLASSES[case]]
    assert verdicts(label, parse(label)) == dict.fromkeys(FIELDS, True)
