"""Prometheus metrics shared by every service (bus traffic); services add their own beside them.

Metric names are `medic_<area>_<what>` and labels low-cardinality (never an object name).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BUS_MESSAGES = Counter(
    "medic_bus_messages",
    "Messages taken from JetStream, by consumer and what became of them.",
    ["consumer", "outcome"],
)
BUS_HANDLE_SECONDS = Histogram(
    "medic_bus_handle_seconds",
    "Time to handle one message, from fetch to ack.",
    ["consumer"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
BUS_DEADLETTERS = Counter(
    "medic_bus_deadletters", "Messages moved to the dead-letter stream.", ["consumer", "kind"]
)
