"""etcd facts: the error strings clients see and the metrics a member exports.

Errors: etcd server/etcdserver/errors.go (ErrLeaderChanged "etcdserver: leader changed",
ErrTimeout "etcdserver: request timed out", ErrNoLeader "etcdserver: no leader",
ErrTooManyRequests "etcdserver: too many requests"); Helm and the API server surface them
verbatim in messages. Metrics: etcd server/etcdserver/metrics.go.
"""

from __future__ import annotations

from typing import Final

LEADER_CHANGED: Final = "etcdserver: leader changed"
REQUEST_TIMED_OUT: Final = "etcdserver: request timed out"
NO_LEADER: Final = "etcdserver: no leader"
TOO_MANY_REQUESTS: Final = "etcdserver: too many requests"
# The API server's own timeout while waiting on etcd (k8s.io/apiserver storage/etcd3).
CONTEXT_DEADLINE: Final = "context deadline exceeded"

TRANSIENT_ERRORS: Final = (LEADER_CHANGED, REQUEST_TIMED_OUT, NO_LEADER, TOO_MANY_REQUESTS)

METRIC_HAS_LEADER: Final = "etcd_server_has_leader"
METRIC_LEADER_CHANGES: Final = "etcd_server_leader_changes_seen_total"
METRIC_IS_LEADER: Final = "etcd_server_is_leader"


def transient_error_in(message: str) -> str | None:
    """The transient etcd error a message carries, if any (longest-known strings first)."""
    for error in TRANSIENT_ERRORS:
        if error in message:
            return error
    if CONTEXT_DEADLINE in message:
        return CONTEXT_DEADLINE
    return None
