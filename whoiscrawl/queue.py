"""Kafka: the work, results and change-feed topics of a crawl, publishing, lag, and a broker-acked sink."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec

from whoiscrawl.records import DeadLetter, FillBatch, NetworkRecord, RecordError, Shard
from whoiscrawl.settings import KAFKA_PROPERTY_PREFIX, env_name

DEFAULT_PARTITIONS = 32


KAFKA_ENV_PREFIX = KAFKA_PROPERTY_PREFIX


def kafka_config_from(settings: Mapping[str, str]) -> dict[str, str]:
    """librdkafka settings from `WHOISCRAWL_KAFKA_<PROPERTY>` entries of the environment or of a
    Secret (`WHOISCRAWL_KAFKA_SASL_USERNAME` -> `sasl.username`); the bootstrap is set apart."""
    return {
        key[len(KAFKA_ENV_PREFIX) :].lower().replace("_", "."): value
        for key, value in settings.items()
        if key.startswith(KAFKA_ENV_PREFIX) and key != env_name("kafka_bootstrap")
    }


def topic_names(prefix: str, crawl: str) -> tuple[str, str]:
    """(work, results) topic names of a crawl."""
    return f"{prefix}{crawl}.work", f"{prefix}{crawl}.results"


def fill_topic(prefix: str, crawl: str) -> str:
    """The fill's batches (`FillBatch`): dumped networks a fleet's load leaves for every worker to ask
    again live, taken by the same worker group as the work topic but from partitions of their own,
    so the walk never waits behind them, nor they behind the walk (worker/fill.py)."""
    return f"{prefix}{crawl}.fill"


def checkpoints_topic(prefix: str, crawl: str) -> str:
    """The compacted copy of the walks' checkpoints (keyed by shard id) and of the hashes `COPIED`
    (the published files' load's progress, the answers kept, the special-purpose space withheld;
    keyed by their prefix + field), for rebuilding Redis."""
    return f"{prefix}{crawl}.checkpoints"


# The hashes of a crawl's Redis the checkpoints topic keeps a copy of beside the walks' checkpoints
# (their Redis name -> the prefix of their keys on the topic, which no shard id has): the published
# files' load's progress, the answers a probe kept for its walk's next owner, and the special-purpose
# space the plans withheld, and what each batch of the fill asked (worker/fill.py). A rebuild of a
# lost Redis lands each whole (`copied`).
COPIED = {"sources": "sources:", "kept-answers": "kept:", "special": "special:",
          "fill-figures": "fill-figures:"}


def copy_key(name: str, field: str) -> str:
    """The checkpoints topic's key of a field of a hash it keeps a copy of (`COPIED`)."""
    return COPIED[name] + field


def changes_topic(prefix: str, crawl: str) -> str:
    """The change feed of a crawl's generations (`whoiscrawl changes --publish`): one partition, so
    a consumer reads the changes in the order they were kept."""
    return f"{prefix}{crawl}.changes"


def digests_topic(prefix: str, crawl: str) -> str:
    """What each dump read of the crawl's load was made of (`sources/digest.py`), for the next
    generation's load to parse only what changed: compacted, one partition, each registry's digest
    in chunks (`put_digest`). Kept and deleted with the crawl's other topics."""
    return f"{prefix}{crawl}.digests"


def dead_letter_topic(prefix: str, crawl: str) -> str:
    """What the crawl received and could not read (answers, work messages), with its context: kept
    until the crawl is deleted, one partition (they are few), keyed by registry."""
    return f"{prefix}{crawl}.deadletters"


def group_name(prefix: str, crawl: str) -> str:
    return f"{prefix}{crawl}.workers"


def shard_key(shard: Shard) -> bytes:
    # Shards are independent: spread them over the partitions, and so over workers and addresses.
    return shard.shard_id.encode()


def result_key(record: NetworkRecord | DeadLetter) -> bytes:
    # The block's CIDRs name it exactly: compaction keeps the latest record of each block. A dead
    # letter's: its registry (or "work").
    if isinstance(record, DeadLetter):
        return (record.registry or record.kind).encode()
    return ",".join(record.cidrs).encode()


BROKER_DEFAULT = -1  # a NewTopic replication factor of -1: the broker's default.replication.factor


