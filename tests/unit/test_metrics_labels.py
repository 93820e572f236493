"""A worker's /metrics carries its crawl on every sample, so the dashboards' $crawl filters worker panels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from whoiscrawl import metrics


def worker(name: str) -> bool:
    """A worker's series (the operator's carry their own crawl label, if loaded in this process)."""
    return name.startswith("whoiscrawl_") and not name.startswith("whoiscrawl_operator_")


def test_every_sample_carries_the_crawl_label_and_keeps_its_own() -> None:
    metrics.LOOKUPS.labels("ripe", "ok").inc()
    metrics.LOOKUP_SECONDS.labels("ripe").observe(0.2)
    metrics.SHARDS.inc()
    families = list(text_string_to_metric_families(metrics.exposition({"crawl": "c1"}).decode()))
    samples = [s for f in families if worker(f.name) for s in f.samples]
    assert samples and all(s.labels.get("crawl") == "c1" for s in samples)
    lookups = [s for s in samples if s.name == "whoiscrawl_lookups_total" and s.labels["outcome"] == "ok"]
    assert lookups and lookups[0].labels["registry"] == "ripe"
    assert any(s.name == "whoiscrawl_lookup_duration_seconds_bucket" and "le" in s.labels for s in samples)
    # Without labels (the local crawl, the map server) the page is the registry's, unchanged.
    plain = list(text_string_to_metric_families(metrics.exposition().decode()))
    assert not [s for f in plain if worker(f.name) for s in f.samples if "crawl" in s.labels]
