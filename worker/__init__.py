"""The worker side of whoiscrawl (installed as whoiscrawl.worker): Kafka consumer and shard runner."""