@dataclass(frozen=True)
class TopicSettings:
    """How the crawl's topics are created: replicas (None: the broker's default) and settings."""

    replication_factor: int | None = None
    config: Mapping[str, str] = field(default_factory=dict)


def ensure_topics(
    bootstrap: str,
    prefix: str,
    crawl: str,
    partitions: int = DEFAULT_PARTITIONS,
    config: dict[str, str] | None = None,
    replication_factor: int | None = None,
    topic_config: Mapping[str, str] | None = None,
) -> None:
    """Create the crawl's topics if missing: work (kept until the crawl is deleted), results (compacted).

    `replication_factor` None leaves it to the broker (`default.replication.factor`, KIP-464):
    managed Kafka that requires 3 accepts the topics, and a cluster with `min.insync.replicas=2`
    can take the publishes. `topic_config` (e.g. `min.insync.replicas`) applies to all three;
    the settings each topic needs to work (retention, compaction) are applied over it.
    """
    admin = AdminClient({"bootstrap.servers": bootstrap, **(config or {})})
    work, results = topic_names(prefix, crawl)
    existing = admin.list_topics(timeout=10).topics
    rf = BROKER_DEFAULT if replication_factor is None else replication_factor
    extra = dict(topic_config or {})
    compacted = {**extra, "cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
    wanted = [
        NewTopic(work, partitions, rf, config={**extra, "retention.ms": "-1"}),
        NewTopic(results, partitions, rf, config=compacted),
        NewTopic(checkpoints_topic(prefix, crawl), partitions, rf, config=compacted),
        NewTopic(dead_letter_topic(prefix, crawl), 1, rf, config={**extra, "retention.ms": "-1"}),
        NewTopic(fill_topic(prefix, crawl), partitions, rf, config={**extra, "retention.ms": "-1"}),
    ]
    _create(admin, [t for t in wanted if t.topic not in existing])


def ensure_fill_topic(bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None) -> None:
    """Create the crawl's fill topic if missing (a crawl planned before it was made with the others,
    2026-12-08): as many partitions as the work topic, kept until the crawl is deleted."""
    admin = AdminClient(_client_config(bootstrap, config))
    listed = admin.list_topics(timeout=10).topics
    topic, (work, _) = fill_topic(prefix, crawl), topic_names(prefix, crawl)
    if topic not in listed:
        partitions = len(listed[work].partitions) if work in listed else DEFAULT_PARTITIONS
        _create(admin, [NewTopic(topic, partitions, BROKER_DEFAULT, config={"retention.ms": "-1"})])


def ensure_changes_topic(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None,
    replication_factor: int | None = None,
) -> str:
    """Create the crawl's change-feed topic if missing: one partition, kept for ever (a fleet's is
    its history, a first map and the change sets after it: `history.topic`)."""
    admin = AdminClient({"bootstrap.servers": bootstrap, **(config or {})})
    topic = changes_topic(prefix, crawl)
    if topic not in admin.list_topics(timeout=10).topics:
        rf = BROKER_DEFAULT if replication_factor is None else replication_factor
        _create(admin, [NewTopic(topic, 1, rf, config={"retention.ms": "-1"})])
    return topic


def _create(admin: AdminClient, topics: list[NewTopic]) -> None:
    """Create topics, one created meanwhile by another process being no error, and return once the
    broker's metadata lists them: the controller acknowledges a creation before the brokers' metadata
    caches hold it, and a caller reading partitions straight after saw none (a flaky 0 for 3)."""
    for topic, fut in admin.create_topics(topics, operation_timeout=30).items() if topics else []:
        try:
            fut.result(timeout=60)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
        del topic
    _await_listed(admin, {t.topic: t.num_partitions for t in topics})


def _await_listed(admin: AdminClient, partitions: Mapping[str, int], timeout: float = 30.0) -> None:
    """Wait until the metadata lists each topic with all its partitions (bounded: a broker that
    never lists them is reported by the next call that needs them)."""
    deadline = time.monotonic() + timeout
    while partitions and time.monotonic() < deadline:
        listed = admin.list_topics(timeout=10).topics
        if all(name in listed and listed[name].error is None and len(listed[name].partitions) >= n
               for name, n in partitions.items()):
            return
        time.sleep(0.1)


def _client_config(bootstrap: str, config: dict[str, str] | None) -> dict[str, Any]:
    return {"bootstrap.servers": bootstrap, **(config or {})}


def publish_shards(
    bootstrap: str, prefix: str, crawl: str, shards: Sequence[Shard], config: dict[str, str] | None = None
) -> int:
    """Send the plan to the work topic; returns how many the broker acknowledged."""
    work, _ = topic_names(prefix, crawl)
    return publish(bootstrap, work, ((shard_key(s), s.to_json()) for s in shards), config, "shards")


def publish_fill(
    bootstrap: str, prefix: str, crawl: str, batches: Iterable[tuple[bytes, FillBatch]],
    config: dict[str, str] | None = None,
) -> int:
    """The fill's batches (each with its key) to the fill topic; returns how many the broker
    acknowledged (KafkaException: not all)."""
    messages = ((key, b.to_json()) for key, b in batches)
    return publish(bootstrap, fill_topic(prefix, crawl), messages, config, "fill batches")


def publish(
    bootstrap: str, topic: str, messages: Iterable[tuple[bytes, bytes]], config: dict[str, str] | None = None,
    what: str = "messages",
) -> int:
    """Send keyed messages to a topic and wait for every acknowledgement: their count, or
    KafkaException naming how many of `what` got through."""
    producer = Producer(
        {
            **_client_config(bootstrap, config),
            "enable.idempotence": True,
            "linger.ms": 20,
            "compression.type": "lz4",
        }
    )
    acked = 0
    failures: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        nonlocal acked
        if err is None:
            acked += 1
        else:
            failures.append(str(err))

    sent = 0
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        producer.poll(0)
    producer.flush(120)
    if failures or acked != sent:
        raise KafkaException(f"published {acked} of {sent} {what}: {failures[:3]}")
    return acked


def partition_count(bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None) -> int:
    work, _ = topic_names(prefix, crawl)
    topics = AdminClient(_client_config(bootstrap, config)).list_topics(work, timeout=10).topics
    meta = topics.get(work)
    return len(meta.partitions) if meta is not None and meta.error is None else 0


def consumer_lag(bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None) -> int:
    """Work messages the worker group has not committed yet: what is left to do (the walk's shards
    and the fill's batches)."""
    consumer = Consumer(
        {
            **_client_config(bootstrap, config),
            "group.id": group_name(prefix, crawl),
            "enable.auto.commit": False,
        }
    )
    lag = 0
    try:
        for topic in (topic_names(prefix, crawl)[0], fill_topic(prefix, crawl)):
            meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
            if meta is None or meta.error is not None:
                continue
            partitions = [TopicPartition(topic, p) for p in meta.partitions]
            for tp in consumer.committed(partitions, timeout=10):
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, tp.partition), timeout=10)
                lag += high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


