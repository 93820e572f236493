"""A fleet worker's part of the fill: a batch of dumped networks to ask again live (`FillBatch`, from
the crawl's fill topic), asked through the crawl's shared limits by whichever worker holds its
partition, each answer checkpointed so a worker killed mid-batch leaves nothing to ask twice."""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from whoiscrawl.crawl import ResultSink
from whoiscrawl.records import FillBatch, NetworkRecord
from whoiscrawl.registry import LookupResult, RegistryClient
from whoiscrawl.sources import dumps, fill, seed
from whoiscrawl.store import LeaseLost
from whoiscrawl.store.redis_blocks import RedisBlockStore
from whoiscrawl.strategy import Answer

log = logging.getLogger(__name__)


@dataclass
class Asked:
    """A batch's progress, its checkpoint: the networks answered (by their place in the batch), the
    contacts whose addresses are known (handle -> addresses), and what was asked (`ask_again`'s
    counts). Written after each answer, the answer's records delivered first."""

    answered: set[int] = field(default_factory=set)
    contacts: dict[str, list[str]] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)  # summed as each answer comes (`fill.added`)

    def checkpoint(self) -> str:
        """As the store keeps it: the networks answered first (a walk's checkpoint starts with a
        number that only grows), then the JSON."""
        doc = {"answered": sorted(self.answered), "contacts": self.contacts,
               "counts": self.counts}
        return f"{len(self.answered)} {json.dumps(doc, separators=(',', ':'))}"

    @classmethod
    def read(cls, checkpoint: str | None) -> Asked:
        if not checkpoint:
            return cls()
        doc = json.loads(checkpoint.split(" ", 1)[1])
        return cls(set(doc["answered"]), doc["contacts"], doc["counts"])


@dataclass
class FleetFill:
    """Asks the fill's batches for one worker (the lanes of its fill partitions)."""

    store: RedisBlockStore
    sink: ResultSink
    client: RegistryClient
    owner: str
    crawl: str
    concurrency: int = 16
    resolution: int = 24

    async def run(self, batch: FillBatch, until: asyncio.Event) -> bool:
        """Ask the batch's networks not answered yet (True: all, the batch done); False: `until` was
        set, or another worker took the batch over (its partition moved while this one stalled)."""
        if await self.store.is_done(batch.batch_id):
            return True
        walk = await self.store.take_shard(batch.batch_id, self.owner)
        asked = Asked.read(await self.store.cursor(batch.batch_id))
        for handle, emails in asked.contacts.items():
            self.client.know_contact(batch.registry, handle, emails)
        try:
            whole = await self._ask(batch, asked, walk, until)
        except LeaseLost as lost:
            log.warning("%s taken over by another worker: this one stops asking it", lost)
            return False
        finally:
            self.store.leave_shard(walk)
        if not whole:
            log.info("batch %s left with %d of its %d networks answered", batch.batch_id, len(asked.answered),
                     len(batch.networks))
        else:
            answered = {**asked.counts, "worker": self.owner}  # who finished it
            await self.store.shard_done(batch.batch_id, 0, json.dumps(answered))
        return whole

    async def _ask(self, batch: FillBatch, asked: Asked, walk: str, until: asyncio.Event) -> bool:
        gate, written = asyncio.Semaphore(self.concurrency), asyncio.Lock()

        async def one(n: int, record: NetworkRecord) -> None:
            async with gate:
                if until.is_set():
                    return
                await self._one(batch, n, record, asked, walk, written)

        records = batch.records()
        async with asyncio.TaskGroup() as group:
            for n, record in enumerate(records):
                if n not in asked.answered:
                    group.create_task(one(n, record))
        return len(asked.answered) == len(records)

    async def _one(self, batch: FillBatch, n: int, dumped: NetworkRecord, asked: Asked, walk: str,
                   written: asyncio.Lock) -> None:
        """One network asked; the records it changed delivered, then its step written: its lookups
        counted, a block it found logged, the batch's checkpoint moved on."""
        changed: list[NetworkRecord] = []
        cost = LookupResult(None, batch.registry, 0)

        async def counted(result: LookupResult) -> None:
            cost.lookups += result.lookups
            cost.rate_limited += result.rate_limited

        async def kept(live: NetworkRecord) -> None:
            live.crawl = self.crawl
            changed.append(live)

        counts = {**await seed.ask_one(dumped, self.client, kept, counted), "lookups": cost.lookups}
        await asyncio.gather(*(self.sink.emit(r) for r in changed))
        # a live answer for another span than the dump's is a block the walk may not know
        other = [r for r in changed if (r.first, r.last) != (dumped.first, dumped.last)]
        answer = Answer.of(other[0], self.resolution) if other else None
        async with written:
            asked.answered.add(n)
            asked.counts = fill.added([asked.counts, counts])  # not every answer's summed again each step
            if (handle := dumps.unresolved_abuse(dumped)) is not None:
                emails, _ = await self.client.contact_emails(batch.registry, handle)  # known: not asked
                if emails:
                    asked.contacts[handle] = emails
            await self.store.record_step(batch.batch_id, asked.checkpoint(), answer, lookups=cost.lookups,
                                         rate_limited=cost.rate_limited, walk=walk)
