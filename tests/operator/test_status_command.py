"""`whoiscrawl status NAME` reads a WhoisCrawl's status from the Kubernetes API (kmock here)."""

from __future__ import annotations

import asyncio
import json

import kmock
import pytest
from opsupport_kmock import make
from typer.testing import CliRunner
from whoiscrawl.operator.crd import build_crd
from whoiscrawl.operator.kube import KubeClient

from whoiscrawl.cli import app

API = "whoiscrawl.io/v1alpha1"
STATUS = {
    "phase": "Crawling", "progress": 42.5, "shards": {"total": 400, "done": 170},
    "addresses": {"total": 4_000_000, "done": 1_700_000}, "lookups": 9000, "blocks": 21000,
    "rateLimited": 2, "errors": 0, "rate": {"addressesPerSecond": 1250.0, "lookupsPerSecond": 7.5},
    "etaSeconds": 1840, "eta": "2026-12-01T12:00:00Z", "lag": 230,
    "workers": {"desired": 4, "current": 4, "ready": 3, "reason": "lag"},
    "schedule": {"generation": 3, "state": "GenerationRunning", "lastScheduleTime": "2026-12-01T03:00:00Z",
                 "nextScheduleTime": "2026-12-02T03:00:00Z", "generations": [2, 3],
                 "lastMissedTime": "2026-11-29T03:00:00Z",
                 "lastGeneration": {"generation": 2, "result": "Completed", "blocks": 20950,
                                    "lookups": 8800, "completionTime": "2026-11-30T09:12:00Z"}},
    "conditions": [
        {"type": "Ready", "status": "False", "reason": "WorkersStarting", "message": "3 of 4 ready"},
        {"type": "Completed", "status": "False", "reason": "Crawling", "message": "170/400 shards"},
    ],
}


@pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock")
async def test_status_of_a_whoiscrawl_in_the_cluster() -> None:
    kube = make(build_crd())
    async with kube, kmock.Server(kube) as server:
        url = str(server.url).rstrip("/")
        client = KubeClient(url)
        body = {"apiVersion": API, "kind": "WhoisCrawl", "metadata": {"name": "ipv4", "namespace": "crawls"},
                "spec": {"ranges": ["193.0.0.0/16"]}}
        await asyncio.to_thread(client.create, API, "whoiscrawls", "crawls", body)
        await asyncio.to_thread(client.patch_status, API, "whoiscrawls", "crawls", "ipv4", STATUS)

        def status(*args: str) -> tuple[int, str]:
            result = CliRunner().invoke(app, ["status", "ipv4", "-n", "crawls", "--server", url, *args])
            return result.exit_code, result.output

        code, out = await asyncio.to_thread(status, "--json")
        assert code == 0, out
        doc = json.loads(out)
        assert doc["crawl"] == "crawls/ipv4" and doc["phase"] == "Crawling" and not doc["complete"]
        assert doc["progress"] == 0.425 and doc["eta_s"] == 1840 and doc["workers"]["ready"] == 3
        assert [c["type"] for c in doc["conditions"]] == ["Ready", "Completed"]
        assert doc["schedule"]["generation"] == 3 and doc["schedule"]["lastGeneration"]["blocks"] == 20950
        code, out = await asyncio.to_thread(status)
        assert code == 0 and "WorkersStarting" in out and "42.50%" in out and "30.7 min" in out
        assert "GenerationRunning" in out and "2026-12-02T03:00:00Z" in out and "20950 blocks" in out
        assert "last skipped (too late)" in out and "2026-11-29T03:00:00Z" in out

        done = {**STATUS, "progress": 100.0, "etaSeconds": 0,
                "conditions": [{"type": "Completed", "status": "True", "reason": "AllShardsDone"}]}
        await asyncio.to_thread(client.patch_status, API, "whoiscrawls", "crawls", "ipv4", done)
        code, out = await asyncio.to_thread(status, "--watch", "--json", "--interval", "0.1")
        assert code == 0 and json.loads(out.strip().splitlines()[-1])["complete"]
        missing = await asyncio.to_thread(
            lambda: CliRunner().invoke(app, ["status", "nope", "-n", "crawls", "--server", url]))
        assert missing.exit_code == 2 and "no whoiscrawl nope" in missing.output


@pytest.mark.filterwarnings("ignore::DeprecationWarning:kmock")
async def test_status_reads_the_kubeconfig_it_is_given(tmp_path) -> None:
    """--kubeconfig is honoured although the kubernetes client was imported before it was given (the
    client reads $KUBECONFIG once, at import: setting the variable later was ignored)."""
    import kubernetes  # noqa: F401  (imported first, as in a long-lived process or the test suite)

    kube = make(build_crd())
    async with kube, kmock.Server(kube) as server:
        url = str(server.url).rstrip("/")
        body = {"apiVersion": API, "kind": "WhoisCrawl", "metadata": {"name": "ipv4", "namespace": "crawls"},
                "spec": {"ranges": ["193.0.0.0/16"]}}
        await asyncio.to_thread(KubeClient(url).create, API, "whoiscrawls", "crawls", body)
        config = tmp_path / "kubeconfig"
        config.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "test", "cluster": {"server": url}}],
            "users": [{"name": "test", "user": {"token": "t"}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}]}))
        result = await asyncio.to_thread(lambda: CliRunner().invoke(
            app, ["status", "ipv4", "-n", "crawls", "--json", "--kubeconfig", str(config)],
            env={"KUBECONFIG": None, "HOME": str(tmp_path)}))
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["crawl"] == "crawls/ipv4"