def delete_topics(bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None,
                  changes: bool = False) -> None:
    """Delete a crawl's topics; its change-feed topic only with `changes` (a scheduled crawl's feed
    outlives the generation whose crawl id names it: it goes with the crawl)."""
    admin = AdminClient(_client_config(bootstrap, config))
    every = (*topic_names(prefix, crawl), checkpoints_topic(prefix, crawl), dead_letter_topic(prefix, crawl),
             digests_topic(prefix, crawl), fill_topic(prefix, crawl),
             *([changes_topic(prefix, crawl)] if changes else []))
    names = [t for t in every if t in admin.list_topics(timeout=10).topics]
    for fut in admin.delete_topics(names, operation_timeout=30).values() if names else []:
        fut.result(timeout=60)


class KafkaSink:
    """Results to the compacted results topic (or dead letters to theirs: `topic`); `emit` returns
    once the broker acknowledged the record."""

    def __init__(self, bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None,
                 topic: str | None = None) -> None:
        self.topic = topic or topic_names(prefix, crawl)[1]
        self.producer = Producer(
            {
                **_client_config(bootstrap, config),
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 5,
                "compression.type": "lz4",
            }
        )
        self._running = True
        self._poller = threading.Thread(target=self._poll, name="kafka-sink", daemon=True)
        self._poller.start()

    def _poll(self) -> None:  # delivery callbacks run here
        while self._running:
            self.producer.poll(0.05)

    async def emit(self, record: NetworkRecord | DeadLetter) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def settle(err: Any) -> None:
            if done.done():
                return
            if err is None:
                done.set_result(None)
            else:
                done.set_exception(KafkaException(err))

        def delivered(err: Any, _msg: Any) -> None:
            loop.call_soon_threadsafe(settle, err)

        while True:
            try:
                self.producer.produce(
                    self.topic, key=result_key(record), value=record.to_json(), on_delivery=delivered
                )
                break
            except BufferError:
                await asyncio.sleep(0.05)
        await done

    def close(self, timeout: float = 30) -> int:
        """Flush what is queued; returns how many records were still undelivered."""
        self._running = False
        self._poller.join(timeout=2)
        return int(self.producer.flush(timeout))


