"""Read Prometheus text as a scraper would: one sample's value by metric name and labels."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families


def sample(text: str | bytes, name: str, **labels: str) -> float:
    """The sum of the samples ``name`` whose labels include ``labels`` (PromQL's ``sum``); 0 when none."""
    if isinstance(text, bytes):
        text = text.decode()
    return sum(
        float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )
