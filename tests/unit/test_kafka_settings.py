"""Kafka client settings come from WHOISCRAWL_KAFKA_* entries of the environment or a Secret."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    ("settings", "config"),
    [
        (
            {"WHOISCRAWL_KAFKA_SASL_USERNAME": "u", "WHOISCRAWL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
            {"sasl.username": "u", "security.protocol": "SASL_SSL"},
        ),
        ({"WHOISCRAWL_KAFKA_BOOTSTRAP": "k:9092", "HOME": "/root"}, {}),
    ],
)
def test_kafka_settings_from_environment_or_secret(settings, config):
    from whoiscrawl.queue import kafka_config_from

    assert kafka_config_from(settings) == config