# A topic read (`_iter_topic`, every rebuild after Redis was lost reads two): the longest it waits
# for a batch to fill, and for the broker to answer a fetch at a partition's end. With consume()'s
# 1 s and the broker's 500 ms, reading a quick crawl's 352 shards took 1.1 s, the rebuild 2.2 s.
READ_WAIT_S = 0.05
READ_WAIT_MS = 10


def _iter_topic(
    bootstrap: str, topic: str, config: dict[str, str] | None = None, since: Mapping[int, int] | None = None
) -> Iterator[Message]:
    """Every message of a topic, from its start (or each partition's offset in `since`) to where
    each partition ends now (streamed); none if the topic does not exist."""
    consumer = Consumer(
        {
            **_client_config(bootstrap, config),
            "group.id": f"export-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            # A read to where each partition ends now wants what is there, never to wait for more:
            # the broker holds a fetch at a partition's end up to this long (librdkafka's default
            # 500 ms), and its end is known only once that fetch answers.
            "fetch.wait.max.ms": READ_WAIT_MS,
        }
    )
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            if meta is not None and meta.error.code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaException(meta.error)
            return
        pending, start = set(), {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            start[p] = OFFSET_BEGINNING if since is None else max(low, since.get(p, 0))
            if high > (low if since is None else start[p]):
                pending.add(p)
        consumer.assign([TopicPartition(topic, p, start[p]) for p in sorted(pending)])
        while pending:
            # consume() returns once it has the whole batch or its timeout passed: with fewer
            # messages left it waits the whole timeout, so a short one (a loop more at most)
            for msg in consumer.consume(1000, READ_WAIT_S):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        pending.discard(msg.partition())
                        continue
                    raise KafkaException(err)
                yield msg
    finally:
        consumer.close()


class CheckpointSink:
    """Walk checkpoints to the compacted checkpoints topic, not waited for: a copy of Redis's
    `cursors` that a rebuild of a lost Redis reads back (a tombstone once the shard is done)."""

    def __init__(self, bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None) -> None:
        self.topic = checkpoints_topic(prefix, crawl)
        self.producer = Producer(
            {**_client_config(bootstrap, config), "enable.idempotence": True, "linger.ms": 50,
             "compression.type": "lz4"}
        )

    def put(self, shard_id: str, checkpoint: str | None) -> None:
        with contextlib.suppress(BufferError):  # a full queue: Redis has it; only a rebuild lacks it
            self.producer.produce(self.topic, key=shard_id.encode(),
                                  value=checkpoint.encode() if checkpoint is not None else None)
        self.producer.poll(0)

    def put_now(self, fields: Mapping[str, str | None], timeout: float = 10, wait: bool = True,
                copy: str = "sources") -> None:
        """Fields of a hash copied here (`copy`, of `COPIED`: the load's progress unless told; None:
        dropped), delivered before this returns (with everything put before them) unless not
        `wait`ed for: the load sends no record its copy here does not account for. Raises
        KafkaException if the broker did not take them in `timeout` s."""
        for name, value in fields.items():
            self.producer.produce(self.topic, key=copy_key(copy, name).encode(),
                                  value=value.encode() if value is not None else None)
        if not wait:
            self.producer.poll(0)
        elif self.producer.flush(timeout):
            raise KafkaException(f"the load's progress was not copied to {self.topic} in {timeout} s")

    def close(self, timeout: float = 5) -> int:
        return int(self.producer.flush(timeout))


def read_checkpoints(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> dict[str, str]:
    """The latest checkpoint of every shard still being walked (shard id -> checkpoint), and the
    fields of the hashes copied beside them (`COPIED`'s prefix + field -> value; `copied` picks them)."""
    latest: dict[str, str] = {}
    for msg in _iter_topic(bootstrap, checkpoints_topic(prefix, crawl), config):
        key = (msg.key() or b"").decode()
        value = msg.value()
        if value:
            latest[key] = value.decode()
        else:
            latest.pop(key, None)
    return latest


def copied(checkpoints: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """The hashes copied among the checkpoints read back (`COPIED`): name -> its fields."""
    return {name: {k[len(prefix):]: v for k, v in checkpoints.items() if k.startswith(prefix)}
            for name, prefix in COPIED.items()}


def copy_special(
    bootstrap: str, prefix: str, crawl: str, special: Iterable[Shard], config: dict[str, str] | None = None
) -> None:
    """The special-purpose space a plan withheld (`Plan.special`), to the checkpoints topic: what the
    files' load plans the delegations the statistics list there from, had Redis lost it meanwhile."""
    spans = {s.shard_id: s.to_json().decode() for s in special}
    if spans:
        sink = CheckpointSink(bootstrap, prefix, crawl, config)
        try:
            sink.put_now(spans, copy="special")
        finally:
            sink.close()


DIGEST_CHUNK = 900_000  # bytes a message of the digests topic: under Kafka's default 1 MB limit


def put_digest(bootstrap: str, prefix: str, crawl: str, registry: str, path: Path,
               config: dict[str, str] | None = None, timeout: float = 60) -> None:
    """A registry's digest file onto the crawl's digests topic (created if missing): its chunks
    keyed `<registry>:<n>`, then `<registry>` with their count and length, all delivered before this
    returns; written again (a loader taking over), the same keys replace them."""
    topic = digests_topic(prefix, crawl)
    admin = AdminClient(_client_config(bootstrap, config))
    if topic not in admin.list_topics(timeout=10).topics:
        _create(admin, [NewTopic(topic, 1, BROKER_DEFAULT,
                                 config={"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"})])
    producer = Producer({**_client_config(bootstrap, config), "enable.idempotence": True, "acks": "all",
                         "linger.ms": 20, "compression.type": "lz4"})
    size, n = 0, 0
    with path.open("rb") as fh:
        while chunk := fh.read(DIGEST_CHUNK):
            producer.produce(topic, key=f"{registry}:{n}".encode(), value=chunk)
            producer.poll(0)
            size, n = size + len(chunk), n + 1
    producer.produce(topic, key=registry.encode(), value=json.dumps({"chunks": n, "bytes": size}).encode())
    if producer.flush(timeout):
        raise KafkaException(f"{registry}'s digest was not delivered to {topic} in {timeout} s")


def get_digests(bootstrap: str, prefix: str, crawl: str, place: Callable[[str], Path],
                config: dict[str, str] | None = None) -> dict[str, Path]:
    """Each registry's digest on the crawl's digests topic, written whole to `place(registry)` (chunk
    n at its place, so a chunk written again replaces itself): registry -> file. A registry whose
    header is missing or whose chunks do not add up to it is left out (its dump is read whole)."""
    files: dict[str, Any] = {}
    heads: dict[str, dict[str, int]] = {}
    seen: dict[str, set[int]] = {}
    try:
        for msg in _iter_topic(bootstrap, digests_topic(prefix, crawl), config):
            key, value = (msg.key() or b"").decode(), msg.value() or b""
            registry, _, n = key.partition(":")
            if not n:
                heads[registry] = json.loads(value)
                continue
            if registry not in files:
                place(registry).parent.mkdir(parents=True, exist_ok=True)
                files[registry] = place(registry).open("wb")
            files[registry].seek(int(n) * DIGEST_CHUNK)
            files[registry].write(value)
            seen.setdefault(registry, set()).add(int(n))
    finally:
        for fh in files.values():
            fh.close()
    whole: dict[str, Path] = {}
    for registry, head in heads.items():
        path = place(registry)
        if registry in files and seen[registry] >= set(range(head["chunks"])):
            with path.open("r+b") as fh:
                fh.truncate(head["bytes"])
            whole[registry] = path
    return whole


def iter_results(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> Iterator[NetworkRecord]:
    """Every record on the results topic, from its start to where each partition ends now (streamed,
    so a whole-IPv4 crawl's millions of records never sit in memory at once)."""
    for value in iter_result_values(bootstrap, prefix, crawl, config):
        yield NetworkRecord.from_json(value)


def iter_result_values(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> Iterator[bytes]:
    """`iter_results`' records as the JSON lines written (a partition's in order): for a reader of
    our own records (`difference.Previous.of_lines`) that needs no schema check of each."""
    _, results = topic_names(prefix, crawl)
    for msg in _iter_topic(bootstrap, results, config):
        if msg.value():
            yield msg.value() or b""


def iter_changes(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    """Every change on a crawl's change-feed topic, in the order published (a feed line each)."""
    for _, doc in iter_changes_from(bootstrap, prefix, crawl, config):
        yield doc


def iter_changes_from(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None, offset: int = 0
) -> Iterator[tuple[int, dict[str, Any]]]:
    """The change-feed topic's lines from `offset` on, each with its offset (its one partition's)."""
    for msg in _iter_topic(bootstrap, changes_topic(prefix, crawl), config, {0: offset}):
        if msg.value():
            yield int(msg.offset() or 0), json.loads(msg.value() or b"{}")


def last_change(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> dict[str, Any] | None:
    """The newest change on the change-feed topic (what was published last), or None."""
    return change_at(bootstrap, prefix, crawl, config)


def change_at(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None, offset: int | None = None
) -> dict[str, Any] | None:
    """The change-feed topic's line at `offset` (None: its newest), or None when the topic holds
    none there (empty, or the offset before its start or past its end)."""
    topic = changes_topic(prefix, crawl)
    consumer = Consumer({**_client_config(bootstrap, config), "group.id": f"feed-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        at = high - 1 if offset is None else offset
        if not low <= at < high:
            return None
        consumer.assign([TopicPartition(topic, 0, at)])
        for _ in range(30):  # the broker answers within a few polls; a minute at most
            msg = consumer.poll(2.0)
            if msg is not None and msg.error() is None and msg.value():
                return dict(json.loads(msg.value() or b"{}"))
            if msg is not None and msg.error() is not None:
                raise KafkaException(msg.error())
        raise KafkaException(f"could not read the message at {at} of {topic}")
    finally:
        consumer.close()


def changes_bounds(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> tuple[int, int]:
    """Where the change-feed topic starts (its first offset held: later once records before it were
    deleted) and ends (its next offset); (0, 0) if it does not exist."""
    topic = changes_topic(prefix, crawl)
    consumer = Consumer({**_client_config(bootstrap, config), "group.id": f"feed-{uuid.uuid4().hex}",
                         "enable.auto.commit": False})
    try:
        meta = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if meta is None or meta.error is not None:
            return 0, 0
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(low), int(high)
    finally:
        consumer.close()


def delete_changes_before(
    bootstrap: str, prefix: str, crawl: str, offset: int, config: dict[str, str] | None = None
) -> int:
    """Delete the change-feed topic's records before `offset` (the admin client's delete-records:
    the topic's start moves there; the broker frees the disk a log segment at a time). Returns the
    topic's new first offset."""
    admin = AdminClient(_client_config(bootstrap, config))
    done = admin.delete_records([TopicPartition(changes_topic(prefix, crawl), 0, offset)],
                                operation_timeout=30)
    (fut,) = done.values()
    return int(fut.result(timeout=60).low_watermark)


def topic_bytes(bootstrap: str, topic: str, config: dict[str, str] | None = None) -> tuple[int, int]:
    """(messages, bytes of their keys and values) a topic holds from its start: what a reader of it
    reads (the broker's batches are compressed on disk)."""
    count = size = 0
    for msg in _iter_topic(bootstrap, topic, config):
        count += 1
        size += len(msg.key() or b"") + len(msg.value() or b"")
    return count, size


def results_ends(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None,
    admin: AdminClient | None = None,
) -> dict[int, int]:
    """Where each partition of the crawl's results topic ends now (its high watermark), asked of
    every partition's leader at once (`admin`: a client kept between calls; the load asks before
    each batch: a consumer made, and each partition asked in turn, took ~0.1 s a batch)."""
    _, results = topic_names(prefix, crawl)
    admin = admin or AdminClient(_client_config(bootstrap, config))
    meta = admin.list_topics(results, timeout=10).topics.get(results)
    if meta is None or meta.error is not None:
        return {}
    asked = {TopicPartition(results, p): OffsetSpec.latest() for p in meta.partitions}
    return {tp.partition: fut.result(timeout=10).offset
            for tp, fut in admin.list_offsets(asked, request_timeout=10).items()}


def result_messages(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None, timeout: float = 120
) -> Iterator[Message]:
    """Every message on the results topic as the broker holds it (a tombstone too), each partition
    read by offset to its high watermark as it stands now, committed or not: a second reading beside
    `_iter_topic`'s (which ends a partition at its end-of-partition event), for a bench that asks
    where a block is, or why it is not. KafkaException if a partition is not read to its end in
    `timeout` s."""
    _, results = topic_names(prefix, crawl)
    consumer = Consumer({**_client_config(bootstrap, config), "group.id": f"export-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "isolation.level": "read_uncommitted"})
    try:
        meta = consumer.list_topics(results, timeout=10).topics.get(results)
        ends: dict[int, int] = {}  # partition -> its high watermark, for those holding anything
        for p in [] if meta is None or meta.error is not None else meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(results, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(results, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        while ends and time.monotonic() < deadline:
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    raise KafkaException(msg.error())
                yield msg
                if (msg.offset() or 0) + 1 >= ends.get(msg.partition() or 0, 0):
                    ends.pop(msg.partition() or 0, None)
        if ends:
            raise KafkaException(f"{results}: partitions {sorted(ends)} not read to their end in {timeout} s")
    finally:
        consumer.close()


def results_since(
    bootstrap: str, prefix: str, crawl: str, since: Mapping[int, int], config: dict[str, str] | None = None
) -> set[tuple[bytes, bytes]]:
    """(key, value) of every message on the results topic after the offsets `since` (from
    `results_ends`): what a process that died after them delivered."""
    _, results = topic_names(prefix, crawl)
    return {(msg.key() or b"", msg.value() or b"") for msg in _iter_topic(bootstrap, results, config, since)}


def iter_work(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> Iterator[tuple[int, int, Shard]]:
    """(partition, offset, shard) of every valid message on the work topic: the crawl's plans."""
    work, _ = topic_names(prefix, crawl)
    for msg in _iter_topic(bootstrap, work, config):
        with contextlib.suppress(RecordError):  # a malformed one is skipped by workers too
            yield msg.partition() or 0, msg.offset() or 0, Shard.from_json(msg.value() or b"")


def iter_dead_letters(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> Iterator[DeadLetter]:
    """Every dead letter of a crawl, oldest first (streamed)."""
    for msg in _iter_topic(bootstrap, dead_letter_topic(prefix, crawl), config):
        yield DeadLetter.from_json(msg.value() or b"")


def iter_fill(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> Iterator[tuple[int, int, FillBatch]]:
    """(partition, offset, batch) of every valid message on the fill topic: the fill published."""
    for msg in _iter_topic(bootstrap, fill_topic(prefix, crawl), config):
        with contextlib.suppress(RecordError):  # a malformed one is skipped by workers too
            yield msg.partition() or 0, msg.offset() or 0, FillBatch.from_json(msg.value() or b"")


def committed_offsets(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None, topic: str | None = None
) -> dict[int, int]:
    """The worker group's committed offset of each work partition (what is before it is done); of
    the fill topic's with `topic`."""
    work = topic or topic_names(prefix, crawl)[0]
    consumer = Consumer(
        {**_client_config(bootstrap, config), "group.id": group_name(prefix, crawl),
         "enable.auto.commit": False}
    )
    try:
        meta = consumer.list_topics(work, timeout=10).topics.get(work)
        if meta is None or meta.error is not None:
            return {}
        committed = consumer.committed([TopicPartition(work, p) for p in meta.partitions], timeout=10)
        return {tp.partition: tp.offset for tp in committed if tp.offset >= 0}
    finally:
        consumer.close()


def read_results(
    bootstrap: str, prefix: str, crawl: str, config: dict[str, str] | None = None
) -> list[NetworkRecord]:
    """Every record on the results topic (for export and tests)."""
    return list(iter_results(bootstrap, prefix, crawl, config))
