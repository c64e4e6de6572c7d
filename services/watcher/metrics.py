"""The watcher's Prometheus metrics: what it published. Not for bus traffic (medic.runtime.metrics).

Labels stay low-cardinality: `detail` is the subject suffix (`release.failed`, `etcd.stable`,
`custom.<name>`), never an object name.
"""

from __future__ import annotations

from prometheus_client import Counter

EVENTS = Counter(
    "medic_watcher_events",
    "Events the watcher published (acknowledged by JetStream), by subject suffix.",
    ["detail"],
)
PUBLISH_RETRIES = Counter(
    "medic_watcher_publish_retries",
    "Publishes of an event that failed and were retried with backoff.",
)
