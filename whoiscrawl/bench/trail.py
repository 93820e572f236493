"""What the chaos bench keeps of a block it lost, or one the store holds that the results lack: its trail.

A crawl under chaos must deliver every block a calm one does, and the store (Redis's block log)
must hold no block the results topic lacks: a block is logged only once the broker acknowledged
its record (`Crawler.keep`, then `record_step`). When either fails, the crawl's topics and keys are
about to be deleted and the services stopped; what tells why is kept first (`evidence`): for each
such block, the requests the simulator answered inside it, its entries in the block log (a Redis
stream id is the millisecond it was written), its messages on the results topic (partition, offset,
the producer's timestamp), and the chaos dealt around it, beside the workers' log lines naming it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from whoiscrawl import queue
from whoiscrawl.blocks import decode_block
from whoiscrawl.ipv4 import ip_int, ip_str
from whoiscrawl.keys import Keys
from whoiscrawl.records import NetworkRecord

TRAILED = 10  # blocks whose whole trail is kept, of each kind (lost, unbacked)
CHAOS_BEFORE_S, CHAOS_AFTER_S = 30.0, 60.0  # the chaos kept around a block's requests
LINES_KEPT = 200  # requests and log lines kept per block

Block = tuple[int, int]  # first, last address


@dataclass
class Sources:
    """What a finished crawl left, read once for every block's trail (before its keys and topics go)."""

    log: list[tuple[str, int, int, bool]]  # the block log: (stream id, first, last, leaf)
    topic: list[dict[str, Any]]  # every results message: partition, offset, timestamp, key, block
    requests: Path  # the simulator's request log
    logs: list[Path]  # the workers' logs
    timeline: list[tuple[float, str, str]] = field(default_factory=list)  # the chaos dealt

    @classmethod
    def read(cls, kafka: str, redis_url: str, crawl: str, workdir: Path,
             timeline: list[tuple[float, str, str]]) -> Sources:
        return cls(block_log(redis_url, crawl), list(topic_messages(kafka, crawl)),
                   workdir / "requests.jsonl", sorted(workdir.glob("worker-*.log")), timeline)


def block_log(redis_url: str, crawl: str) -> list[tuple[str, int, int, bool]]:
    """The crawl's block log in Redis, oldest first: (stream id, first, last, leaf)."""
    client = redis.Redis.from_url(redis_url)
    entries: list[tuple[str, int, int, bool]] = []
    low = "-"
    try:
        while batch := list[Any](client.xrange(Keys(crawl).blocks, min=low, count=10_000) or []):
            for entry_id, data in batch:
                first, last, leaf = decode_block(data[b"b"])
                entries.append((entry_id.decode(), first, last, bool(leaf)))
            low = f"({entries[-1][0]}"
    finally:
        client.close()
    return entries


def topic_messages(kafka: str, crawl: str) -> Iterator[dict[str, Any]]:
    """Every message on the crawl's results topic, where it is and which block it holds."""
    for msg in queue.result_messages(kafka, "whoiscrawl.", crawl):
        value = msg.value()
        record = NetworkRecord.from_json(value) if value else None
        yield {"partition": msg.partition(), "offset": msg.offset(), "timestamp": msg.timestamp()[1] / 1000,
               "key": (msg.key() or b"").decode(errors="replace"),
               "block": (record.first, record.last) if record else None,
               "handle": record.handle if record else None}


def unbacked(sources: Sources) -> list[Block]:
    """Blocks in the store's log that no message on the results topic holds (none, if sound)."""
    delivered = {m["block"] for m in sources.topic if m["block"] is not None}
    return sorted({(first, last) for _, first, last, _ in sources.log} - delivered)


def evidence(blocks: Mapping[str, Iterable[Block]], sources: Sources, out: Path) -> list[dict[str, Any]]:
    """Each block's trail (`blocks`: kind -> blocks, the first `TRAILED` of each), written whole to
    `out` (JSON); returns a short summary of each, for the bench's figures."""
    trails = [{"kind": kind, **trail(block, sources)}
              for kind, some in blocks.items() for block in sorted(some)[:TRAILED]]
    if trails:
        out.write_text(json.dumps(trails, indent=1))
    return [summary(t) for t in trails]


