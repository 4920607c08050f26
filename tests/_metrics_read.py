"""Reading metrics back as Prometheus sees them: the exposition text of a registry, parsed."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(registry: CollectorRegistry) -> Samples:
    """Every sample of the registry's exposition text, parsed back: what Prometheus sees."""
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(directory: Path) -> Samples:
    """What teuthology's exporter serves from a multiprocess directory."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(directory))
    return samples(registry)


def value(found: Samples, name: str, **labels: str) -> float:
    """The sum over the series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in found.items() if n == name and wanted <= ls)
