"""Kafka with SASL/SCRAM over TLS and Redis with an ACL user, a password and TLS, on 127.0.0.1, with
a CA, certificates and passwords made for the run: what the secrets test crawls through."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from whoiscrawl.dev import cluster, services

USER = "crawler"
SCRAM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class Secured:
    """Where the secured services answer, and the settings a worker is given (as a Secret's
    environment would give them: `env`); `secrets` lists every secret made, to look for."""

    kafka_bootstrap: str  # the SASL_SSL listener
    redis_url: str  # rediss://crawler:<password>@127.0.0.1:<port>/0?ssl_ca_certs=<ca>
    ca: Path
    env: dict[str, str]  # WHOISCRAWL_KAFKA_* and WHOISCRAWL_REDIS_URL
    secrets: tuple[str, ...]


def _keystore(pki: Path, password: str) -> Path:
    """The broker's certificate (the test CA's, for 127.0.0.1) and key as a PKCS#12 keystore."""
    store = pki / "kafka.p12"
    cluster._openssl("pkcs12", "-export", "-in", str(pki / "apiserver.crt"), "-inkey",
                     str(pki / "apiserver.key"), "-out", str(store), "-passout", f"pass:{password}")
    return store


def _kafka(workdir: Path, pki: Path, password: str, store_password: str) -> tuple[services.Service, str]:
    """A broker whose only listener for clients is SASL_SSL (SCRAM-SHA-512); the PLAINTEXT one
    left is its own (between its roles, and the readiness check)."""
    external = services.free_port()
    store = _keystore(pki, store_password)
    extra = (
        "\n# secured: clients over SASL_SSL only\n"
        f"listeners=PLAINTEXT://127.0.0.1:{{port}},EXTERNAL://127.0.0.1:{external},"
        "CONTROLLER://127.0.0.1:{controller_port}\n"
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{{port}},EXTERNAL://127.0.0.1:{external}\n"
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,EXTERNAL:SASL_SSL\n"
        f"listener.name.external.sasl.enabled.mechanisms={SCRAM}\n"
        f"listener.name.external.{SCRAM.lower()}.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;\n"
        "listener.name.external.ssl.keystore.type=PKCS12\n"
        f"listener.name.external.ssl.keystore.location={store}\n"
        f"listener.name.external.ssl.keystore.password={store_password}\n"
    )
    user = f"{SCRAM}=[name={USER},password={password}]"
    return services.start_kafka(workdir, extra=extra, users=(user,)), f"127.0.0.1:{external}"


def _redis(workdir: Path, pki: Path, password: str) -> services.Service:
    """Redis on a TLS port only, its default user off and one ACL user with a password."""
    d = workdir / "redis"
    d.mkdir(parents=True, exist_ok=True)
    port = services.free_port()
    ca = pki / "ca.crt"
    tls = ("--tls-cert-file", str(pki / "apiserver.crt"), "--tls-key-file", str(pki / "apiserver.key"),
           "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
           "--user", "default", "off", "--user", USER, "on", f">{password}", "~*", "&*", "+@all")
    url = f"rediss://{USER}:{quote(password)}@127.0.0.1:{port}/0?ssl_ca_certs={quote(str(ca))}"
    return services._run_redis(d, port, tls, url)


@contextlib.contextmanager
def session(root: Path) -> Iterator[Secured]:
    """Secured Kafka and Redis for a test, owned by this process (reaped like the others)."""
    kafka_password, redis_password, store_password = (f"s3cr3t-{secrets.token_hex(12)}" for _ in range(3))
    with services.session(root, names=()) as running:
        workdir = Path(running.workdir)
        pki = workdir / "pki"
        cluster.make_credentials(pki)  # a CA and a serving certificate for 127.0.0.1
        running.services["redis"] = _redis(workdir, pki, redis_password)
        running.save()
        running.services["kafka"], bootstrap = _kafka(workdir, pki, kafka_password, store_password)
        running.save()
        env = {
            "WHOISCRAWL_KAFKA_BOOTSTRAP": bootstrap,
            "WHOISCRAWL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "WHOISCRAWL_KAFKA_SASL_MECHANISMS": SCRAM,
            "WHOISCRAWL_KAFKA_SASL_USERNAME": USER,
            "WHOISCRAWL_KAFKA_SASL_PASSWORD": kafka_password,
            "WHOISCRAWL_KAFKA_SSL_CA_LOCATION": str(pki / "ca.crt"),
            "WHOISCRAWL_REDIS_URL": running.redis_url,
        }
        yield Secured(bootstrap, running.redis_url, pki / "ca.crt", env,
                      (kafka_password, redis_password, store_password))