def _span(block: Block) -> str:
    return f"{ip_str(block[0])} - {ip_str(block[1])}"


def _holds(outer: Block, inner: Block) -> bool:
    return outer[0] <= inner[0] and inner[1] <= outer[1]


def trail(block: Block, sources: Sources) -> dict[str, Any]:
    """One block's trail: its requests, block-log entries and topic messages (its own and those of
    any block holding it: a leaf holding it makes it known), the chaos around it, its log lines."""
    asked = list(requests_inside(block, sources.requests))
    times = [float(r["t"]) for r in asked]
    start, end = (min(times) - CHAOS_BEFORE_S, max(times) + CHAOS_AFTER_S) if times else (0.0, 0.0)
    addresses = {str(r["address"]) for r in asked}
    return {
        "block": _span(block),
        # each with the workers running as it was answered (the registries see one source address)
        "requests": [{**r, "running": running_at(sources, float(r["t"]))} for r in asked[:LINES_KEPT]],
        "block_log": [{"id": i, "t": int(i.split("-")[0]) / 1000, "block": _span((f, la)), "leaf": leaf}
                      for i, f, la, leaf in sources.log if _holds((f, la), block)],
        "topic": [{**m, "block": _span(m["block"])} for m in sources.topic
                  if m["block"] is not None and _holds(m["block"], block)],
        "chaos": [{"t": t, "event": e, "detail": d} for t, e, d in sources.timeline if start <= t <= end],
        "worker_logs": list(log_lines(sources.logs, addresses | {ip_str(block[0])}))[:LINES_KEPT],
    }


def running_at(sources: Sources, t: float) -> list[str]:
    """The workers running at `t` by the chaos dealt: started (those with a log and no `started`
    event were there from the first), neither killed, drained nor crashed yet, and not stopped."""
    started = {d for _, e, d in sources.timeline if e == "started"}
    running = {p.stem for p in sources.logs} - started
    for when, event, detail in sources.timeline:
        if when > t:
            break
        worker = detail.split()[0].rstrip(":") if detail else ""
        if event in ("started", "sigcont"):
            running.add(worker)
        elif event in ("sigkill", "sigterm", "sigstop", "crashed"):
            running.discard(worker)
    return sorted(running, key=lambda w: int(w.rsplit("-", 1)[-1]))


def requests_inside(block: Block, log: Path) -> Iterator[dict[str, Any]]:
    """The simulator's requests for an address (or a prefix starting at one) inside the block."""
    with log.open() as fh:
        for line in fh:
            entry = json.loads(line)
            try:
                address = ip_int(str(entry["address"]).split("/")[0])
            except ValueError:
                continue  # a file, an entity, a listing's handle
            if block[0] <= address <= block[1]:
                yield entry


def log_lines(logs: list[Path], words: set[str]) -> Iterator[str]:
    """The workers' log lines naming any of `words` (addresses), each with its worker's log name."""
    for path in logs:
        with path.open(errors="replace") as fh:
            for line in fh:
                if any(w in line for w in words):
                    yield f"{path.stem}: {line.rstrip()}"


def summary(trail: dict[str, Any]) -> dict[str, Any]:
    """A trail in a few figures: when it was first answered, how often, when the store logged it
    (first entry), and what of it the topic holds."""
    answered = [r for r in trail["requests"] if r.get("outcome") == "ok"]
    own = [e for e in trail["block_log"] if e["block"] == trail["block"]]
    delivered = [(m["partition"], m["offset"]) for m in trail["topic"] if m["block"] == trail["block"]]
    return {"kind": trail["kind"], "block": trail["block"],
            "first_answered": answered[0]["t"] if answered else None, "answered": len(answered),
            "logged": own[0]["t"] if own else None, "holders_logged": len(trail["block_log"]) - len(own),
            "on_topic": delivered,
            "holders_on_topic": sum(m["block"] != trail["block"] for m in trail["topic"])}
