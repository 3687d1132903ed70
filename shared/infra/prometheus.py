"""What the gateway's and the workers' metrics have in common: prometheus-client's two modes.

- **Per process** (PROMETHEUS_MULTIPROC_DIR unset): each service object owns a CollectorRegistry of
  its own (never the library's global one: the tests build many apps in one process), and a scrape
  shows that process's figures.
- **Multiprocess** (PROMETHEUS_MULTIPROC_DIR set): every process writes its values to mmap files in
  that folder, and whichever process answers a scrape adds up all the files (MultiProcessCollector),
  so several processes behind one port (SO_REUSEPORT) give the same, monotonic figures. The mode is
  process-wide by the library's design (its value class is chosen once): `enable_multiprocess`
  switches it on at start-up, before any metric exists. Gauges then need a `multiprocess_mode`
  ("livesum": the sum over live processes; "mostrecent": the last value set by any process).
  A process that stops cleanly marks itself dead (its live gauges drop out); deploy/run.sh does it
  for one that was killed, and wipes the folder at start.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"
# The classic text format, which every Prometheus reads (the metric and label names here need no escaping).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Request latency and short database steps: 1 ms to 10 s.
FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Whole imports: 0.1 s to 2 h.
SLOW_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)


def enable_multiprocess(directory: str) -> None:
    """Switch this process to multiprocess mode, writing under `directory` (created if missing).
    Call once at start-up, before any metric object is made; the library reads the folder from the
    environment, so it is put there too (children started by this process inherit it)."""
    Path(directory).mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = directory
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


def multiprocess_active() -> bool:
    return bool(getattr(values.ValueClass, "_multiprocess", False))


def own_registry() -> CollectorRegistry:
    """A registry for one service object's metrics. Without the `*_created` timestamp series, which
    multiprocess mode never has either: the same series whichever the mode."""
    disable_created_metrics()
    return CollectorRegistry(auto_describe=True)


def serving_registry(own: CollectorRegistry, directory: str) -> CollectorRegistry:
    """The registry a scrape renders: the process's own one, or in multiprocess mode one that adds up
    every process's files (the metric objects' own registry is then only where they were made)."""
    if not (directory and multiprocess_active()):
        return own
    registry = CollectorRegistry(auto_describe=False)
    MultiProcessCollector(registry, path=directory)
    return registry


def exposition(*registries: CollectorRegistry) -> bytes:
    """The Prometheus text format of the registries, one after the other (their names are distinct)."""
    return b"".join(generate_latest(registry) for registry in registries)


def scrape_registry(*collectors: Collector) -> CollectorRegistry:
    """A throw-away registry for values read at scrape time (never written to multiprocess files:
    they describe shared state, not this process)."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


def mark_dead(directory: str, pid: int | None = None) -> None:
    """Drop a stopped process's live gauges (livesum, livemax, ...) from the folder; its counters
    and histograms stay, so totals never go back."""
    if directory and multiprocess_active():
        mark_process_dead(os.getpid() if pid is None else pid, directory)
