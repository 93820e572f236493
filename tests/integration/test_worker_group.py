"""The worker group under churn: a member SIGKILLed does not hold up the one that joins after it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient
from whoiscrawl.worker.runner import WorkerConfig, group_consumer_config

from whoiscrawl import queue

# A member of the worker group in a process of its own: says when it holds partitions, then polls on.
MEMBER = """
import json, sys
from confluent_kafka import Consumer
consumer = Consumer(json.loads(sys.argv[1]))
consumer.subscribe([sys.argv[2]])
while True:
    consumer.poll(0.1)
    if consumer.assignment():
        print("assigned", flush=True)
"""


class Member(threading.Thread):
    """A member in this process, polling (so it serves revocations) until stopped."""

    def __init__(self, config: dict, topic: str) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(config)
        self.consumer.subscribe([topic])
        self.holds = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.consumer.poll(0.1)
            if self.consumer.assignment():
                self.holds.set()
        self.consumer.close()


def _clients(bootstrap: str, group: str) -> list[str]:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [description] = [f.result(timeout=10) for f in admin.describe_consumer_groups([group]).values()]
    return sorted(m.client_id for m in description.members)


def _wait(event: threading.Event, what: str, seconds: float = 60) -> None:
    assert event.wait(seconds), f"{what} never got partitions"


def test_a_member_joining_after_a_kill_gets_partitions_while_the_dead_one_is_still_listed(
        services, unique_name):
    """The classic protocol's rebalance waits for every member it knows, a dead one included, until
    its session lapses: under kills every 1-3 s the group never finished rebalancing (30 s without a
    registry request in a chaos run). The consumer protocol moves partitions member by member."""
    queue.ensure_topics(services.kafka_bootstrap, "t.", unique_name, partitions=8)
    work, _ = queue.topic_names("t.", unique_name)
    cfg = WorkerConfig(unique_name, services.kafka_bootstrap, services.redis_url, {}, topic_prefix="t.")
    group = queue.group_name("t.", unique_name)
    survivor = Member(group_consumer_config(cfg, "survivor"), work)
    survivor.start()
    doomed = subprocess.Popen([sys.executable, "-c", MEMBER, json.dumps(group_consumer_config(cfg, "doomed")),
                               work], stdout=subprocess.PIPE, text=True)
    newcomer = None
    try:
        _wait(survivor.holds, "the survivor")
        assert doomed.stdout is not None and doomed.stdout.readline().strip() == "assigned"
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        newcomer = Member(group_consumer_config(cfg, "newcomer"), work)
        newcomer.start()
        _wait(newcomer.holds, "the newcomer")
        # The dead member has not been dropped yet (it goes when its session lapses): the group did
        # not wait for it.
        assert "doomed" in _clients(services.kafka_bootstrap, group)
    finally:
        doomed.kill()
        for member in (survivor, newcomer):
            if member is not None:
                member.done.set()
                member.join(10)
        queue.delete_topics(services.kafka_bootstrap, "t.", unique_name)
