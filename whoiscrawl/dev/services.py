"""Real Kafka, Redis and Prometheus on 127.0.0.1 for development and tests, started and reaped by PID."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

KAFKA_VERSION = "4.1.1"
CACHE_DIR = Path(os.environ.get("WHOISCRAWL_CACHE", Path.home() / ".cache" / "whoiscrawl"))
KAFKA_LIBS = CACHE_DIR / f"kafka-{KAFKA_VERSION}" / "libs"


class ServiceError(RuntimeError):
    """A service could not be installed or did not come up; the message says what to fix."""


@dataclass
class Service:
    name: str
    pid: int
    address: str  # what a client connects to: host:port or a URL
    workdir: str
    cmdline_marker: str  # a string in the process's command line, to check a PID before killing it


@dataclass
class Services:
    """A running set of services; saved as JSON so another process (or a later run) can reap it."""

    workdir: str
    services: dict[str, Service] = field(default_factory=dict)

    @property
    def brokers(self) -> list[Service]:
        """The Kafka broker (`kafka`) or each node of a cluster (`kafka-1`, `kafka-2`, ...)."""
        return [s for n, s in self.services.items() if n.partition("-")[0] == "kafka"]

    @property
    def kafka_bootstrap(self) -> str:
        """Every broker's address, comma-separated as clients take a bootstrap list."""
        return ",".join(s.address for s in self.brokers)

    @property
    def redis_url(self) -> str:
        return self.services["redis"].address

    @property
    def prometheus_url(self) -> str:
        return self.services["prometheus"].address

    def save(self) -> None:
        state = {n: asdict(s) for n, s in self.services.items()}
        Path(self.workdir, "services.json").write_text(json.dumps(state, indent=2))

    @classmethod
    def load(cls, workdir: str | Path) -> Services:
        path = Path(workdir, "services.json")
        state = json.loads(path.read_text()) if path.exists() else {}
        return cls(str(workdir), {n: Service(**s) for n, s in state.items()})


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode} before {host}:{port} opened")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise ServiceError(f"{host}:{port} did not open within {timeout:.0f}s")


# --- installation ---------------------------------------------------------------------------


def ensure_kafka_jars() -> Path:
    """Resolve the broker's jars from Maven Central into the cache (once)."""
    marker = KAFKA_LIBS / ".complete"
    if marker.exists():
        return KAFKA_LIBS
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise ServiceError("Kafka needs Java 17+ and Maven: apt-get install openjdk-17-jre-headless maven")
    KAFKA_LIBS.mkdir(parents=True, exist_ok=True)
    pom = KAFKA_LIBS.parent / "pom.xml"
    pom.write_text(resources.files("whoiscrawl.dev").joinpath("kafka-pom.xml").read_text())
    cmd = [
        "mvn",
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={KAFKA_LIBS}",
        f"-Dkafka.version={KAFKA_VERSION}",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        output = done.stdout[-2000:] + done.stderr[-2000:]
        raise ServiceError(f"resolving Kafka jars with Maven failed:\n{output}")
    marker.touch()
    return KAFKA_LIBS


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/bin/{binary}" if Path(f"/usr/bin/{binary}").exists() else None)
    if path is None:
        raise ServiceError(f"{binary} not found: apt-get install {package}")
    return path


# --- start ------------------------------------------------------------------------------------


def spawn(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    # A new session, so stopping kills the whole group and a killed test run can be reaped by PID.
    with log.open("ab") as out:
        return subprocess.Popen(
            cmd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )


def start_redis(workdir: Path) -> Service:
    d = workdir / "redis"
    d.mkdir(parents=True, exist_ok=True)
    return _run_redis(d, free_port())


def restart_redis(running: Services, down_s: float = 1.0) -> Service:
    """Redis restarted with its data lost (it keeps none on disk): stopped, `down_s` seconds
    away, then started empty on the same port."""
    old = running.services["redis"]
    stop_service(old)
    time.sleep(down_s)
    new = _run_redis(Path(old.workdir), int(old.address.rsplit(":", 1)[1].split("/")[0]))
    running.services["redis"] = new
    running.save()
    return new


def _run_redis(d: Path, port: int, tls: tuple[str, ...] = (), url: str | None = None) -> Service:
    """Redis on `port`; `tls`: further options (TLS on that port, ACL users), `url` then its URL."""
    binary = _require("redis-server", "redis-server")
    cmd = [
        binary,
        "--bind",
        "127.0.0.1",
        *(("--port", "0", "--tls-port", str(port)) if tls else ("--port", str(port))),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(d),
        "--daemonize",
        "no",
        "--protected-mode",
        "no",
        *tls,
    ]
    proc = spawn(cmd, d / "redis.log")
    wait_for_port("127.0.0.1", port, 20, proc)
    return Service("redis", proc.pid, url or f"redis://127.0.0.1:{port}/0", str(d), f"127.0.0.1:{port}")


SINGLE_HEAP = ("-Xms256m", "-Xmx768m")
# Three brokers on a 2-core machine shared with the crawl they carry: small heaps (a test's topics
# are a few hundred small partitions).
CLUSTER_HEAP = ("-Xms64m", "-Xmx320m")


def _kafka_jvm(d: Path, heap: tuple[str, ...] = SINGLE_HEAP) -> list[str]:
    """The JVM command line of a broker whose files are in d (without the main class)."""
    java = _require("java", "openjdk-17-jre-headless")
    libs = ensure_kafka_jars()
    log4j = d / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=WARN\nrootLogger.appenderRef.out.ref=OUT\n"
        "appender.out.type=Console\nappender.out.name=OUT\n"
        "appender.out.layout.type=PatternLayout\nappender.out.layout.pattern=%d %p %c: %m%n\n"
    )
    return [java, *heap, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={log4j}", "-cp", f"{libs}/*"]


def _run_kafka(d: Path, props: Path, address: str, timeout: float) -> Service:
    """Start the broker on an existing (formatted) log dir and wait until it coordinates groups."""
    proc = spawn([*_kafka_jvm(d), "kafka.Kafka", str(props)], d / "kafka.log")
    service = Service("kafka", proc.pid, address, str(d), str(props))
    _await_kafka([service], [proc], timeout)
    return service


def _await_kafka(nodes: list[Service], procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    """Wait until every node's port is open and, through all of them, the cluster lists every
    node and coordinates groups; else stop them all and say why, with the logs' tails."""
    try:
        for node, proc in zip(nodes, procs, strict=True):
            wait_for_port("127.0.0.1", int(node.address.rsplit(":", 1)[1]), timeout, proc)
        wait_for_kafka_metadata(",".join(n.address for n in nodes), timeout, brokers=len(nodes))
    except ServiceError as exc:
        for node in nodes:
            stop_service(node)
        tails = "".join(f"\n{n.name}: " + Path(n.workdir, "kafka.log").read_text(errors="replace")[-1500:]
                        for n in nodes)
        raise ServiceError(f"Kafka did not come up: {exc}{tails}") from exc


def start_kafka(workdir: Path, timeout: float = 120, extra: str = "", users: tuple[str, ...] = ()) -> Service:
    """A broker on a PLAINTEXT port; `extra`: properties over the template's (`{port}`,
    `{controller_port}` filled in), `users`: SCRAM credentials made with the storage
    (`SCRAM-SHA-512=[name=...,password=...]`)."""
    d = workdir / "kafka"
    (d / "data").mkdir(parents=True, exist_ok=True)
    port, controller_port = free_port(), free_port()
    template = resources.files("whoiscrawl.dev").joinpath("kafka-server.properties").read_text() + extra
    props = d / "server.properties"
    props.write_text(template.format(port=port, controller_port=controller_port, data=d / "data"))
    cluster_id = uuid.uuid4().hex[:22]
    fmt = subprocess.run(
        [*_kafka_jvm(d), "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster_id,
         "-c", str(props), *(arg for user in users for arg in ("--add-scram", user))],
        capture_output=True,
        text=True,
    )
    if fmt.returncode != 0:
        raise ServiceError(f"kafka storage format failed: {fmt.stdout[-1500:]}{fmt.stderr[-1500:]}")
    return _run_kafka(d, props, f"127.0.0.1:{port}", timeout)


# A cluster's nodes over the single broker's template: a static quorum of every node (each both
# broker and controller: one JVM per node), and internal topics replicated as a production cluster's.
CLUSTER_PROPERTIES = """
node.id={node}
controller.quorum.bootstrap.servers=
controller.quorum.voters={voters}
default.replication.factor={brokers}
min.insync.replicas=2
offsets.topic.replication.factor={brokers}
transaction.state.log.replication.factor={brokers}
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor={brokers}
share.coordinator.state.topic.min.isr=2
"""


def _check_brokers(brokers: int) -> None:
    if brokers < 1 or brokers == 2:
        raise ServiceError(f"Kafka takes 1 broker, or 3 or more for a cluster (min.insync.replicas=2 "
                           f"with a node lost), got {brokers}")


def start_kafka_cluster(workdir: Path, brokers: int = 3, timeout: float = 180) -> list[Service]:
    """`brokers` KRaft nodes on 127.0.0.1 (`kafka-1`, ...), one controller quorum of all of them,
    `min.insync.replicas=2`: a cluster that keeps taking acks=all writes with one node lost."""
    _check_brokers(brokers)
    ports = [(free_port(), free_port()) for _ in range(brokers)]
    voters = ",".join(f"{i}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports, 1))
    template = resources.files("whoiscrawl.dev").joinpath("kafka-server.properties").read_text()
    cluster_id, nodes, formats = uuid.uuid4().hex[:22], [], []
    for i, (port, controller_port) in enumerate(ports, 1):
        d = workdir / f"kafka-{i}"
        (d / "data").mkdir(parents=True, exist_ok=True)
        props = d / "server.properties"
        props.write_text(template.format(port=port, controller_port=controller_port, data=d / "data")
                         + CLUSTER_PROPERTIES.format(node=i, voters=voters, brokers=brokers))
        nodes.append(Service(f"kafka-{i}", 0, f"127.0.0.1:{port}", str(d), str(props)))
        formats.append(subprocess.Popen(  # the formats at once: a JVM start each
            [*_kafka_jvm(d, CLUSTER_HEAP), "kafka.tools.StorageTool", "format", "-t", cluster_id,
             "-c", str(props)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for fmt in formats:
        out = fmt.communicate()[0].decode(errors="replace")
        if fmt.returncode != 0:
            raise ServiceError(f"kafka storage format failed: {out[-1500:]}")
    # Every node at once: the quorum elects a leader only once a majority is up.
    procs = [spawn([*_kafka_jvm(Path(n.workdir), CLUSTER_HEAP), "kafka.Kafka", n.cmdline_marker],
                   Path(n.workdir) / "kafka.log") for n in nodes]
    for node, proc in zip(nodes, procs, strict=True):
        node.pid = proc.pid
    _await_kafka(nodes, procs, timeout)
    return nodes


def restart_kafka(running: Services, timeout: float = 120, crash: bool = False) -> Service:
    """A broker restart: stop it (SIGTERM, as an orderly shutdown; `crash`: SIGKILL, none), start
    it on the same log dir and ports; committed offsets and the compacted results survive."""
    old = running.services["kafka"]
    if crash:
        kill(old)
    else:
        stop_service(old)
    new = _run_kafka(Path(old.workdir), Path(old.cmdline_marker), old.address, timeout)
    running.services["kafka"] = new
    running.save()
    return new


def wait_for_kafka_metadata(bootstrap: str, timeout: float, brokers: int = 1) -> None:
    """The port opens before the broker is usable; wait until it answers metadata listing
    `brokers` brokers and creates a topic."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(timeout=2)
            if len(md.brokers) >= brokers:
                futures = admin.create_topics([NewTopic("__whoiscrawl_ready", 1, 1)], operation_timeout=5)
                for fut in futures.values():
                    with contextlib.suppress(Exception):
                        fut.result(timeout=10)
                if "__whoiscrawl_ready" in admin.list_topics(timeout=5).topics and (
                        _coordinates_groups(bootstrap)):
                    return
        except Exception as exc:  # the admin client raises several kinds while the broker starts
            last = exc
        time.sleep(0.3)
    raise ServiceError(f"Kafka metadata not ready within {timeout:.0f}s ({last})")


def _coordinates_groups(bootstrap: str) -> bool:
    """A fresh broker answers metadata before it can coordinate consumer groups (NOT_COORDINATOR
    until __consumer_offsets is up): ready only once a group's committed offsets can be read."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "__whoiscrawl_ready"})
    try:
        consumer.committed([TopicPartition("__whoiscrawl_ready", 0)], timeout=5)
        return True
    except KafkaException:
        return False
    finally:
        consumer.close()


def start_prometheus(workdir: Path) -> Service:
    binary = _require("prometheus", "prometheus")
    port = free_port()
    d = workdir / "prometheus"
    (d / "data").mkdir(parents=True, exist_ok=True)
    config = d / "prometheus.yml"
    if not config.exists():
        config.write_text("global:\n  scrape_interval: 1s\nscrape_configs: []\n")
    cmd = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={d / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    proc = spawn(cmd, d / "prometheus.log")
    wait_for_port("127.0.0.1", port, 30, proc)
    return Service("prometheus", proc.pid, f"http://127.0.0.1:{port}", str(d), f"--config.file={config}")


STARTERS = {"redis": start_redis, "kafka": start_kafka, "prometheus": start_prometheus}


def start(workdir: str | Path, names: tuple[str, ...] = ("redis", "kafka", "prometheus"),
          brokers: int = 1) -> Services:
    """Start the named services not running yet; `brokers` above 1: Kafka as a cluster of that
    many nodes (`start_kafka_cluster`), started afresh unless every node is up."""
    _check_brokers(brokers)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    running = Services.load(workdir)
    try:
        for name in names:
            if name == "kafka" and brokers > 1:
                _start_cluster(running, workdir, brokers)
            elif name not in running.services or not alive(running.services[name]):
                running.services[name] = STARTERS[name](workdir)
            running.save()
    except BaseException:
        stop(running)
        raise
    return running


def _start_cluster(running: Services, workdir: Path, brokers: int) -> None:
    nodes = running.brokers
    if len(nodes) == brokers and all(alive(n) for n in nodes):
        return
    for node in nodes:  # a single broker, or a cluster with a node down: a fresh cluster instead
        stop_service(node)
        del running.services[node.name]
    for node in start_kafka_cluster(workdir, brokers):
        running.services[node.name] = node


# --- stop and reap ----------------------------------------------------------------------------


def alive(service: Service) -> bool:
    try:
        cmdline = Path(f"/proc/{service.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return service.cmdline_marker in cmdline


def kill(service: Service) -> None:
    """A crash: SIGKILL, no orderly shutdown (a broker lost with whatever it had not flushed)."""
    if alive(service):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(service.pid, 0)


def stop_service(service: Service, grace: float = 10) -> None:
    if not alive(service):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(service.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(service):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(service.pid, os.WNOHANG)
        time.sleep(0.1)
    if alive(service):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(service.pid, 0)


def stop(running: Services) -> None:
    """Stop every service, the last started first (clients before what they depend on)."""
    for service in reversed(list(running.services.values())):
        stop_service(service)
    running.services.clear()
    running.save()


def reap_stale(root: Path) -> list[str]:
    """Stop services left by earlier runs that were killed before they could clean up."""
    reaped = []
    for state in root.glob("*/services.json"):
        workdir = state.parent
        owner = workdir / "owner.pid"
        if owner.exists() and Path(f"/proc/{owner.read_text().strip()}").exists():
            continue  # its run is still going
        running = Services.load(workdir)
        reaped += [s.name for s in running.services.values() if alive(s)]
        stop(running)
        shutil.rmtree(workdir, ignore_errors=True)
    return reaped


@contextlib.contextmanager
def session(root: Path, names: tuple[str, ...] = ("redis", "kafka", "prometheus"),
            brokers: int = 1) -> Iterator[Services]:
    """Start services in a fresh directory under root, owned by this process; stop them after.
    `brokers`: Kafka's nodes (above 1, a cluster: `start`)."""
    root.mkdir(parents=True, exist_ok=True)
    reap_stale(root)
    workdir = root / f"run-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    workdir.mkdir()
    (workdir / "owner.pid").write_text(str(os.getpid()))
    running = start(workdir, names, brokers)
    try:
        yield running
    finally:
        stop(running)
        shutil.rmtree(workdir, ignore_errors=True)
